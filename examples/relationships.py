"""Relationships in async code: what ``lazy="raise"`` refuses and how to load instead.

Shows, on the template models (``templates/models.py``): storing a graph with one-to-many,
many-to-many through an association object (``PostTag.position`` keeps the order) and a
self-referential hierarchy; an unloaded relationship raising ``InvalidRequestError`` instead of
``MissingGreenlet``; chained ``selectinload`` that loads users, their manager, posts and ordered tags.

Use when: designing async models and their relationships.
Run: ``python examples/relationships.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import selectinload

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.models import Post, PostTag, Tag, User
from templates.scratch import scratch_engine


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)

        async with sessionmaker() as session, session.begin():
            boss = User(email="ada@example.com", name="Ada")
            dev = User(email="linus@example.com", name="Linus", manager=boss)
            python, sql = Tag(name="python"), Tag(name="sql")
            post = Post(title="Async ORM", body="...", author=dev)
            post.tag_links = [PostTag(tag=sql, position=1), PostTag(tag=python, position=0)]
            session.add_all([boss, dev, post])
        print(f"stored 2 users, 1 post, 2 tags on {engine.dialect.name}")

        async with sessionmaker() as session:
            dev = await session.scalar(select(User).where(User.email == "linus@example.com"))
            assert dev is not None
            try:
                _ = dev.posts  # not loaded: lazy="raise" refuses to emit a query
            except InvalidRequestError as exc:
                print(f"unloaded relationship raises: {type(exc).__name__}")
            else:
                raise AssertionError("lazy='raise' should have refused to load User.posts")

            stmt = (
                select(User)
                .where(User.email == "linus@example.com")
                .options(
                    selectinload(User.manager),
                    selectinload(User.posts).selectinload(Post.tag_links).selectinload(PostTag.tag),
                )
            )
            dev = (await session.scalars(stmt)).one()
            assert dev.manager is not None and dev.manager.name == "Ada"
            tags = [link.tag.name for link in dev.posts[0].tag_links]
            assert tags == ["python", "sql"], tags
            print(f"eager-loaded: {dev.name} reports to {dev.manager.name}; post tags in order {tags}")

            boss = (
                await session.scalars(select(User).where(User.name == "Ada").options(selectinload(User.reports)))
            ).one()
            assert [r.name for r in boss.reports] == ["Linus"]
            assert boss.created_at.tzinfo is not None
            print(f"self-referential: Ada manages {[r.name for r in boss.reports]}")
    print("relationships: ok")


if __name__ == "__main__":
    asyncio.run(main())

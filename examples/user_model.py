"""Models and relationships on the template Base: the shared domain of the examples.

Shows: one-to-many (User -> Post), many-to-many through an association object that carries its
own column (Post <-> Tag via PostTag.position), and a self-referential hierarchy (User.manager /
User.reports). Every relationship uses ``lazy="raise"``: touching an unloaded relationship raises
at once (in tests too) instead of emitting hidden I/O, which in async code would be
``MissingGreenlet``. Load what you need with ``selectinload`` / ``joinedload`` in the query.

Use when: designing async models. Other examples import these classes.
Run: ``python examples/user_model.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload

from templates.base_model import Base, SoftDeleteMixin, TimestampMixin, UUIDPrimaryKeyMixin
from templates.scratch import scratch_engine
from templates.session_manager import create_sessionmaker


class User(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(255), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    manager_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)

    posts: Mapped[list[Post]] = relationship(
        back_populates="author", lazy="raise", cascade="all, delete-orphan", order_by="Post.created_at"
    )
    # Self-referential: remote_side marks the "one" side of the hierarchy.
    manager: Mapped[User | None] = relationship(back_populates="reports", remote_side="User.id", lazy="raise")
    reports: Mapped[list[User]] = relationship(back_populates="manager", lazy="raise")


class Post(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "posts"

    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")

    author: Mapped[User] = relationship(back_populates="posts", lazy="raise")
    tag_links: Mapped[list[PostTag]] = relationship(
        back_populates="post", lazy="raise", cascade="all, delete-orphan", order_by="PostTag.position"
    )


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)

    post_links: Mapped[list[PostTag]] = relationship(back_populates="tag", lazy="raise")


class PostTag(Base):
    """Association object: the link row has data of its own (``position``)."""

    __tablename__ = "post_tags"

    post_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True)
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True, index=True)
    position: Mapped[int] = mapped_column(default=0)

    post: Mapped[Post] = relationship(back_populates="tag_links", lazy="raise")
    tag: Mapped[Tag] = relationship(back_populates="post_links", lazy="raise")


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

            boss = (await session.scalars(select(User).where(User.name == "Ada").options(selectinload(User.reports)))).one()
            assert [r.name for r in boss.reports] == ["Linus"]
            assert boss.created_at.tzinfo is not None
            print(f"self-referential: Ada manages {[r.name for r in boss.reports]}")
    print("user_model: ok")


if __name__ == "__main__":
    asyncio.run(main())

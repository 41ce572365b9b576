# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases for query_in_loop (read, never run): loops over a literal tuple of
models, LIMIT/OFFSET pages, id chunks, per-table DELETEs in a fixture, merge(load=False) and an
HTTP session store are not N+1; a query per item read from the database is."""
# expect-static: query_in_loop

from __future__ import annotations

import itertools

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Base, Comment, Post, User

ARCHIVE_MODELS = (Post, Comment)


async def archive_everything(session: AsyncSession, cutoff: int) -> None:
    for model in (Post, Comment):  # one bulk UPDATE per model, written in the source
        await session.execute(update(model).where(model.created_at < cutoff).values(archived=True))
    for statement in [delete(Post).where(Post.archived), delete(Comment).where(Comment.archived)]:
        await session.execute(statement)
    for model in ARCHIVE_MODELS:
        await session.execute(delete(model).where(model.archived))


async def lock_both_accounts(session: AsyncSession, source: int, target: int) -> None:
    # the two rows of a transfer, locked in key order (seen in an eval run): not an N+1
    for account_id in sorted((source, target)):
        await session.get(User, account_id, with_for_update=True)


async def export_users(session: AsyncSession, page_size: int = 500) -> int:
    exported = 0
    for number in itertools.count():  # paging by LIMIT/OFFSET: one query per page
        stmt = select(User).order_by(User.id).limit(page_size).offset(number * page_size)
        rows = (await session.scalars(stmt)).all()
        if not rows:
            break
        exported += len(rows)
    return exported


async def touch_in_chunks(session: AsyncSession, ids: list[int]) -> None:
    for start in range(0, len(ids), 1000):
        await session.execute(update(User).where(User.id.in_(ids[start : start + 1000])).values(seen=True))


async def reset_database(session: AsyncSession) -> None:
    for table in reversed(Base.metadata.sorted_tables):  # a test fixture: one DELETE per table
        await session.execute(table.delete())


async def merge_detached(session: AsyncSession, posts: list[Post]) -> None:
    for post in posts:
        await session.merge(post, load=False)


async def forget_web_sessions(session_store, session_ids: list[str]) -> None:
    for sid in session_ids:
        await session_store.get(sid)


async def restart_sequences(session: AsyncSession, sequence_rows: list[str]) -> None:
    for seq in sequence_rows:  # DDL per sequence: maintenance, not a read per item
        sql = f"ALTER SEQUENCE {seq} RESTART WITH 1"
        await session.execute(text(sql))


async def authors_of(session: AsyncSession) -> list[User]:
    posts = (await session.scalars(select(Post))).all()
    authors = []
    for post in posts:
        authors.append(await session.get(User, post.author_id))  # static: query_in_loop
    return authors


async def comment_counts(session: AsyncSession, post_ids: list[int]) -> dict[int, int]:
    return {pid: len((await session.scalars(select(Comment).where(Comment.post_id == pid))).all()) for pid in post_ids}  # static: query_in_loop

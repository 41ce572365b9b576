"""Session lifecycle: context managers, begin() blocks, expire_on_commit, loading after the fact,
run_sync, and one session per concurrent task.

Shows:
- ``async with sessionmaker() as session`` closes the session (returns its connection to the
  pool); ``async with session.begin()`` commits when the block ends, rolls back on an exception.
- ``expire_on_commit=False`` (the template's ``create_sessionmaker``): attributes stay readable
  after commit with no SQL. With the default ``True``, reading one after commit needs a refresh,
  which async code cannot do implicitly: ``sqlalchemy.exc.MissingGreenlet``.
- Loading a relationship later: ``await session.refresh(obj, ["posts"])`` (works even with
  ``lazy="raise"``) and ``await obj.awaitable_attrs.posts`` (needs a lazy loader: with
  ``lazy="raise"`` models, opt in per query with ``lazyload(User.posts)``).
- ``await session.run_sync(fn)``: call sync-only ORM code (``fn(sync_session)``) from async code.
- Concurrency: one session per task with ``asyncio.gather`` / ``asyncio.TaskGroup`` (3.11+).
  Sharing one ``AsyncSession`` between concurrent tasks is an error; SQLAlchemy only catches
  it in some states (shown here), so never rely on an exception to find it.

Use when: writing any async service or script that opens sessions, or fanning work out to tasks.
Run: ``python examples/session_lifecycle.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import uuid
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select
from sqlalchemy.exc import InvalidRequestError, MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, lazyload

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.models import Post, User
from templates.query_counter import count_queries
from templates.scratch import scratch_engine


async def create_user(sessionmaker: async_sessionmaker[AsyncSession], email: str, name: str) -> User:
    """The standard unit of work: session + transaction, committed when the block exits."""
    async with sessionmaker() as session, session.begin():
        user = User(email=email, name=name)
        session.add(user)
    return user  # detached now; its loaded attributes stay readable (expire_on_commit=False)


async def failed_unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """An exception inside ``session.begin()`` rolls everything in the block back."""
    try:
        async with sessionmaker() as session, session.begin():
            session.add(User(email="ghost@example.com", name="Ghost"))
            await session.flush()  # the INSERT reached the database ...
            raise RuntimeError("validation failed")  # ... and is rolled back here
    except RuntimeError:
        pass


def post_counts(session: Session) -> dict[str, int]:
    """Sync-only code (a legacy helper, a sync library): runs unchanged through ``run_sync``."""
    rows = session.execute(
        select(User.name, func.count(Post.id)).outerjoin(Post, Post.author_id == User.id).group_by(User.name)
    )
    return {name: count for name, count in rows}


async def read_after_commit_with_expiry(sessionmaker: async_sessionmaker[AsyncSession], email: str) -> str:
    """With ``expire_on_commit=True`` a plain attribute read after commit raises MissingGreenlet."""
    async with sessionmaker() as session:
        user = (await session.scalars(select(User).where(User.email == email))).one()
        user.name = "Ada L."
        await session.commit()  # expires every loaded attribute
        # The implicit refresh cannot await. On aiosqlite it also leaves an un-awaited cursor
        # coroutine behind (a RuntimeWarning when collected), silenced for this demo.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            try:
                _ = user.name
            except MissingGreenlet:
                caught = True
            else:
                caught = False
            gc.collect()
        if not caught:
            raise AssertionError("expected MissingGreenlet reading an expired attribute")
        return await user.awaitable_attrs.name  # the async way to load an expired attribute


async def count_posts_in_own_session(sessionmaker: async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> int:
    async with sessionmaker() as session:  # each task opens its own session (and connection)
        return await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == user_id)) or 0


async def share_one_session(sessionmaker: async_sessionmaker[AsyncSession]) -> list[InvalidRequestError]:
    """Three ways sharing a session fails loudly; returns the errors. Do not copy the pattern."""
    outcomes: list[object] = []
    async with sessionmaker() as session:  # no connection yet: both tasks try to provision one
        outcomes += await asyncio.gather(
            session.scalar(select(func.count()).select_from(User)),
            session.scalar(select(func.count()).select_from(Post)),
            return_exceptions=True,
        )
    async with sessionmaker() as session:
        session.add(User(email="shared@example.com", name="Shared"))
        outcomes += await asyncio.gather(session.flush(), session.flush(), return_exceptions=True)
        await session.rollback()
    async with sessionmaker() as session:  # one task closes the session another one is using
        outcomes += await asyncio.gather(
            session.scalar(select(func.count()).select_from(User)), session.close(), return_exceptions=True
        )
    return [o for o in outcomes if isinstance(o, InvalidRequestError)]


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)

        # 1. begin() commits; an exception rolls back.
        ada = await create_user(sessionmaker, "ada@example.com", "Ada")
        await failed_unit_of_work(sessionmaker)
        async with sessionmaker() as session:
            emails = list(await session.scalars(select(User.email)))
        if emails != ["ada@example.com"]:
            raise AssertionError(emails)
        print(f"begin(): committed {emails}; the failed block left nothing behind")

        # 2. expire_on_commit=False: reading after commit costs no SQL.
        with count_queries(engine) as queries:
            name = ada.name
        if (name, len(queries)) != ("Ada", 0):
            raise AssertionError((name, queries.statements))
        expiring = async_sessionmaker(engine, expire_on_commit=True)
        reloaded = await read_after_commit_with_expiry(expiring, "ada@example.com")
        if reloaded != "Ada L.":
            raise AssertionError(reloaded)
        print("expire_on_commit=False: attribute read after commit, 0 queries; with True: MissingGreenlet")

        # 3. Loading relationships after the query.
        async with sessionmaker() as session, session.begin():
            session.add_all([Post(title=f"post {n}", author_id=ada.id) for n in range(3)])
        async with sessionmaker() as session:
            user = await session.get(User, ada.id)
            assert user is not None
            await session.refresh(user, ["posts"])  # works with lazy="raise" (2 SELECTs: row, posts)
            via_refresh = len(user.posts)
        async with sessionmaker() as session:
            stmt = select(User).where(User.id == ada.id).options(lazyload(User.posts))  # opt in per query
            user = (await session.scalars(stmt)).one()
            posts = await user.awaitable_attrs.posts  # the lazy load, awaited
        if (via_refresh, len(posts)) != (3, 3):
            raise AssertionError((via_refresh, len(posts)))
        print(f"refresh(user, ['posts']) -> {via_refresh} posts; awaitable_attrs.posts -> {len(posts)} posts")

        # 4. Sync code through run_sync.
        async with sessionmaker() as session:
            counts = await session.run_sync(post_counts)
        if counts != {"Ada L.": 3}:
            raise AssertionError(counts)
        print(f"run_sync(post_counts) -> {counts}")

        # 5. One session per task.
        totals = await asyncio.gather(*(count_posts_in_own_session(sessionmaker, ada.id) for _ in range(4)))
        if sys.version_info >= (3, 11):
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(count_posts_in_own_session(sessionmaker, ada.id)) for _ in range(4)]
            totals += [t.result() for t in tasks]
        if set(totals) != {3}:
            raise AssertionError(totals)
        print(f"{len(totals)} tasks, one session each (gather{' + TaskGroup' if len(totals) > 4 else ''}): {totals}")

        # 6. One session shared by concurrent tasks: refused (when SQLAlchemy notices).
        errors = await share_one_session(sessionmaker)
        seen = [(type(e).__name__, str(e).split(";")[0].split(" (Background")[0]) for e in errors]
        expected = [
            ("InvalidRequestError", "This session is provisioning a new connection"),
            ("InvalidRequestError", "Session is already flushing"),
            ("IllegalStateChangeError", "Method 'close()' can't be called here"),
        ]
        if seen != expected:
            raise AssertionError(seen)
        for name, message in seen:
            print(f"shared session: {name}: {message}")
    print("session_lifecycle: ok")


if __name__ == "__main__":
    asyncio.run(main())

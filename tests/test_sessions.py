"""Session lifecycle on every backend: begin() blocks, expire_on_commit, loading after the query,
run_sync, one session per task, and what sharing one AsyncSession between tasks does.

The functions under test are the ones in examples/session_lifecycle.py (the reference quotes them).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import uuid
import warnings
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IllegalStateChangeError, IntegrityError, InvalidRequestError, MissingGreenlet
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import lazyload

from examples.session_lifecycle import (
    count_posts_in_own_session,
    create_user,
    failed_unit_of_work,
    post_counts,
    read_after_commit_with_expiry,
    share_one_session,
)
from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.models import Post, User
from templates.query_counter import count_queries


@pytest.fixture
async def sessionmaker(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)  # checkfirst: other modules share the namespace
    yield create_sessionmaker(engine)


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def add_user_with_posts(sessionmaker: async_sessionmaker[AsyncSession], n_posts: int) -> User:
    user = await create_user(sessionmaker, unique_email("author"), "Author")
    async with sessionmaker() as session, session.begin():
        session.add_all([Post(title=f"p{i}", author_id=user.id) for i in range(n_posts)])
    return user


async def test_begin_block_commits(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    email = unique_email("commit")
    user = await create_user(sessionmaker, email, "Committed")
    async with sessionmaker() as session:
        stored = await session.scalar(select(User).where(User.email == email))
    assert stored is not None and stored.id == user.id and stored.name == "Committed"


async def test_exception_in_begin_block_rolls_back_flushed_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await failed_unit_of_work(sessionmaker)  # flushes ghost@example.com, then raises inside begin()
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).where(User.email == "ghost@example.com")) == 0


async def test_session_context_returns_connection_to_pool(engine: AsyncEngine) -> None:
    sessionmaker = create_sessionmaker(engine)
    before = engine.pool.checkedout()  # type: ignore[attr-defined]
    async with sessionmaker() as session:
        await session.execute(select(1))
        assert engine.pool.checkedout() == before + 1  # type: ignore[attr-defined]
    assert engine.pool.checkedout() == before  # type: ignore[attr-defined]


async def test_expire_on_commit_false_reads_after_commit_without_sql(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    user = await create_user(sessionmaker, unique_email("noexpire"), "Kept")
    with count_queries(engine) as queries:
        assert (user.name, user.email.startswith("noexpire-")) == ("Kept", True)
        assert user.created_at.tzinfo is not None
    assert len(queries) == 0


async def test_expire_on_commit_true_raises_missing_greenlet(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    email = unique_email("expire")
    await create_user(sessionmaker, email, "Ada")
    expiring = async_sessionmaker(engine, expire_on_commit=True)
    async with expiring() as session:
        user = (await session.scalars(select(User).where(User.email == email))).one()
        await session.commit()
        with warnings.catch_warnings():  # aiosqlite: the refused cursor coroutine is never awaited
            warnings.simplefilter("ignore", RuntimeWarning)
            with pytest.raises(MissingGreenlet, match="greenlet_spawn has not been called"):
                _ = user.name
            gc.collect()
        with count_queries(engine) as queries:
            assert await user.awaitable_attrs.name == "Ada"  # the awaitable way works
        assert len(queries.selects()) == 1


async def test_example_reads_expired_attribute_the_async_way(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    email = unique_email("expire2")
    await create_user(sessionmaker, email, "Ada")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        name = await read_after_commit_with_expiry(async_sessionmaker(engine, expire_on_commit=True), email)
        gc.collect()
    assert name == "Ada L."


async def test_refresh_loads_lazy_raise_relationship(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    author = await add_user_with_posts(sessionmaker, 3)
    async with sessionmaker() as session:
        user = await session.get(User, author.id)
        assert user is not None
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            _ = user.posts
        with count_queries(engine) as queries:
            await session.refresh(user, ["posts"])
        assert sorted(p.title for p in user.posts) == ["p0", "p1", "p2"]
        assert len(queries) == 2  # the row itself (SELECT users.id ...), then the posts


async def test_awaitable_attrs_needs_a_lazy_loader(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    author = await add_user_with_posts(sessionmaker, 2)
    async with sessionmaker() as session:
        user = await session.get(User, author.id)
        assert user is not None
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            await user.awaitable_attrs.posts  # lazy="raise" is honoured by awaitable_attrs too
    async with sessionmaker() as session:
        stmt = select(User).where(User.id == author.id).options(lazyload(User.posts))
        user = (await session.scalars(stmt)).one()
        with count_queries(engine) as queries:
            posts = await user.awaitable_attrs.posts
        assert len(posts) == 2 and len(queries) == 1
        with count_queries(engine) as queries:
            assert len(await user.awaitable_attrs.posts) == 2  # loaded now: no second query
        assert len(queries) == 0


async def test_run_sync_runs_sync_orm_code(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    author = await add_user_with_posts(sessionmaker, 2)
    async with sessionmaker() as session:
        counts = await session.run_sync(post_counts)
    assert counts["Author"] >= 2  # every "Author" of this test session
    async with sessionmaker() as session:
        mine = await session.scalar(select(func.count()).select_from(Post).where(Post.author_id == author.id))
    assert mine == 2


async def test_one_session_per_task_with_gather(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    author = await add_user_with_posts(sessionmaker, 3)
    totals = await asyncio.gather(*(count_posts_in_own_session(sessionmaker, author.id) for _ in range(6)))
    assert totals == [3] * 6


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.TaskGroup needs Python 3.11")
async def test_one_session_per_task_with_taskgroup(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    author = await add_user_with_posts(sessionmaker, 2)
    async with asyncio.TaskGroup() as tg:  # type: ignore[attr-defined]
        tasks = [tg.create_task(count_posts_in_own_session(sessionmaker, author.id)) for _ in range(4)]
    assert [t.result() for t in tasks] == [2] * 4


async def test_sharing_a_session_is_refused_while_connecting_flushing_or_closing(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    errors = await share_one_session(sessionmaker)
    assert [type(e) for e in errors] == [InvalidRequestError, InvalidRequestError, IllegalStateChangeError]
    assert str(errors[0]).startswith(
        "This session is provisioning a new connection; concurrent operations are not permitted"
    )
    assert str(errors[1]) == "Session is already flushing"
    assert str(errors[2]).startswith("Method 'close()' can't be called here; method '_connection_for_bind()'")


async def test_close_racing_commit_flushes_an_emptied_object(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """A shared session closed by one task while another commits: the flush sends the INSERT with
    the object's values already gone (NULLs) - here stopped by NOT NULL; a nullable table would
    store the garbage."""
    async with sessionmaker() as session:
        session.add(User(email=unique_email("race"), name="Race"))
        results = await asyncio.gather(session.commit(), session.close(), return_exceptions=True)
    assert isinstance(results[0], IntegrityError)
    message = str(results[0].orig).lower()  # e.g. NOT NULL constraint failed: users.email
    assert "email" in message and "null" in message
    assert isinstance(results[1], IllegalStateChangeError)


async def test_sharing_a_connected_session_raises_nothing(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Why "it did not raise" proves nothing: once the session holds a connection, the driver
    adapter serializes concurrent statements and no error is raised - the tasks still share one
    transaction and one identity map (and interleaving commit/close with a statement breaks the
    connection itself)."""
    author = await add_user_with_posts(sessionmaker, 1)
    async with sessionmaker() as session:
        await session.execute(select(1))  # the session now holds a connection
        results = await asyncio.gather(
            *(session.scalar(select(User.name).where(User.id == author.id)) for _ in range(5)),
            return_exceptions=True,
        )
    assert results == ["Author"] * 5

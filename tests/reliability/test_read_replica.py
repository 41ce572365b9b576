"""Read-replica routing (templates/read_replica.py) on a real pair: a private PostgreSQL primary and
its streaming hot standby (pg_basebackup -R). Which engine each kind of statement reaches (counted
with engine events), that the standby refuses writes, and the read-your-writes caveat (made
deterministic by pausing WAL replay on the standby). ``make_read_only`` is also checked on
MariaDB and SQLite, where the "replica" is a second namespace.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from pgserver import PrivatePostgres, PrivateStandby
from replica_support import Pair, Routes, caught_up, replay_paused, routed_pair
from sqlalchemy import event, select, text, union_all, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession

from templates.database import DatabaseSettings, create_db_engine
from templates.models import User
from templates.read_replica import create_routing_sessionmaker, make_read_only, use_primary
from templates.retry import run_in_transaction
from templates.scratch import scratch_url


@pytest.fixture(scope="module")
async def pair(replication: tuple[PrivatePostgres, PrivateStandby]) -> AsyncIterator[Pair]:
    async with routed_pair(*replication) as routed:
        yield routed


def email() -> str:
    return f"{uuid.uuid4().hex[:12]}@replica.test"


async def add_user(pair: Pair, *, replicated: bool) -> User:
    async with pair.sessions() as session, session.begin():
        user = User(email=email(), name="R")
        session.add(user)
    if replicated:
        await caught_up(pair)
    return user


async def test_plain_reads_go_to_the_replica(pair: Pair) -> None:
    user = await add_user(pair, replicated=True)
    with Routes(pair) as routes:
        async with pair.sessions() as session:
            assert (await session.scalar(select(User).where(User.id == user.id))) is not None
            assert (await session.get(User, user.id, populate_existing=True)) is not None
    assert routes.counts() == (0, 2), (routes.primary, routes.replica)


async def test_unions_reach_get_bind_without_their_statement_and_use_the_primary(pair: Pair) -> None:
    user = await add_user(pair, replicated=False)
    with Routes(pair) as routes:
        async with pair.sessions() as session:
            both = union_all(select(User.id).where(User.id == user.id), select(User.id).where(User.id == user.id))
            assert len((await session.execute(both)).all()) == 2
    assert routes.counts() == (1, 0)


async def test_writes_and_every_read_after_them_go_to_the_primary(pair: Pair) -> None:
    user = await add_user(pair, replicated=True)
    async with replay_paused(pair.standby_server):  # the standby keeps the old name until resumed
        with Routes(pair) as routes:
            async with pair.sessions() as session, session.begin():
                before = await session.scalar(select(User.name).where(User.id == user.id))  # replica
                await session.execute(update(User).where(User.id == user.id).values(name="changed"))
                after = await session.scalar(select(User.name).where(User.id == user.id))  # primary: sees it
        assert (before, after) == ("R", "changed")
        assert len(routes.replica) == 1 and len(routes.primary) == 2, (routes.primary, routes.replica)
        with Routes(pair) as routes:  # the next transaction reads the replica again (not yet replayed)
            async with pair.sessions() as session:
                assert await session.scalar(select(User.name).where(User.id == user.id)) == "R"
        assert routes.counts() == (0, 1)


async def test_flush_pins_the_transaction_and_rollback_unpins(pair: Pair) -> None:
    with Routes(pair) as routes:
        async with pair.sessions() as session:
            async with session.begin():
                user = User(email=email(), name="F")
                session.add(user)
                await session.flush()
                assert await session.scalar(select(User).where(User.id == user.id)) is user
                await session.rollback()
            assert await session.scalar(select(User).where(User.id == user.id)) is None  # replica again
    assert len(routes.replica) == 1 and routes.replica[0].lstrip().upper().startswith("SELECT")
    assert [s.split()[0].upper() for s in routes.primary] == ["INSERT", "SELECT"]  # flush, then the read


@pytest.mark.parametrize("kind", ["for_update", "text", "connection", "use_primary"])
async def test_locks_raw_sql_and_explicit_pins_use_the_primary(pair: Pair, kind: str) -> None:
    user = await add_user(pair, replicated=True)
    with Routes(pair) as routes:
        async with pair.sessions() as session, session.begin():
            if kind == "for_update":
                await session.scalar(select(User).where(User.id == user.id).with_for_update())
            elif kind == "text":
                await session.execute(text("SELECT 1"))
            elif kind == "connection":
                await session.connection()
            else:
                use_primary(session)
            await session.scalar(select(User).where(User.id == user.id))  # follows the first statement
    assert len(routes.replica) == 0, routes.replica
    assert len(routes.primary) >= 1


async def test_without_a_replica_everything_uses_the_primary(pair: Pair) -> None:
    sessions = create_routing_sessionmaker(pair.primary, None)
    with Routes(pair) as routes:
        async with sessions() as session:
            await session.scalar(select(User).limit(1))
    assert routes.counts() == (1, 0)


async def test_concurrent_sessions_route_independently(pair: Pair) -> None:
    user = await add_user(pair, replicated=True)
    writer_pinned, reader_done = asyncio.Event(), asyncio.Event()

    async def writer() -> None:
        async with pair.sessions() as session, session.begin():
            await session.execute(update(User).where(User.id == user.id).values(name="W"))
            writer_pinned.set()
            await asyncio.wait_for(reader_done.wait(), 10)

    async def reader() -> str | None:
        await asyncio.wait_for(writer_pinned.wait(), 10)
        try:
            async with pair.sessions() as session:
                return await session.scalar(select(User.name).where(User.id == user.id))
        finally:
            reader_done.set()

    with Routes(pair) as routes:
        _, seen = await asyncio.gather(writer(), reader())
    assert seen == "R" and len(routes.replica) == 1  # the reader was not pinned by the writer


async def test_read_your_writes_needs_the_primary_until_the_standby_replays(pair: Pair) -> None:
    async with replay_paused(pair.standby_server):
        user = await add_user(pair, replicated=False)
        async with pair.sessions() as session:
            assert await session.get(User, user.id) is None  # the standby has not replayed the INSERT
        async with pair.sessions() as session:
            use_primary(session)
            assert await session.get(User, user.id) is not None
    await caught_up(pair)
    async with pair.sessions() as session:
        assert await session.get(User, user.id) is not None


async def test_refresh_after_commit_reads_the_lagging_replica(pair: Pair) -> None:
    async with replay_paused(pair.standby_server):
        async with pair.sessions() as session:
            user = User(email=email(), name="N")
            session.add(user)
            await session.commit()  # the next statement starts a new transaction: unpinned
            with pytest.raises(InvalidRequestError, match="Could not refresh instance"):
                await session.refresh(user)  # a SELECT: sent to the standby, which lacks the row
            use_primary(session)
            await session.refresh(user)
    assert user.name == "N"


async def test_retried_transactions_run_on_the_primary(pair: Pair) -> None:
    user = await add_user(pair, replicated=True)

    async def rename(session: AsyncSession) -> str:
        current = await session.scalar(select(User).where(User.id == user.id))
        assert current is not None
        current.name = current.name + "!"
        return current.name

    with Routes(pair) as routes:
        assert await run_in_transaction(pair.sessions, rename) == "R!"
    assert len(routes.replica) == 0  # session.connection(...) at the start pinned it: no stale read


async def test_the_standby_refuses_writes_by_itself(replication: tuple[PrivatePostgres, PrivateStandby]) -> None:
    """Without make_read_only: a hot standby is read-only; make_read_only only matters for
    replicas that are not (and for a standby after promotion)."""
    engine = create_db_engine(DatabaseSettings(url=replication[1].url()))
    try:
        with pytest.raises(DBAPIError, match="cannot execute CREATE TABLE in a read-only transaction"):
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE nope (id int)"))
    finally:
        await engine.dispose()


@pytest.mark.only_backends("sqlite", "mysql")
async def test_make_read_only_refuses_writes(server_url: str, backend: str) -> None:
    expected = {
        "mysql": "Cannot execute statement in a READ ONLY transaction",
        "sqlite": "attempt to write a readonly database",
    }[backend]
    async with scratch_url(server_url) as (url, connect_args):
        settings = DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args)
        writer, replica = create_db_engine(settings), create_db_engine(settings)
        make_read_only(replica)
        try:
            async with writer.begin() as conn:
                await conn.run_sync(User.metadata.create_all, tables=[User.__table__])
            with pytest.raises(DBAPIError) as caught:
                async with replica.begin() as conn:
                    await conn.execute(User.__table__.insert().values(id=uuid.uuid4(), email=email(), name="x"))
            assert expected in str(caught.value)
        finally:
            await writer.dispose()
            await replica.dispose()


@pytest.mark.only_backends("postgresql")
async def test_set_in_a_connect_event_is_rolled_back_on_asyncpg_without_commit(server_url: str, backend: str) -> None:
    """asyncpg-specific: its adapter runs connect-event statements in a transaction (the driver is
    set here, whichever driver TEST_POSTGRES_URL names)."""
    async with scratch_url(make_url(server_url).set(drivername="postgresql+asyncpg")) as (url, connect_args):
        settings = DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args)
        engine = create_db_engine(settings)

        @event.listens_for(engine.sync_engine, "connect")
        def read_only_without_commit(dbapi_connection, connection_record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            cursor.close()

        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text("SHOW transaction_read_only")) == "off"  # it did not stick
        finally:
            await engine.dispose()


async def test_fastapi_app_with_a_routing_sessionmaker(pair: Pair) -> None:
    """examples/fastapi_app.py unchanged: only ``app.state.sessionmaker`` is the routing one (set it
    in your lifespan). POST goes to the primary, GET to the standby, which lags while paused."""
    import httpx

    from examples.fastapi_app import create_app

    app = create_app(DatabaseSettings(url="sqlite+aiosqlite://"), with_tables=False)  # lifespan not run
    app.state.sessionmaker = pair.sessions
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        async with replay_paused(pair.standby_server):
            with Routes(pair) as routes:
                created = await client.post("/users", json={"email": email(), "name": "Api"})
            assert created.status_code == 201, created.text
            assert len(routes.replica) == 0 and any(s.startswith("INSERT") for s in routes.primary), routes.primary
            user_id = created.json()["id"]
            with Routes(pair) as routes:
                lagging = await client.get(f"/users/{user_id}")
            assert lagging.status_code == 404 and len(routes.primary) == 0  # read-your-writes caveat, via HTTP
        await caught_up(pair)
        with Routes(pair) as routes:
            found = await client.get(f"/users/{user_id}")
        assert found.status_code == 200 and found.json()["name"] == "Api"
        assert len(routes.primary) == 0 and len(routes.replica) >= 1

"""Proof for references/pooling.md: the template's pool settings, per backend.

- pool class: AsyncAdaptedQueuePool for servers and SQLite files, StaticPool for in-memory SQLite,
  NullPool with ``null_pool=True``; the configured sizes are the pool's sizes;
- ``pool_timeout``: with ``pool_size + max_overflow`` connections checked out, the next checkout
  raises ``sqlalchemy.exc.TimeoutError``; a waiter gets a connection as soon as one is returned;
- ``pool_recycle``: a connection older than the limit is replaced at its next checkout;
- ``pool_pre_ping``: after the server kills a pooled connection the next checkout reconnects
  (and without pre-ping the first use fails with a "connection invalidated" error);
- ``checkedout()`` is back to 0 after sessions close (also after errors and under concurrency);
- after ``os.fork()`` the child must ``dispose(close=False)`` the inherited pool;
- asyncpg settings for a transaction pooler: ``statement_cache_size=0`` and
  ``prepared_statement_name_func`` are accepted and in effect against PostgreSQL directly
  (through a real PgBouncer: tests/reliability/test_pgbouncer.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import select, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool, NullPool, StaticPool

from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker

BACKEND_PID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
STALE_CONNECTION_ERROR = {
    "postgresql": "connection is closed",  # asyncpg InterfaceError
    "mysql": "Lost connection to MySQL server during query",  # (2013, ...) OperationalError
}


def settings_for(db_url: tuple[URL, dict[str, Any]], **overrides: Any) -> DatabaseSettings:
    url, connect_args = db_url
    return DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args, **overrides)


async def backend_pid(conn: AsyncConnection) -> int:
    return int((await conn.execute(text(BACKEND_PID[conn.dialect.name]))).scalar_one())


# --- pool classes and sizes -----------------------------------------------------------------


async def test_default_pool_is_async_queue_pool(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    engine = create_db_engine(settings_for(db_url, pool_size=3, max_overflow=4, pool_timeout=7, pool_recycle=600))
    try:
        pool = engine.pool
        assert type(pool) is AsyncAdaptedQueuePool  # servers and SQLite files alike
        assert pool.size() == 3
        assert pool.timeout() == 7
        assert pool._max_overflow == 4  # no public accessor
        assert pool._recycle == 600
        assert pool._pre_ping is True
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
            assert pool.checkedout() == 1
        assert pool.checkedout() == 0
        assert pool.checkedin() == 1  # kept open for the next checkout
    finally:
        await engine.dispose()


async def test_environment_settings_reach_the_pool(tmp_path: Path) -> None:
    settings = DatabaseSettings.from_env(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'env.db'}",
            "DB_POOL_SIZE": "4",
            "DB_MAX_OVERFLOW": "2",
            "DB_POOL_TIMEOUT": "5",
            "DB_POOL_RECYCLE": "300",
        }
    )
    engine = create_db_engine(settings)
    try:
        assert (engine.pool.size(), engine.pool._max_overflow, engine.pool.timeout(), engine.pool._recycle) == (
            4,
            2,
            5,
            300,
        )
    finally:
        await engine.dispose()
    engine = create_db_engine(DatabaseSettings.from_env({"DATABASE_URL": settings.url, "DB_NULL_POOL": "1"}))
    assert type(engine.pool) is NullPool
    await engine.dispose()


async def test_memory_sqlite_uses_one_static_connection() -> None:
    engine = create_db_engine(DatabaseSettings(url="sqlite+aiosqlite://"))
    try:
        assert type(engine.pool) is StaticPool
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE pl_memo (x INTEGER)"))
            await conn.execute(text("INSERT INTO pl_memo VALUES (42)"))
        async with engine.connect() as conn:  # same connection -> same in-memory database
            assert (await conn.execute(text("SELECT x FROM pl_memo"))).scalar_one() == 42
    finally:
        await engine.dispose()


async def test_null_pool_opens_a_connection_per_checkout(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    pooled = create_db_engine(settings_for(db_url))
    unpooled = create_db_engine(settings_for(db_url, null_pool=True))
    try:
        assert type(unpooled.pool) is NullPool
        for engine, reused in ((pooled, True), (unpooled, False)):
            seen = []
            for _ in range(2):
                async with engine.connect() as conn:
                    seen.append((await conn.get_raw_connection()).driver_connection)
            assert (seen[0] is seen[1]) is reused, engine.pool
        assert pooled.pool.checkedout() == 0
        assert not hasattr(unpooled.pool, "checkedout")  # NullPool keeps no count; status() only

        # NullPool ignores pool_size / max_overflow / pool_timeout: no limit on open connections
        limited = create_db_engine(settings_for(db_url, null_pool=True, pool_size=1, max_overflow=0, pool_timeout=0.1))
        held = [await limited.connect() for _ in range(4)]
        try:
            raw = [(await c.get_raw_connection()).driver_connection for c in held]
            assert len({id(r) for r in raw}) == 4
        finally:
            for conn in held:
                await conn.close()
            await limited.dispose()
    finally:
        await pooled.dispose()
        await unpooled.dispose()


# --- pool_timeout -----------------------------------------------------------------------------


async def test_pool_timeout_after_size_plus_overflow(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    engine = create_db_engine(settings_for(db_url, pool_size=2, max_overflow=1, pool_timeout=0.3))
    held: list[AsyncConnection] = []
    try:
        for _ in range(3):  # pool_size + max_overflow
            held.append(await engine.connect())
        assert engine.pool.checkedout() == 3
        with pytest.raises(
            PoolTimeoutError, match=r"QueuePool limit of size 2 overflow 1 reached, connection timed out, timeout 0\.30"
        ):
            await engine.connect()
    finally:
        for conn in held:
            await conn.close()
    assert engine.pool.checkedout() == 0
    assert engine.pool.checkedin() == 2  # the overflow connection was closed on return
    await engine.dispose()


@pytest.mark.parametrize("pool_size, max_overflow", [(0, 0), (1, -1)], ids=["pool_size=0", "max_overflow=-1"])
async def test_unlimited_pool_settings(
    db_url: tuple[URL, dict[str, Any]], backend: str, pool_size: int, max_overflow: int
) -> None:
    """pool_size=0 or max_overflow=-1 remove the limit: pool_timeout never triggers."""
    engine = create_db_engine(settings_for(db_url, pool_size=pool_size, max_overflow=max_overflow, pool_timeout=0.1))
    held = [await engine.connect() for _ in range(6)]
    try:
        assert engine.pool.checkedout() == 6
    finally:
        for conn in held:
            await conn.close()
        await engine.dispose()


async def test_waiting_checkout_gets_a_returned_connection(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    engine = create_db_engine(settings_for(db_url, pool_size=1, max_overflow=0, pool_timeout=30))
    try:
        first = await engine.connect()

        async def second_checkout() -> int:
            async with engine.connect() as conn:
                return (await conn.execute(text("SELECT 2"))).scalar_one()

        waiter = asyncio.create_task(second_checkout())
        await asyncio.sleep(0.1)
        assert not waiter.done()  # blocked: the only connection is checked out
        await first.close()
        assert await asyncio.wait_for(waiter, 30) == 2
        assert engine.pool.checkedout() == 0
    finally:
        await engine.dispose()


async def test_pool_recycle_replaces_old_connections(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    engine = create_db_engine(settings_for(db_url, pool_size=1, max_overflow=0, pool_recycle=1))
    try:
        async with engine.connect() as conn:
            first = (await conn.get_raw_connection()).driver_connection
        async with engine.connect() as conn:  # younger than pool_recycle: reused
            assert (await conn.get_raw_connection()).driver_connection is first
        await asyncio.sleep(1.2)
        async with engine.connect() as conn:  # older than pool_recycle: closed and replaced
            assert (await conn.get_raw_connection()).driver_connection is not first
    finally:
        await engine.dispose()


# --- pre-ping ---------------------------------------------------------------------------------


async def kill_on_server(admin: AsyncEngine, pid: int) -> None:
    """End a connection from the server side (what a restart or an idle timeout does)."""
    async with admin.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        else:
            await conn.execute(text(f"KILL CONNECTION {int(pid)}"))


@pytest.mark.only_backends("postgresql", "mysql")  # SQLite has no server that could end the connection
async def test_pre_ping_replaces_a_connection_killed_by_the_server(
    db_url: tuple[URL, dict[str, Any]], backend: str
) -> None:
    url, connect_args = db_url
    admin = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        for pre_ping in (True, False):
            engine = create_db_engine(settings_for(db_url, pool_size=1, max_overflow=0), pool_pre_ping=pre_ping)
            try:
                async with engine.connect() as conn:
                    killed = await backend_pid(conn)
                await kill_on_server(admin, killed)
                await asyncio.sleep(0.2)  # let the server finish closing it
                if pre_ping:
                    async with engine.connect() as conn:  # the ping fails, the pool reconnects
                        assert await backend_pid(conn) != killed
                else:
                    with pytest.raises(DBAPIError, match=STALE_CONNECTION_ERROR[backend]) as err:
                        async with engine.connect() as conn:
                            await backend_pid(conn)
                    assert err.value.connection_invalidated
                    async with engine.connect() as conn:  # the invalidated one was replaced
                        assert await backend_pid(conn) != killed
                assert engine.pool.checkedout() == 0
            finally:
                await engine.dispose()
    finally:
        await admin.dispose()


# --- checkedout() back to 0 -------------------------------------------------------------------


async def test_sessions_return_their_connections(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    engine = create_db_engine(settings_for(db_url, pool_size=2, max_overflow=0, pool_timeout=30))
    sessionmaker = create_sessionmaker(engine)
    try:

        async def work(n: int) -> int:
            async with sessionmaker() as session, session.begin():
                return (await session.execute(select(text(str(n))))).scalar_one()

        assert await asyncio.gather(*(work(n) for n in range(10))) == list(range(10))
        assert engine.pool.checkedout() == 0

        with pytest.raises(ZeroDivisionError):
            async with sessionmaker() as session, session.begin():
                await session.execute(text("SELECT 1"))
                assert engine.pool.checkedout() == 1
                1 / 0  # noqa: B018 - an error inside the transaction
        assert engine.pool.checkedout() == 0
    finally:
        await engine.dispose()


# --- capacity: workers x (pool_size + max_overflow) <= max_connections ------------------------


async def server_max_connections(conn: AsyncConnection) -> int:
    if conn.dialect.name == "postgresql":
        return int((await conn.execute(text("SHOW max_connections"))).scalar_one())
    return int((await conn.execute(text("SELECT @@max_connections"))).scalar_one())


def max_workers(settings: DatabaseSettings, max_connections: int, reserved: int = 5) -> int:
    """Processes that fit: each may open pool_size + max_overflow connections at peak."""
    if settings.null_pool:
        raise ValueError("NullPool sets no limit: every concurrent checkout opens a connection")
    return (max_connections - reserved) // (settings.pool_size + settings.max_overflow)


@pytest.mark.only_backends("postgresql", "mysql")  # SQLite has no connection limit
async def test_connection_budget(engine: AsyncEngine, backend: str) -> None:
    async with engine.connect() as conn:
        limit = await server_max_connections(conn)
    assert limit > 0
    defaults = DatabaseSettings(url="postgresql+asyncpg://app@db/app")  # 5 + 10 per process
    assert max_workers(defaults, 100) == 6  # 6 x 15 = 90 <= 95
    assert max_workers(DatabaseSettings(url="x://", pool_size=10, max_overflow=0), 100, reserved=0) == 10
    with pytest.raises(ValueError, match="NullPool sets no limit"):
        max_workers(DatabaseSettings(url="x://", null_pool=True), 100)
    print(f"{backend}: max_connections={limit}, room for {max_workers(defaults, limit)} processes at the defaults")


# --- fork -------------------------------------------------------------------------------------


def fork_and_query(url: str, dispose_in_child: bool) -> None:
    """Parent uses the pool, then forks; exit code = the child's exit code."""
    engine = create_db_engine(DatabaseSettings(url=url))

    async def query() -> int:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar_one()

    async def child_main() -> int:
        if dispose_in_child:
            await engine.dispose(close=False)  # forget the parent's connections, don't close them
        return await query()

    asyncio.run(query())  # the parent's pool now holds an open connection
    pid = os.fork()
    if pid == 0:
        try:
            asyncio.run(child_main())
        except BaseException as exc:
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


def run_fork(url: str, dispose_in_child: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT)]))
    code = f"import test_pooling as t; t.fork_and_query({url!r}, {dispose_in_child!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_forked_child_must_dispose_the_inherited_pool(server_url: str, backend: str, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'fork.db'}" if backend == "sqlite" else server_url  # SELECT 1 only
    fixed = await asyncio.to_thread(run_fork, url, True)
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    if backend != "sqlite":  # aiosqlite does not share a socket with the parent
        wrong = await asyncio.to_thread(run_fork, url, False)
        assert wrong.returncode == 1
        assert "child failed: RuntimeError" in wrong.stderr and "attached to a different loop" in wrong.stderr, (
            wrong.stderr[-3000:]
        )


# --- asyncpg behind a transaction pooler ----------------------------------------------------


def pgbouncer_engine(url: str | URL, connect_args: dict[str, Any]) -> AsyncEngine:
    """The measured recipe (references/pooling.md): the app's pool kept, unnamed statements only."""
    return create_async_engine(
        url,
        connect_args={
            **connect_args,
            "statement_cache_size": 0,  # asyncpg's own prepared-statement cache
            "prepared_statement_cache_size": 0,  # SQLAlchemy's asyncpg adapter cache
            "prepared_statement_name_func": lambda: "",  # PostgreSQL's unnamed statement
        },
    )


@pytest.mark.only_backends("postgresql")  # asyncpg (PostgreSQL) settings only
async def test_asyncpg_settings_for_transaction_pooling(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    """Nothing named is left on the server connection, so no other client can find or collide with it."""
    url, connect_args = db_url
    engine = pgbouncer_engine(url, connect_args)
    try:
        async with engine.connect() as conn:
            for _ in range(3):
                assert (await conn.execute(select(text("1")))).scalar_one() == 1
            names = (await conn.execute(text("SELECT name FROM pg_prepared_statements"))).scalars().all()
        assert names == [], names
        assert type(engine.pool) is not NullPool  # the app keeps its pool behind PgBouncer
    finally:
        await engine.dispose()

"""Engine, session factory and FastAPI wiring for async SQLAlchemy 2.x.

Copy into your project (e.g. ``app/db/session_manager.py``). It gives you:

- ``DatabaseSettings.from_env()``: ``DATABASE_URL`` and ``DB_*`` pool settings from the environment.
- ``create_engine(settings)``: ``create_async_engine`` with pool settings that fit the backend, and
  for SQLite files: foreign keys on, WAL, a busy timeout and working SAVEPOINTs on aiosqlite.
- ``create_sessionmaker(engine)``: ``async_sessionmaker(expire_on_commit=False)``.
- ``lifespan`` / ``create_lifespan(settings)``: creates the engine at startup, disposes it at shutdown.
- ``SessionDep``: a request-scoped ``AsyncSession`` that commits **before** the response is sent
  (``Depends(..., scope="function")``), so a failed commit becomes an HTTP error, not a lost write.
- ``install_error_handlers(app)``: IntegrityError -> 409; pool timeout, unreachable/restarting server or
  lost connection -> 503 with Retry-After (``is_database_unavailable``).
- ``health_router``: ``GET /health`` runs ``SELECT 1``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool


NumberT = TypeVar("NumberT", int, float)


def env_flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DatabaseSettings:
    """Connection and pool settings; ``from_env()`` reads them from environment variables."""

    url: str
    echo: bool = False
    pool_size: int = 5  # connections kept open per process
    max_overflow: int = 10  # extra connections under load (closed when returned)
    pool_timeout: float = 30.0  # seconds to wait for a connection before TimeoutError
    pool_recycle: int = 1800  # replace connections older than this (MySQL wait_timeout, proxies)
    null_pool: bool = False  # no pooling: an external pooler (PgBouncer) or serverless
    connect_args: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DatabaseSettings:
        url = environ.get("DATABASE_URL")
        if not url:
            raise RuntimeError(
                "DATABASE_URL is not set (e.g. postgresql+asyncpg://user:pass@host/db, "
                "mysql+aiomysql://user:pass@host/db or sqlite+aiosqlite:///app.db)"
            )
        return cls(
            url=url,
            echo=env_flag(environ.get("DB_ECHO")),
            pool_size=env_number(environ, "DB_POOL_SIZE", cls.pool_size, int),
            max_overflow=env_number(environ, "DB_MAX_OVERFLOW", cls.max_overflow, int),
            pool_timeout=env_number(environ, "DB_POOL_TIMEOUT", cls.pool_timeout, float),
            pool_recycle=env_number(environ, "DB_POOL_RECYCLE", cls.pool_recycle, int),
            null_pool=env_flag(environ.get("DB_NULL_POOL")),
        )


def env_number(environ: Mapping[str, str], name: str, default: NumberT, kind: Callable[[str], NumberT]) -> NumberT:
    """``environ[name]`` as a number, or ``default``; a bad value names the variable."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw.strip())
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def is_sqlite_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory:")


def configure_sqlite(engine: AsyncEngine, *, busy_timeout_ms: int = 5000) -> None:
    """Per-connection SQLite setup, installed on the engine's sync core.

    sqlite3 (under aiosqlite) opens transactions itself and never emits BEGIN for SAVEPOINT
    work, which breaks ``begin_nested()``. Turning its own handling off and emitting BEGIN from
    SQLAlchemy's ``begin`` event is the SQLAlchemy-documented fix ("Serializable isolation /
    Savepoints / Transactional DDL" in the SQLite dialect docs).

    A plain (deferred) BEGIN lets two transactions read and then both try to write: the second
    gets "database is locked" at once (SQLITE_BUSY / SQLITE_BUSY_SNAPSHOT), busy_timeout does not
    help. For read-then-write transactions take the write lock up front, so writers queue:
    ``await session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})`` as the first
    statement (``examples/transactions.py: run_in_transaction`` does this).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit at the driver; we send BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        mode = str(conn.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"sqlite_begin must be DEFERRED, IMMEDIATE or EXCLUSIVE, not {mode!r}")
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else f"BEGIN {mode}")


def create_engine(settings: DatabaseSettings, **overrides: Any) -> AsyncEngine:
    """``create_async_engine`` with settings that fit the backend in ``settings.url``.

    ``overrides`` go straight to ``create_async_engine`` (e.g. ``connect_args``).
    """
    url = make_url(settings.url)
    kwargs: dict[str, Any] = {"echo": settings.echo, "connect_args": dict(settings.connect_args)}
    sqlite = url.get_backend_name() == "sqlite"
    if settings.null_pool:
        kwargs["poolclass"] = NullPool  # never QueuePool: async engines need the async-adapted pool
    elif not (sqlite and is_sqlite_memory(url.database)):
        # pre_ping costs one round trip per checkout and saves the first request after a
        # restart / idle disconnect from failing. Memory SQLite uses a StaticPool: no sizing.
        kwargs.update(
            pool_pre_ping=True,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle,
        )
    kwargs.update(overrides)
    engine = create_async_engine(url, **kwargs)
    if sqlite:
        configure_sqlite(engine)
    return engine


def create_sessionmaker(engine: AsyncEngine, **options: Any) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep attribute values after commit (no implicit lazy refresh -> MissingGreenlet).

    ``options`` go to ``async_sessionmaker`` (e.g. ``sync_session_class=`` for a routing session).
    """
    return async_sessionmaker(engine, expire_on_commit=False, **options)


# --- FastAPI -------------------------------------------------------------------------------


def create_lifespan(
    settings: DatabaseSettings | Callable[[], DatabaseSettings] = DatabaseSettings.from_env,
    *,
    on_startup: Callable[[AsyncEngine], Awaitable[None]] | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that owns one engine per process: ``FastAPI(lifespan=create_lifespan(settings))``.

    ``settings`` is a ``DatabaseSettings`` or a callable returning one, called at startup (the
    default reads the environment then, not at import). ``on_startup(engine)`` runs after the
    engine exists, e.g. to create tables in a demo. The engine is disposed at shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings() if callable(settings) else settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        try:
            if on_startup is not None:
                await on_startup(engine)
            yield
        finally:
            await engine.dispose()

    return lifespan


# Create the engine once per process from DATABASE_URL; dispose it at shutdown.
lifespan = create_lifespan()


@asynccontextmanager
async def commit_or_rollback(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block ends normally and rolls back when it raises.

    The unit of work behind ``get_session``; a test fixture that overrides ``get_session`` uses
    it too (``templates/conftest.py``), so tests keep the production contract.
    """
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; commit if the endpoint returned normally, else roll back.

    Use it through ``SessionDep`` (``scope="function"``): the code after ``yield`` then runs
    when the endpoint returns and **before** the response is sent, so an IntegrityError at
    commit reaches the error handlers (-> 409) instead of being raised after a 2xx went out.
    """
    async with commit_or_rollback(request.app.state.sessionmaker) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


# "Not reachable right now" from the server: SQLSTATE class 08 (connection exception), 57P01
# admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now ("the database system is
# starting up / shutting down"); see "PostgreSQL Error Codes".
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# MySQL/MariaDB: 1040 too many connections, 1053 server shutdown in progress, 2002/2003 can't
# connect, 2006 server has gone away, 2013 lost connection during query.
UNAVAILABLE_MYSQL_ERRORS = frozenset({1040, 1053, 2002, 2003, 2006, 2013})


def is_database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached or dropped the connection.

    Covers what a server restart produces (tests/reliability/test_server_restart.py): asyncpg
    raises a refused or lost connection unwrapped (``ConnectionRefusedError``, ``ConnectionError:
    unexpected connection_lost() call``), SQLAlchemy 2.0 also lets asyncpg's
    ``CannotConnectNowError`` through; the others arrive as ``DBAPIError`` whose
    ``connection_invalidated`` is often False for a failed connect.
    """
    if isinstance(exc, PoolTimeoutError | ConnectionError):
        return True
    orig: BaseException | None = exc
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
    if orig is None:
        return False
    if isinstance(orig, ConnectionError):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MySQL error number (check it before any SQLSTATE)
        return args[0] in UNAVAILABLE_MYSQL_ERRORS
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if isinstance(sqlstate, str):
        return sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    # psycopg: a failed connection attempt ("connection failed: ... Connection refused") has no SQLSTATE.
    return type(orig).__module__.startswith("psycopg") and type(orig).__name__ == "OperationalError"


# Unique and foreign-key violations: PostgreSQL SQLSTATE, MySQL/MariaDB error numbers, SQLite text.
CONFLICT_SQLSTATES = {"23505", "23503"}
CONFLICT_MYSQL_ERRORS = {1062, 1451, 1452, 1586}
CONFLICT_SQLITE_TEXT = ("UNIQUE constraint failed", "FOREIGN KEY constraint failed")


def is_conflict(exc: BaseException) -> bool:
    """True for an ``IntegrityError`` caused by existing data (duplicate key, foreign key)."""
    orig = getattr(exc, "orig", None) or exc
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MySQL drivers: (errno, message); their sqlstate is a generic 23000
        return args[0] in CONFLICT_MYSQL_ERRORS
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate is not None:
        return str(sqlstate) in CONFLICT_SQLSTATES
    return any(text_ in str(orig) for text_ in CONFLICT_SQLITE_TEXT)


def install_error_handlers(app: FastAPI, *, retry_after_seconds: int = 1) -> None:
    """Map database errors to HTTP answers instead of a 500 with a traceback.

    Unique / foreign-key violations -> 409 (``is_conflict``); pool timeout, unreachable or restarting server, lost connection -> 503
    with ``Retry-After`` (``is_database_unavailable``); other database errors stay 500.
    """

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        if not is_conflict(exc):
            raise exc  # NOT NULL / CHECK violations are bugs in the app, not the client's fault: 500
        return JSONResponse({"detail": "conflict with existing data"}, status_code=409)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": str(retry_after_seconds)},
        )

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            return await unavailable(request, exc)
        raise exc

    app.add_exception_handler(IntegrityError, conflict)
    app.add_exception_handler(PoolTimeoutError, unavailable)
    app.add_exception_handler(DBAPIError, database_error)
    # asyncpg's refused / lost connections are not wrapped by SQLAlchemy (2.0 and 2.1).
    app.add_exception_handler(ConnectionError, unavailable)
    try:
        from asyncpg import PostgresError as AsyncpgPostgresError
    except ImportError:  # not using asyncpg
        pass
    else:  # SQLAlchemy 2.0 raises some asyncpg connect errors unwrapped (57P03 while restarting)
        app.add_exception_handler(AsyncpgPostgresError, database_error)


HEALTH_TIMEOUT_SECONDS = 3.0  # well below a load balancer's probe timeout; pool_timeout is 30 s
health_router = APIRouter()


@health_router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 when ``SELECT 1`` succeeds, 503 otherwise (without leaking connection details)."""
    engine: AsyncEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:  # lifespan did not run (e.g. a test client without it)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    try:
        await asyncio.wait_for(select_one(engine), HEALTH_TIMEOUT_SECONDS)
    except Exception:  # includes the timeout: an exhausted pool must not hang the probe
        return JSONResponse({"status": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))

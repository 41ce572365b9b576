"""Engine and session factories for async SQLAlchemy 2.x, free of any web framework.

Copy into your project (e.g. ``app/db/database.py``) with ``db_errors.py`` and ``retry.py`` beside
it. A worker, a CLI, a FastAPI or a Litestar app use it alike; ``fastapi_integration.py`` adds the
FastAPI wiring on top.

- ``DatabaseSettings.from_env()``: ``DATABASE_URL`` and ``DB_*`` pool settings from the environment.
- ``create_db_engine(settings)``: ``create_async_engine`` with pool settings that fit the backend,
  and for SQLite files: foreign keys on, WAL, a busy timeout and working SAVEPOINTs on aiosqlite.
  (Named so that it cannot be mistaken for SQLAlchemy's synchronous ``create_engine``.)
- ``create_sessionmaker(engine)``: ``async_sessionmaker(expire_on_commit=False)``.
- ``commit_or_rollback(sessionmaker)``: one unit of work - commit on success, roll back on error.

A script::

    engine = create_db_engine(DatabaseSettings.from_env())
    async with commit_or_rollback(create_sessionmaker(engine)) as session:
        ...
    await engine.dispose()
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
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
    statement (``run_in_transaction`` in ``retry.py`` does this).
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


def create_db_engine(settings: DatabaseSettings, **overrides: Any) -> AsyncEngine:
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


@asynccontextmanager
async def commit_or_rollback(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block ends normally and rolls back when it raises.

    The unit of work of scripts and workers, and behind the FastAPI ``get_session`` dependency; a
    test fixture that overrides ``get_session`` uses it too (``conftest.py``), so tests keep the
    production contract.
    """
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()

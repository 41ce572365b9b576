"""Shared plumbing for the burst / killed-connection / cancellation tests (tests/reliability).

- ``app_database(server_url)``: a database of its own on the server (PostgreSQL: ``CREATE
  DATABASE``, MySQL/MariaDB: ``templates.scratch``), so "every connection of the app's database"
  means only this test's connections; dropped at the end.
- ``example_app(...)``: ``examples/fastapi_app.create_app`` on that database with an explicit pool
  (size, overflow, timeout) plus, optionally, the test-only ``/rel/batch`` endpoint that writes one
  user and ``POSTS_PER_BATCH`` posts in one transaction (what a half-committed write would break).
- ``served(app)``: the app behind a real uvicorn server on a free 127.0.0.1 port (lifespan on).
- ``PoolGuard``: the "garbage collector is trying to clean up non-checked-in connection" warning
  made an error (it is logged and warned from a finalizer, where an exception cannot propagate, so
  the guard also records the pool logger's ERROR lines and fails the test at the end).
- ``server_connections`` / ``kill_connections``: what the server sees of the app's database and
  terminating all of it (``pg_terminate_backend`` / MariaDB ``KILL``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import secrets
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from examples.fastapi_app import create_app
from templates.database import DatabaseSettings
from templates.fastapi_integration import SessionDep
from templates.models import Post, User
from templates.scratch import scratch_url

POSTS_PER_BATCH = 3
GC_MESSAGE = "The garbage collector is trying to clean up non-checked-in connection"


# --- a database of the test's own ---------------------------------------------------------------


@dataclass
class AppDatabase:
    backend: str
    url: str  # with password; never printed
    connect_args: dict[str, Any]
    admin_url: str  # the server URL, for terminating / counting connections from outside
    name: str  # database name (PostgreSQL, MySQL) or file (SQLite)


@asynccontextmanager
async def app_database(server_url: str) -> AsyncIterator[AppDatabase]:
    base = make_url(server_url)
    backend = base.get_backend_name()
    if backend != "postgresql":
        async with scratch_url(server_url) as (url, connect_args):
            yield AppDatabase(
                backend, url.render_as_string(hide_password=False), connect_args, server_url, url.database or ""
            )
        return
    name = f"asp_rel_{secrets.token_hex(4)}"
    admin = create_async_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield AppDatabase(
                backend, base.set(database=name).render_as_string(hide_password=False), {}, server_url, name
            )
        finally:
            async with admin.connect() as conn:
                await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await admin.dispose()


async def server_connections(db: AppDatabase) -> dict[str, int]:
    """Connections the server holds for the app's database, by state (PostgreSQL) / command (MySQL)."""
    admin = create_async_engine(db.admin_url, poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            if db.backend == "postgresql":
                rows = await conn.execute(
                    text(
                        "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid() GROUP BY 1"
                    ),
                    {"db": db.name},
                )
            else:
                rows = await conn.execute(
                    text(
                        "SELECT command, count(*) FROM information_schema.processlist "
                        "WHERE db = :db AND id <> connection_id() GROUP BY 1"
                    ),
                    {"db": db.name},
                )
            return {str(state): int(n) for state, n in rows}
    finally:
        await admin.dispose()


async def kill_connections(db: AppDatabase) -> int:
    """Terminate every server connection of the app's database; returns how many were hit."""
    admin = create_async_engine(db.admin_url, poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            if db.backend == "postgresql":
                rows = await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": db.name},
                )
                return sum(1 for (ok,) in rows if ok)
            ids = (
                (
                    await conn.execute(
                        text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> connection_id()"),
                        {"db": db.name},
                    )
                )
                .scalars()
                .all()
            )
            killed = 0
            for conn_id in ids:
                try:
                    await conn.execute(text(f"KILL {int(conn_id)}"))
                    killed += 1
                except Exception:
                    pass
            await conn.commit()
            return killed
    finally:
        await admin.dispose()


# --- the app under test ---------------------------------------------------------------------------


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=255)
    pause: float = Field(default=0.0, ge=0, le=1)  # seconds between statements: widens the window for faults


batch_router = APIRouter()
STARTED: dict[str, asyncio.Event] = {}  # email -> set once /rel/batch has flushed its user (tests wait on it)


@batch_router.post("/rel/batch", status_code=201)
async def create_batch(body: BatchIn, session: SessionDep) -> dict[str, str]:
    """One user and POSTS_PER_BATCH posts, flushed one by one, committed together by SessionDep."""
    user = User(email=body.email, name="batch")
    session.add(user)
    await session.flush()
    if body.email in STARTED:
        STARTED[body.email].set()
    for i in range(POSTS_PER_BATCH):
        if body.pause:
            await asyncio.sleep(body.pause)
        session.add(Post(author_id=user.id, title=f"part {i}"))
        await session.flush()
    return {"id": str(user.id)}


class SlowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=255)
    budget: float = Field(gt=0, le=10)  # seconds the request may spend in the database
    sleep: float = Field(ge=0, le=2)  # server-side sleep between the user and its posts


timeout_router = APIRouter()


@timeout_router.post("/rel/with-timeout", status_code=201)
async def create_with_timeout(body: SlowIn, session: SessionDep) -> dict[str, str]:
    """A per-request database budget: ``asyncio.timeout`` around the statements -> 504 when spent.

    The TimeoutError cancels the statement in flight; raising HTTPException lets SessionDep roll
    the transaction back (nothing of this request is committed).
    """
    sleep_sql = "SELECT pg_sleep(:s)" if session.bind.dialect.name == "postgresql" else "SELECT SLEEP(:s)"
    try:
        async with asyncio.timeout(body.budget):
            user = User(email=body.email, name="timed")
            session.add(user)
            await session.flush()
            await session.execute(text(sleep_sql), {"s": body.sleep})
            for i in range(POSTS_PER_BATCH):
                session.add(Post(author_id=user.id, title=f"part {i}"))
                await session.flush()
    except TimeoutError:
        raise HTTPException(status_code=504, detail="database budget exceeded") from None
    return {"id": str(user.id)}


def example_app(
    db: AppDatabase,
    *,
    pool_size: int = 5,
    max_overflow: int = 5,
    pool_timeout: float = 30.0,
    routers: tuple[APIRouter, ...] = (),
    from_env: bool = False,
) -> FastAPI:
    """The example app on ``db``; ``from_env``: settings read the way a deployment sets them
    (DATABASE_URL, DB_POOL_SIZE, DB_MAX_OVERFLOW, DB_POOL_TIMEOUT through ``DatabaseSettings.from_env``)."""
    if from_env:
        if db.connect_args:
            raise ValueError("from_env needs a database of its own (no connect_args such as a search_path)")
        environ = {
            "DATABASE_URL": db.url,
            "DB_POOL_SIZE": str(pool_size),
            "DB_MAX_OVERFLOW": str(max_overflow),
            "DB_POOL_TIMEOUT": str(pool_timeout),
        }
        settings = DatabaseSettings.from_env(environ)
    else:
        settings = DatabaseSettings(
            url=db.url,
            connect_args=db.connect_args,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
        )
    app = create_app(settings)
    for router in routers:
        app.include_router(router)
    return app


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """uvicorn on a free loopback port, lifespan on (it creates and disposes the engine); yields the base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="critical", lifespan="on", backlog=2048, timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):  # at most ~10 s
            if server.started or serving.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            if serving.done():
                serving.result()
            raise RuntimeError("uvicorn did not start within 10 s")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 30)


def unique_email(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


async def stored_batches(engine: AsyncEngine, emails: list[str]) -> dict[str, int]:
    """email -> number of posts, for the given emails that exist as users."""
    found: dict[str, int] = {}
    async with engine.connect() as conn:
        for start in range(0, len(emails), 200):
            chunk = emails[start : start + 200]
            rows = await conn.execute(
                text(
                    "SELECT u.email, count(p.id) FROM users u LEFT JOIN posts p ON p.author_id = u.id "
                    "WHERE u.email IN :emails GROUP BY u.email"
                ).bindparams(bindparam("emails", expanding=True)),
                {"emails": chunk},
            )
            found.update({str(e): int(n) for e, n in rows})
    return found


# --- the GC warning as an error -------------------------------------------------------------------


@dataclass
class PoolGuard:
    gc_cleanups: list[str] = field(default_factory=list)
    reset_errors: list[str] = field(default_factory=list)  # "Exception during reset or similar"

    def check(self) -> None:
        if self.gc_cleanups:
            raise AssertionError(
                f"{len(self.gc_cleanups)} connection(s) were left to the garbage collector: {self.gc_cleanups[0][:300]}"
            )


class _Recorder(logging.Handler):
    def __init__(self, guard: PoolGuard) -> None:
        super().__init__(logging.ERROR)
        self.guard = guard

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if GC_MESSAGE in message:
            self.guard.gc_cleanups.append(message)
        elif "Exception during reset" in message:
            self.guard.reset_errors.append(f"{message}: {record.exc_info[1]!r}" if record.exc_info else message)


@contextmanager
def pool_guard() -> Iterator[PoolGuard]:
    """Fail when any pooled connection is cleaned up by the garbage collector instead of returned."""
    guard = PoolGuard()
    handler = _Recorder(guard)
    logger = logging.getLogger("sqlalchemy.pool")
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=f".*{GC_MESSAGE}")
            yield guard
            gc.collect()
    finally:
        logger.removeHandler(handler)
    guard.check()

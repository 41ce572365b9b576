"""One engine per process, created at startup from DATABASE_URL; one session per request."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from .models import Base

DEFAULT_URL = "sqlite+aiosqlite:///tickets.db"  # the single-box edition


def configure_sqlite(engine: AsyncEngine) -> None:
    """SQLAlchemy sends BEGIN itself, so a transaction can ask for ``BEGIN IMMEDIATE``.

    Python's sqlite3 begins a transaction only before the first write, so a reservation's reads
    ran outside any transaction and SQLite silently drops ``FOR UPDATE``: every request could
    read the same free seats. With ``sqlite_begin="IMMEDIATE"`` the transaction takes SQLite's
    write lock before its first read, and other writers wait (busy_timeout) instead of failing.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        dbapi_connection.isolation_level = None  # autocommit at the driver; we send BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        mode = str(conn.get_execution_options().get("sqlite_begin", "DEFERRED")).upper()
        conn.exec_driver_sql("BEGIN" if mode == "DEFERRED" else f"BEGIN {mode}")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(os.environ.get("DATABASE_URL", DEFAULT_URL), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        configure_sqlite(engine)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

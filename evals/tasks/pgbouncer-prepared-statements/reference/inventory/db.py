"""The engine (one per process, made at startup) and the per-request session."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool


def make_engine() -> AsyncEngine:
    """An engine for asyncpg behind PgBouncer in transaction mode.

    PgBouncer hands each transaction whichever server connection is free, so a statement
    prepared in one transaction is missing in the next (``prepared statement ... does not
    exist``), and a name another process left on a server connection collides (``... already
    exists``). So: no statement caches (asyncpg's and SQLAlchemy's), unique statement names, and
    no pool in the app - PgBouncer is the pool.
    """
    return create_async_engine(
        os.environ["DATABASE_URL"],
        poolclass=NullPool,
        connect_args={
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        },
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = make_engine()
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

# DELIBERATELY WRONG example for the evals (naive/ of upsert-updated-at): never copy it.
"""Engine and sessions from DATABASE_URL."""

from __future__ import annotations

import os

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


def make_engine(url: str | None = None) -> AsyncEngine:
    return create_async_engine(url or os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///catalog.db"))


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)

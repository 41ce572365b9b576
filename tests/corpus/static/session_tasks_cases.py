# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases for session_shared_across_tasks (read, never run): tasks that get a
sessionmaker (``Session``, ``SessionLocal``, an async_sessionmaker) and open their own session are
the correct pattern; tasks that share one AsyncSession are not."""
# expect-static: session_shared_across_tasks

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.models import Feed

engine = create_async_engine("postgresql+asyncpg://app@db/app")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
async_session = async_sessionmaker(engine, expire_on_commit=False)


async def refresh_feed(session_factory: async_sessionmaker[AsyncSession], feed_id: int) -> None:
    async with session_factory() as session:
        await session.get(Feed, feed_id)


async def refresh_all(feed_ids: list[int]) -> None:
    await asyncio.gather(*(refresh_feed(SessionLocal, f) for f in feed_ids))
    await asyncio.gather(*(refresh_feed(async_session, f) for f in feed_ids))


async def refresh_all_wrong(session: AsyncSession, feed_ids: list[int]) -> None:
    await asyncio.gather(*(load_feed(session, f) for f in feed_ids))  # static: session_shared_across_tasks


async def load_feed(session: AsyncSession, feed_id: int) -> Feed | None:
    return await session.scalar(select(Feed).where(Feed.id == feed_id))


async def dashboard_counts_wrong(session: AsyncSession) -> tuple[int | None, int | None]:
    return await asyncio.gather(  # static: session_shared_across_tasks
        session.scalar(select(Feed.id).limit(1)),
        session.scalar(select(Feed.id).limit(2)),
    )


async def dashboard_counts(session: AsyncSession, other: AsyncSession) -> tuple[int | None, int | None]:
    # one statement each on two sessions: nothing is shared
    return await asyncio.gather(session.scalar(select(Feed.id)), other.scalar(select(Feed.id)))

# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases for unawaited_session_call (read, never run): a coroutine method of an
AsyncSession / AsyncConnection used as a statement without ``await`` never runs. Sync sessions in
sync functions, the methods that are not coroutines (add, expunge, expire), HTTP client sessions
and names with nothing showing they are async are not reported."""
# expect-static: unawaited_session_call

from __future__ import annotations

from typing import Annotated, Any

import aiohttp
from fastapi import Depends
from sqlalchemy import Engine, delete, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from app.db import get_session
from app.models import Order

SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def cancel_order(order_id: int, session: SessionDep) -> None:
    order = await session.get(Order, order_id)
    session.delete(order)  # static: unawaited_session_call
    await session.commit()


async def cancel_order_right(order_id: int, session: SessionDep) -> None:
    order = await session.get(Order, order_id)
    await session.delete(order)
    session.add(Order(id=order_id + 1))  # add is not a coroutine
    session.expunge(order)
    session.expire_all()
    await session.commit()


async def archive(sessionmaker: async_sessionmaker[AsyncSession], ids: list[int]) -> None:
    async with sessionmaker() as db:
        for i in ids:
            if i < 0:
                db.execute(delete(Order).where(Order.id == i))  # static: unawaited_session_call
        db.commit()  # static: unawaited_session_call


async def touch(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        conn.execute(text("SELECT 1"))  # static: unawaited_session_call
        await conn.commit()


async def refresh_after_write(session: AsyncSession, order: Order) -> None:
    try:
        order.status = "paid"
        await session.flush()
    finally:
        session.refresh(order)  # static: unawaited_session_call


def sync_cancel(session: Session, order: Order) -> None:
    session.delete(order)  # a sync Session in a sync function: correct
    session.commit()


async def uses_sync_helper(session: AsyncSession, order: Order) -> None:
    def inner(sync_session: Session) -> None:
        sync_session.delete(order)  # runs inside run_sync: a sync Session

    await session.run_sync(inner)


async def fetch_page(http_session: aiohttp.ClientSession, url: str) -> None:
    http_session.get(url)  # an HTTP client session: not a database session (and not awaited elsewhere)


async def no_evidence(session, order_id: int) -> None:  # type: ignore[no-untyped-def]
    session.delete(order_id)  # nothing here shows the session is async: not reported
    session.commit()


async def upsert_any_engine(engine: AsyncEngine | Engine, stmt: Any) -> None:
    # one name, two engines (advanced-alchemy's integration tests): the sync branch is correct
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as conn:
            await conn.execute(stmt)
            await conn.commit()
    else:
        with engine.connect() as conn:
            conn.execute(stmt)
            conn.commit()


async def scheduled(session: AsyncSession) -> None:
    rows = session.execute(select(Order))  # assigned, not dropped: the later use fails loudly
    print(rows)

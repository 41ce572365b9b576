# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: ``session.delete(row)`` without ``await`` on an AsyncSession.

AsyncSession.delete is a coroutine. Called as a statement it is created and dropped: nothing is
deleted, the commit succeeds, and the only trace is a RuntimeWarning "coroutine
'AsyncSession.delete' was never awaited" in the log. The fix, shown after it: await it.
"""
# expect-runtime:
# expect-static: unawaited_session_call

from __future__ import annotations

import asyncio
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CudTicket(Base):
    __tablename__ = "cud_tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))


async def cancel(session: AsyncSession, ticket_id: int) -> None:
    ticket = await session.get(CudTicket, ticket_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the dropped coroutine's warning
        session.delete(ticket)  # static: unawaited_session_call
    await session.commit()


async def cancel_right(session: AsyncSession, ticket_id: int) -> None:
    ticket = await session.get(CudTicket, ticket_id)
    await session.delete(ticket)
    await session.commit()


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all([CudTicket(id=1, title="a"), CudTicket(id=2, title="b")])
        async with sessionmaker() as session:
            await cancel(session, 1)
        async with sessionmaker() as session:
            await cancel_right(session, 2)
        async with sessionmaker() as session:
            left = await session.scalar(select(func.count()).select_from(CudTicket))
        if left != 1:
            raise AssertionError(f"expected the unawaited delete to leave 1 row, {left} left")
        print("the unawaited delete left its row; the awaited one removed its row")
    print("unawaited_session_delete: ok")


if __name__ == "__main__":
    asyncio.run(main())

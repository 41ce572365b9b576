# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: one AsyncSession handed to a concurrently running task (asyncio.create_task).

A session (and its connection) serves one task at a time. Here it only works because the caller
awaits the task at once; as soon as the caller (or a second task) touches the session while the
task runs, SQLAlchemy raises "concurrent operations are not permitted" / IllegalStateChangeError,
or two transactions interleave. The fix, shown after it: every task opens its own session.
"""
# expect-runtime:
# expect-static: session_shared_across_tasks

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpgEvent(Base):
    __tablename__ = "cpg_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)


async def count_kind(session: AsyncSession, kind: str) -> int:
    return await session.scalar(select(func.count()).select_from(CpgEvent).where(CpgEvent.kind == kind)) or 0


async def count_kind_own_session(sessionmaker: async_sessionmaker[AsyncSession], kind: str) -> int:
    async with sessionmaker() as session:
        return await count_kind(session, kind)


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all(CpgEvent(kind=k) for k in ["click"] * 3 + ["view"] * 2)
        async with sessionmaker() as session:
            task = asyncio.create_task(count_kind(session, "click"))  # static: session_shared_across_tasks
            shared = await task
        print(f"shared session happened to work: {shared} clicks")
        clicks, views = await asyncio.gather(
            count_kind_own_session(sessionmaker, "click"), count_kind_own_session(sessionmaker, "view")
        )
        if (shared, clicks, views) != (3, 3, 2):
            raise AssertionError((clicks, views))
    print("shared_session_gather: ok")


if __name__ == "__main__":
    asyncio.run(main())

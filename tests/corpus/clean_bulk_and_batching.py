# CLEAN example for the optimize-queries checker's tests (no finding expected): a fixture, never copy it.
"""Clean corpus app: bulk insert as executemany, one IN query instead of a loop, bound
parameters in text(), and concurrent work with one session per task.
"""
# expect-runtime:
# expect-static:

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import String, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CqcAccount(Base):
    __tablename__ = "cqc_accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    handle: Mapped[str] = mapped_column(String(40), unique=True)
    region: Mapped[str] = mapped_column(String(10), index=True)


async def handles_in(sessionmaker: async_sessionmaker[AsyncSession], region: str) -> list[str]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(CqcAccount.handle).where(CqcAccount.region == region).order_by(CqcAccount.handle))
        return list(rows.all())


async def main() -> None:
    rows = [{"handle": f"user{i:03d}", "region": "eu" if i % 2 else "us"} for i in range(200)]
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            await session.execute(insert(CqcAccount), rows)  # executemany, batched by SQLAlchemy
        wanted = [f"user{i:03d}" for i in range(0, 200, 7)]
        async with sessionmaker() as session:
            found = (await session.scalars(select(CqcAccount).where(CqcAccount.handle.in_(wanted)))).all()
            by_handle = {a.handle: a.region for a in found}
            one = await session.scalar(text("SELECT region FROM cqc_accounts WHERE handle = :h"), {"h": "user001"})
        eu, us = await asyncio.gather(handles_in(sessionmaker, "eu"), handles_in(sessionmaker, "us"))
        if len(by_handle) != len(wanted) or one != "eu" or (len(eu), len(us)) != (100, 100):
            raise AssertionError((len(by_handle), one, len(eu), len(us)))
    print("clean_bulk_and_batching: ok")


if __name__ == "__main__":
    asyncio.run(main())

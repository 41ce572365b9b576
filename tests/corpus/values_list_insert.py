# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: bulk insert written as insert(...).values(list_of_dicts).

That renders ONE statement with rows x columns bind parameters: it grows without bound, hits the
backend's parameter limit on big lists and bypasses SQLAlchemy's batched "insertmanyvalues".
Fix: `await session.execute(insert(Model), rows)`.
"""
# expect-runtime:
# expect-static: values_list_bulk_insert

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import String, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CphMetric(Base):
    __tablename__ = "cph_metrics"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    value: Mapped[int]


async def main() -> None:
    rows = [{"name": f"m{i}", "value": i} for i in range(50)]
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            await session.execute(insert(CphMetric).values(rows))  # static: values_list_bulk_insert
        async with sessionmaker() as session:
            total = await session.scalar(select(func.sum(CphMetric.value)))
            if total != sum(range(50)):
                raise AssertionError(total)
    print("values_list_insert: ok")


if __name__ == "__main__":
    asyncio.run(main())

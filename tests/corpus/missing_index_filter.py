# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: a query filters on a column that has no index, so the database reads the whole table.

`CpcOrder.status` is filtered on every dashboard load but is not indexed. Fix:
`mapped_column(..., index=True)` (or `Index("ix_cpc_orders_status", "status")`) plus a migration.
"""
# expect-runtime: missing_index
# expect-static:

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import String, func, select
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpcOrder(Base):
    __tablename__ = "cpc_orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    status: Mapped[str] = mapped_column(String(20))  # filtered on, never indexed


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all(CpcOrder(reference=f"R{i}", status="open" if i % 3 else "shipped") for i in range(30))
        async with sessionmaker() as session:
            by_ref = await session.scalar(select(CpcOrder).where(CpcOrder.reference == "R4"))  # unique index: fine
            open_count = await session.scalar(select(func.count()).select_from(CpcOrder).where(CpcOrder.status == "open"))  # runtime: missing_index
            if by_ref is None or open_count != 20:
                raise AssertionError((by_ref, open_count))
    print("missing_index_filter: ok")


if __name__ == "__main__":
    asyncio.run(main())

# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: the same query with the same parameters runs once per item (a missing hoist).

The price list is loaded inside the loop although it does not depend on the item. Fix: load it
once before the loop (or cache it for the request).
"""
# expect-runtime: repeated_identical
# expect-static: query_in_loop

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import Numeric, String, select
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpeTaxRate(Base):
    __tablename__ = "cpe_tax_rates"
    id: Mapped[int] = mapped_column(primary_key=True)
    country: Mapped[str] = mapped_column(String(2), unique=True)
    rate: Mapped[Decimal] = mapped_column(Numeric(5, 2))


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all([CpeTaxRate(country="DE", rate=Decimal("19.00")), CpeTaxRate(country="FR", rate=Decimal("20.00"))])
        prices = [Decimal(p) for p in ("10.00", "20.00", "5.50", "8.00", "1.00", "3.00")]
        async with sessionmaker() as session:
            gross = Decimal("0")
            for price in prices:
                rate = await session.scalar(select(CpeTaxRate.rate).where(CpeTaxRate.country == "DE"))  # runtime: repeated_identical  static: query_in_loop
                gross += price * (1 + rate / 100)
            if gross != Decimal("56.525"):
                raise AssertionError(gross)
    print("repeated_identical_query: ok")


if __name__ == "__main__":
    asyncio.run(main())

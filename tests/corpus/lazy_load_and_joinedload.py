# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: reading relationships that the query did not load, and joinedload() on a
collection without .unique().

- `invoice.lines` after `select(CpkInvoice)` without a loader option: with lazy="raise" it raises
  at once (with the default lazy="select" it would raise MissingGreenlet in async code);
- `joinedload(CpkInvoice.lines)` repeats each invoice once per line, and SQLAlchemy 2.x refuses
  to hand out such a result unless `.unique()` is called on it.
Both errors are caught here to show them; the fixed versions follow.
"""
# expect-runtime:
# expect-static: lazy_load_in_async, joinedload_collection_without_unique

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import ForeignKey, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship, selectinload

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpkInvoice(Base):
    __tablename__ = "cpk_invoices"
    id: Mapped[int] = mapped_column(primary_key=True)
    lines: Mapped[list[CpkLine]] = relationship(lazy="raise", order_by="CpkLine.id")


class CpkLine(Base):
    __tablename__ = "cpk_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("cpk_invoices.id"), index=True)
    cents: Mapped[int]


async def total_unloaded(session: AsyncSession) -> int:
    invoice = await session.scalar(select(CpkInvoice))
    return sum(line.cents for line in invoice.lines)  # static: lazy_load_in_async


async def invoices_joined(session: AsyncSession) -> list[CpkInvoice]:
    result = await session.scalars(select(CpkInvoice).options(joinedload(CpkInvoice.lines)))  # static: joinedload_collection_without_unique
    return list(result.all())


async def total_loaded(session: AsyncSession) -> int:
    invoice = await session.scalar(select(CpkInvoice).options(selectinload(CpkInvoice.lines)))
    return sum(line.cents for line in invoice.lines)


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add(CpkInvoice(lines=[CpkLine(cents=250), CpkLine(cents=750)]))
        refused = 0
        for attempt in (total_unloaded, invoices_joined):
            async with sessionmaker() as session:
                try:
                    await attempt(session)
                except InvalidRequestError:
                    refused += 1
        async with sessionmaker() as session:
            total = await total_loaded(session)
        if (refused, total) != (2, 1000):
            raise AssertionError((refused, total))
        print(f"{refused} wrong loads refused by SQLAlchemy; eager-loaded total {total}")
    print("lazy_load_and_joinedload: ok")


if __name__ == "__main__":
    asyncio.run(main())

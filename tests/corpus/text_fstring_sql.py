# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: SQL assembled with an f-string inside text() - injection risk and an N+1.

Every value becomes part of the SQL text: a quote in the input changes the statement, and each
call is a new statement for the server and the statement cache. Fix: a bound parameter,
`text("... WHERE sku = :sku")` with `{"sku": sku}` - or better, one query for all of them.
"""
# expect-runtime: n_plus_one
# expect-static: text_with_fstring, query_in_loop

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import String, text
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.scratch import scratch_engine


class CpfProduct(Base):
    __tablename__ = "cpf_products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(20), unique=True)
    stock: Mapped[int] = mapped_column(default=0)


async def main() -> None:
    skus = [f"SKU-{i}" for i in range(7)]
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(CpfProduct.__table__.insert(), [{"sku": s, "stock": i} for i, s in enumerate(skus)])
        async with engine.connect() as conn:
            total = 0
            for sku in skus:
                sql = f"SELECT stock FROM cpf_products WHERE sku = '{sku}'"
                total += await conn.scalar(text(sql))  # runtime: n_plus_one  static: query_in_loop, text_with_fstring
            if total != sum(range(7)):
                raise AssertionError(total)
    print("text_fstring_sql: ok")


if __name__ == "__main__":
    asyncio.run(main())

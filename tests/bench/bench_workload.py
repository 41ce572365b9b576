"""Benchmark workload: 2,000 SELECTs by primary key on one connection, through the ORM-style Core
path an application uses. Prints one JSON line: {"statements": n, "loop_s": seconds}.

Run plain (``python tests/bench/bench_workload.py``) or under optimize-queries; DATABASE_URL
selects the backend (default: embedded SQLite in a scratch file).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.query_counter import count_queries
from templates.scratch import scratch_engine

STATEMENTS = 2000


class BenchRow(Base):
    __tablename__ = "bench_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(20))


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(BenchRow.__table__.create)
            await conn.execute(BenchRow.__table__.insert(), [{"id": i, "label": f"r{i}"} for i in range(1, 101)])
        async with engine.connect() as conn:
            with count_queries(engine) as queries:
                started = time.perf_counter()
                for i in range(STATEMENTS):
                    label = await conn.scalar(select(BenchRow.label).where(BenchRow.id == i % 100 + 1))
                    if label != f"r{i % 100 + 1}":
                        raise AssertionError(label)
                loop_s = time.perf_counter() - started
        if len(queries.selects()) != STATEMENTS:  # SQLite also counts the template's BEGIN
            raise AssertionError(len(queries.selects()))
    print(json.dumps({"statements": STATEMENTS, "loop_s": loop_s}))


if __name__ == "__main__":
    asyncio.run(main())

"""Grader: the accounting export writes and marks every pending order, with bounded memory (see prompt.md).

``python grade.py SOLUTION_DIR [--backend sqlite|mysql]``. Fills a scratch database with orders of
a few KB each through the solution's models, then calls ``exporter.export.export_pending(sessions,
out)`` as ``exporter/run.py`` does, and checks the CSV and the table. Peak memory during the export
is measured with tracemalloc against the size of the data.
"""

from __future__ import annotations

import csv
import io
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402

CHECKS = ["exports_every_order", "marks_every_order", "no_order_twice", "memory_bounded", "second_run_only_new"]
ORDERS = 6000  # in the measured run
PAYLOAD = 4000  # characters per order there: ~24 MB of order data
DONE = 50  # orders exported before: never exported again


def payload(i: int, size: int) -> str:
    return ('{"lines": "' + f"{i:06d}" * (size // 6))[: size - 2] + '"}'


def exported_ids(text_: str) -> list[int]:
    return [int(row[0]) for row in csv.reader(io.StringIO(text_)) if row]


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    models = gradelib.load(solution, "exporter.models")
    export_pending = gradelib.load(solution, "exporter.export:export_pending")
    Order = models.Order  # noqa: N806

    def order(i: int, size: int, exported: bool = False) -> dict[str, object]:
        return {"id": i, "customer": f"customer {i % 97}", "total": Decimal(i) / 4, "payload": payload(i, size),
                "exported_at": func.now() if exported else None}

    async with gradelib.scratch_database(backend) as url:
        engine = create_async_engine(url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)

        async def add(rows: list[dict[str, object]]) -> None:
            async with engine.begin() as conn:
                for start in range(0, len(rows), 500):
                    await conn.execute(insert(Order), rows[start:start + 500])

        async def export(path: Path, measure: bool = False) -> tuple[list[int], int, int]:
            with open(path, "w", newline="") as out:
                if measure:
                    tracemalloc.start()
                try:
                    count = await export_pending(sessions, out)
                    peak = tracemalloc.get_traced_memory()[1] if measure else 0
                finally:
                    tracemalloc.stop()
            return exported_ids(path.read_text()), count, peak

        try:
            async with engine.begin() as conn:
                await conn.run_sync(models.Base.metadata.create_all)
                for i in range(1, DONE + 1):  # exported last night: never again
                    await conn.execute(insert(Order).values(**order(i, 100, exported=True)))
            # A small first run (its imports and statement caches do not count as export memory),
            # then the big one, measured.
            await add([order(i, 100) for i in range(DONE + 1, DONE + 21)])
            first, _, _ = await export(solution / "grader-export-1.csv")
            big = range(DONE + 21, DONE + 21 + ORDERS)
            await add([order(i, PAYLOAD) for i in big])
            second, count, peak = await export(solution / "grader-export-2.csv", measure=True)
            expected = set(range(DONE + 1, DONE + 21 + ORDERS))
            ids = first + second
            missing = sorted(expected - set(ids))
            report.check("exports_every_order", not missing and not set(ids) - expected,
                         f"the CSV files have {len(set(ids) & expected)} of {len(expected)} pending orders (the big "
                         f"run returned {count} for {ORDERS}); first missing id {missing[:1]}, wrongly exported: "
                         f"{sorted(set(ids) - expected)[:3]}")
            async with engine.connect() as conn:
                unmarked = await conn.scalar(select(func.count()).where(Order.exported_at.is_(None)))
            report.check("marks_every_order", unmarked == 0, f"{unmarked} of {len(expected)} orders still have "
                         "exported_at NULL after the export")
            report.check("no_order_twice", len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} orders were "
                         "written to the CSV more than once")
            data_bytes = ORDERS * PAYLOAD
            report.check("memory_bounded", peak < data_bytes / 2,
                         f"peak Python memory during the export was {peak / 1e6:.1f} MB for {data_bytes / 1e6:.1f} MB "
                         "of order data (the export must not hold the table in memory)")

            late = range(DONE + 21 + ORDERS, DONE + 31 + ORDERS)
            await add([order(i, 100) for i in late])
            third, _, _ = await export(solution / "grader-export-3.csv")
            report.check("second_run_only_new", sorted(third) == list(late),
                         f"the next run exported {len(third)} orders (expected exactly the {len(late)} new ones), "
                         f"e.g. {sorted(third)[:5]}")
        finally:
            await engine.dispose()


TASK = gradelib.Task(checks=CHECKS, backends=("sqlite", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

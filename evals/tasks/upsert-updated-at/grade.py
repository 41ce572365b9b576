"""Grader: the nightly upsert moves updated_at for changed products only (see prompt.md).

``python grade.py SOLUTION_DIR [--backend sqlite|postgresql|mysql]``. Calls the solution's
``catalog.sync.sync_products(session, rows)`` twice on a scratch database, the way
``catalog/nightly.py`` does (one session per batch, commit after it), with the solution's own models.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

from sqlalchemy import select, text  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine  # noqa: E402

CHECKS = [
    "first_sync_inserts",
    "changed_rows_move_updated_at",
    "null_changes_move_updated_at",
    "unchanged_rows_keep_updated_at",
    "second_sync_values",
    "bulk_statements",
]
PRODUCTS = 300
OLD = "2020-06-15 12:00:00"  # stamped on every row between the two syncs
MAX_STATEMENTS = 6  # for 310 rows; one per row would be 310


def first_feed() -> list[dict[str, Any]]:
    return [{"sku": f"P{i:04d}", "name": f"Product {i}", "price": Decimal(i) + Decimal("0.99"),
             "description": None if i % 3 == 0 else f"about product {i}"} for i in range(PRODUCTS)]


def second_feed() -> tuple[list[dict[str, Any]], set[str], set[str]]:
    """The next night's feed: (rows, SKUs whose name/price changed, SKUs whose description went NULL<->text)."""
    rows = first_feed()
    changed, null_changed = set(), set()
    for i, row in enumerate(rows):
        if i < 20:
            row["price"] += 1
            changed.add(row["sku"])
        elif i < 30:
            row["name"] += " (new packaging)"
            changed.add(row["sku"])
        elif i < 40:
            row["description"] = "now with a description" if row["description"] is None else None
            null_changed.add(row["sku"])
    rows += [{"sku": f"P{i:04d}", "name": f"Product {i}", "price": Decimal("5.00"), "description": None}
             for i in range(PRODUCTS, PRODUCTS + 10)]
    return rows, changed, null_changed


def year_of(value: Any) -> int:
    return value.year if hasattr(value, "year") else int(str(value)[:4])


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    models = gradelib.load(solution, "catalog.models")
    sync_products = gradelib.load(solution, "catalog.sync:sync_products")
    Product = models.Product  # noqa: N806
    counter = gradelib.StatementCounter()
    async with gradelib.scratch_database(backend) as url:
        engine = create_async_engine(url)
        sessions = async_sessionmaker(engine, expire_on_commit=False)

        async def sync(rows: list[dict[str, Any]]) -> int:
            mark = counter.mark()
            async with sessions() as session:
                await sync_products(session, rows)
                await session.commit()
            return len(counter.since(mark))

        async def stored() -> dict[str, Any]:
            async with sessions() as session:
                result = await session.execute(select(Product.sku, Product.name, Product.price, Product.description,
                                                      Product.updated_at))
                return {row.sku: row for row in result}

        try:
            async with engine.begin() as conn:
                await conn.run_sync(models.Base.metadata.create_all)
            await sync(first_feed())
            rows = await stored()
            expected = {r["sku"]: r for r in first_feed()}
            wrong = [sku for sku, r in expected.items()
                     if sku not in rows or (rows[sku].name, Decimal(rows[sku].price), rows[sku].description)
                     != (r["name"], r["price"], r["description"])]
            report.check("first_sync_inserts", len(rows) == PRODUCTS and not wrong and
                         all(r.updated_at is not None for r in rows.values()),
                         f"{len(rows)} rows stored (expected {PRODUCTS}), wrong values for {wrong[:5]}")

            async with engine.begin() as conn:
                await conn.execute(text(f"UPDATE {Product.__tablename__} SET updated_at = '{OLD}'"))
            feed, changed, null_changed = second_feed()
            statements = await sync(feed)
            rows = await stored()
            stale = sorted(sku for sku in changed if year_of(rows[sku].updated_at) == 2020)
            report.check("changed_rows_move_updated_at", not stale,
                         f"{len(stale)} of {len(changed)} products whose name or price changed kept the old "
                         f"updated_at, e.g. {stale[:3]}")
            stale = sorted(sku for sku in null_changed if year_of(rows[sku].updated_at) == 2020)
            report.check("null_changes_move_updated_at", not stale,
                         f"{len(stale)} of {len(null_changed)} products whose description changed between NULL "
                         f"and a text kept the old updated_at, e.g. {stale[:3]}")
            untouched = [r["sku"] for r in feed[:PRODUCTS] if r["sku"] not in changed | null_changed]
            moved = sorted(sku for sku in untouched if year_of(rows[sku].updated_at) != 2020)
            report.check("unchanged_rows_keep_updated_at", not moved,
                         f"{len(moved)} of {len(untouched)} unchanged products got a new updated_at, e.g. {moved[:3]}")
            wrong = [r["sku"] for r in feed if r["sku"] not in rows or (
                rows[r["sku"]].name, Decimal(rows[r["sku"]].price), rows[r["sku"]].description,
            ) != (r["name"], r["price"], r["description"])]
            report.check("second_sync_values", len(rows) == len(feed) and not wrong,
                         f"{len(rows)} rows (expected {len(feed)}); stored values differ from the feed for {wrong[:5]}")
            report.check("bulk_statements", statements <= MAX_STATEMENTS,
                         f"the second sync ran {statements} SQL statements for {len(feed)} rows "
                         f"(a bulk upsert needs at most {MAX_STATEMENTS})")
        finally:
            await engine.dispose()


TASK = gradelib.Task(checks=CHECKS, backends=("sqlite", "postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

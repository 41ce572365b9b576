"""Grader: the new REFUNDED order status works after ``alembic upgrade head``, on new and existing databases.

``python grade.py SOLUTION_DIR [--backend sqlite|postgresql|mysql]``. On one scratch database the
schema comes from ``alembic upgrade head`` and ``orders.main:app`` is served with uvicorn; on a
second one the database is first at the initial revision 0001 with orders written by the old
version (refunds only set ``refunded_at``), then upgraded. Finally ``alembic check`` must find
the models and the migrated schema in agreement.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

API_CHECKS = ["refund_sets_status", "other_statuses_unchanged"]
EXISTING_CHECKS = ["upgrade_existing_database", "existing_refunds_marked", "existing_database_takes_refunds"]
CHECKS = ["upgrade_from_empty", *API_CHECKS, "alembic_check_clean", *EXISTING_CHECKS]
OLD_ROWS = [  # (customer, status, refunded) as the old version stored them
    ("ada", "PENDING", False), ("bob", "PAID", False), ("cy", "PAID", True), ("dee", "SHIPPED", True),
    ("eve", "SHIPPED", False),
]


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    async with gradelib.scratch_database(backend) as url:
        code, out = await gradelib.alembic(solution, url, "upgrade", "head")
        if report.check("upgrade_from_empty", code == 0,
                        f"alembic upgrade head on an empty database failed: {gradelib.tail(out)}"):
            os.environ["DATABASE_URL"] = url
            app = gradelib.load(solution, "orders.main:app")
            async with gradelib.served(app) as base, gradelib.http_client(base) as client:
                await api_checks(client, report)
            code, out = await gradelib.alembic(solution, url, "check")
            report.check("alembic_check_clean", code == 0, f"alembic check after upgrade head: {gradelib.tail(out)}")
        else:
            report.fail_rest("not run: upgrade head failed", [*API_CHECKS, "alembic_check_clean"])
    async with gradelib.scratch_database(backend) as url:
        await existing_database(solution, url, backend, report)


async def api_checks(client: Any, report: gradelib.Report) -> None:
    ids = []
    for name in ("first", "second", "third"):
        r = await client.post("/orders", json={"customer": name, "total_cents": 1000})
        if r.status_code != 201:
            report.fail_rest(f"POST /orders answered {r.status_code}: {r.text[:200]}", API_CHECKS)
            return
        ids.append(r.json()["id"])
    paid = [await client.post(f"/orders/{i}/pay") for i in ids[:2]]
    refund = await client.post(f"/orders/{ids[0]}/refund")
    shown = await client.get(f"/orders/{ids[0]}")
    status = shown.json().get("status") if shown.status_code == 200 else None
    report.check("refund_sets_status", refund.status_code == 200 and status == "refunded",
                 f"refunding a paid order answered {refund.status_code} ({refund.text[:150]}); "
                 f"GET shows status {status!r}")
    others = [(await client.get(f"/orders/{i}")).json().get("status") for i in ids[1:]]
    report.check("other_statuses_unchanged", [p.status_code for p in paid] == [200, 200] and
                 others == ["paid", "pending"], f"the other orders show {others}, expected ['paid', 'pending']")


async def existing_database(solution: Path, url: str, backend: str, report: gradelib.Report) -> None:
    """A database at 0001 holding orders of the old version, then upgraded to head."""
    code, out = await gradelib.alembic(solution, url, "upgrade", "0001")
    if code != 0:
        report.fail_rest(f"alembic upgrade 0001 failed: {gradelib.tail(out)}", EXISTING_CHECKS)
        return
    engine = create_async_engine(url)
    refunded_at = datetime(2024, 3, 1, 9, 30, tzinfo=timezone.utc)
    at: Any = refunded_at if backend == "postgresql" else refunded_at.replace(tzinfo=None)
    try:
        async with engine.begin() as conn:
            for customer, status, refunded in OLD_ROWS:
                await conn.execute(text("INSERT INTO orders (customer, total_cents, status, refunded_at) "
                                        "VALUES (:c, 500, :s, :r)"),
                                   {"c": customer, "s": status, "r": at if refunded else None})
        code, out = await gradelib.alembic(solution, url, "upgrade", "head")
        if not report.check("upgrade_existing_database", code == 0,
                            f"alembic upgrade head on a database at 0001 with orders failed: {gradelib.tail(out)}"):
            report.fail_rest("not run: the upgrade failed", EXISTING_CHECKS)
            return
        async with engine.connect() as conn:
            rows = dict((await conn.execute(text("SELECT customer, status FROM orders"))).all())
        expected = {c: ("REFUNDED" if refunded else s) for c, s, refunded in OLD_ROWS}
        report.check("existing_refunds_marked", rows == expected,
                     f"statuses after the upgrade {rows}, expected {expected} (orders with refunded_at are "
                     "refunded, the others unchanged)")
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE orders SET status = 'REFUNDED' WHERE customer = 'bob'"))
            async with engine.connect() as conn:
                bob = await conn.scalar(text("SELECT status FROM orders WHERE customer = 'bob'"))
            report.check("existing_database_takes_refunds", bob == "REFUNDED",
                         f"after setting REFUNDED the row reads {bob!r}")
        except Exception as exc:  # noqa: BLE001
            report.check("existing_database_takes_refunds", False,
                         f"storing REFUNDED in the upgraded database failed: {gradelib.describe(exc)}")
    finally:
        await engine.dispose()


TASK = gradelib.Task(checks=CHECKS, backends=("sqlite", "postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

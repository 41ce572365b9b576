"""Grader: the shop API's sign-ups, order list and stats behave (see prompt.md).

``python grade.py SOLUTION_DIR [--backend postgresql|mysql]``. Serves ``app.main:app`` with uvicorn
on a scratch database and talks to it over HTTP; SQL statements are counted with engine events
(the app runs in this process). To make the sign-up race happen every time, the grader blocks
writes to ``users`` with a table lock on its own connection, sends the requests, waits until they
queue behind the lock (or answer), and lets go (``gradelib.signup_checks``, shared with prelaunch-review):

- a sign-up must not be confirmed (2xx) while its row cannot have been stored yet;
- of two simultaneous sign-ups with one email exactly one gets 201 and the other 409.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

CHECKS = ["signup_works", "duplicate_signup_409", "signup_confirmed_after_commit", "double_click_one_account",
          "orders_payload", "orders_statement_count", "stats_correct"]
ORDERS = 20
MAX_LIST_STATEMENTS = 4  # orders + customers + lines (+1 spare); the N+1 version runs 1 + 2 x 20


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    async with gradelib.scratch_database(backend) as url:
        os.environ["DATABASE_URL"] = url
        app = gradelib.load(solution, "app.main:app")
        counter = gradelib.StatementCounter()
        probe = create_async_engine(url)
        try:
            async with gradelib.served(app) as base, gradelib.http_client(base) as client:
                await gradelib.signup_checks(client, probe, backend, report)
                await orders_and_stats(client, counter, report)
        finally:
            await probe.dispose()


async def orders_and_stats(client: httpx.AsyncClient, counter: gradelib.StatementCounter,
                           report: gradelib.Report) -> None:
    customers = ["dora@example.com", "emil@example.com", "fay@example.com"]
    for email in customers:
        await client.post("/users", json={"email": email, "name": email.split("@")[0].title()})
    placed = []
    for i in range(ORDERS):
        lines = [{"sku": f"SKU-{i}-{j}", "quantity": j + 1, "price_cents": 100 * (i + 1)} for j in range(3)]
        r = await client.post("/orders", json={"email": customers[i % 3], "lines": lines})
        if r.status_code != 201:
            report.fail_rest(f"POST /orders answered {r.status_code}: {r.text[:200]}")
            return
        placed.append((r.json()["id"], customers[i % 3].split("@")[0].title(), lines))

    mark = counter.mark()
    r = await client.get("/orders", params={"limit": ORDERS})
    statements = counter.since(mark)
    body = r.json() if r.status_code == 200 else []
    expected = {oid: (name, sum(x["quantity"] * x["price_cents"] for x in lines), sorted(x["sku"] for x in lines))
                for oid, name, lines in placed}
    got = {o["id"]: (o["customer"], o["total_cents"], sorted(x["sku"] for x in o["lines"])) for o in body}
    report.check("orders_payload", r.status_code == 200 and got == expected,
                 f"GET /orders answered {r.status_code}; {len(got)} orders, "
                 f"{sum(1 for k in expected if got.get(k) != expected[k])} differ from what was placed")
    report.check("orders_statement_count", len(statements) <= MAX_LIST_STATEMENTS,
                 f"GET /orders?limit={ORDERS} ran {len(statements)} SQL statements (at most {MAX_LIST_STATEMENTS} "
                 "expected: one per table, not per order)")

    revenue = sum(v[1] for v in expected.values())
    users = 3 + 3  # ann, bob, carol + three customers
    answers = await asyncio.gather(*(client.get("/stats") for _ in range(4)))
    bodies = [a.json() if a.status_code == 200 else None for a in answers]
    wanted = {"users": users, "orders": ORDERS, "revenue_cents": revenue}
    report.check("stats_correct", all(b == wanted for b in bodies),
                 f"GET /stats answered {[a.status_code for a in answers]}, bodies {bodies[:1]}, expected {wanted}")


TASK = gradelib.Task(checks=CHECKS, backends=("postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

"""Grader: the shop API behaves as the prompt asks, with no hint of what is wrong (see prompt.md).

``python grade.py SOLUTION_DIR [--backend postgresql|mysql]``. Serves ``app.main:app`` with uvicorn
on a scratch database and talks to it over HTTP; SQL statements are counted with engine events
(the app runs in this process). To make the sign-up race happen every time, the grader blocks
writes to ``users`` with a table lock on its own connection, sends the requests, waits until they
queue behind the lock (or answer), and lets go:

- a sign-up must not be confirmed (2xx) while its row cannot have been stored yet;
- of two simultaneous sign-ups with one email exactly one gets 201 and the other 409.

The other checks call every endpoint the way a client would: the order list's statement count,
an order with its customer expanded, a status change, a cancellation (the row must be gone), a
SKU search for text with a quote in it, and the dashboard's stats, several at once.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: E402

CHECKS = ["signup_works", "duplicate_signup_409", "signup_confirmed_after_commit", "double_click_one_account",
          "orders_payload", "orders_statement_count", "order_with_customer", "status_change",
          "cancel_removes_order", "search_any_text", "stats_correct"]
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
                await orders_and_stats(client, counter, probe, report)
        finally:
            await probe.dispose()


async def orders_and_stats(client: httpx.AsyncClient, counter: gradelib.StatementCounter, probe: AsyncEngine,
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

    some_id, some_name, some_lines = placed[0]
    email = customers[0]
    r = await client.get(f"/orders/{some_id}", params={"expand": "customer"})
    body1 = r.json() if r.status_code == 200 else {}
    plain = await client.get(f"/orders/{some_id}")
    report.check("order_with_customer",
                 r.status_code == 200 and body1.get("customer") == {"email": email, "name": some_name}
                 and plain.status_code == 200 and plain.json().get("customer") is None
                 and body1.get("total_cents") == sum(x["quantity"] * x["price_cents"] for x in some_lines),
                 f"GET /orders/{{id}}?expand=customer answered {r.status_code} {r.text[:160]}; without expand "
                 f"{plain.status_code}")

    target = placed[1][0]
    r = await client.patch(f"/orders/{target}", json={"status": "paid"})
    body2 = r.json() if r.status_code == 200 else {}
    after = await client.get(f"/orders/{target}")
    report.check("status_change",
                 r.status_code == 200 and body2.get("status") == "paid" and bool(body2.get("updated_at"))
                 and after.status_code == 200 and after.json().get("status") == "paid",
                 f"PATCH /orders/{{id}} answered {r.status_code} {r.text[:160]}; the order then shows "
                 f"{after.json().get('status') if after.status_code == 200 else after.status_code}")

    victim = placed[2][0]
    r = await client.delete(f"/orders/{victim}")
    gone = await client.get(f"/orders/{victim}")
    async with probe.connect() as conn:
        rows = int(await conn.scalar(text("SELECT count(*) FROM orders WHERE id = :i"), {"i": victim}) or 0)
        lines_left = int(await conn.scalar(text("SELECT count(*) FROM order_items WHERE order_id = :i"),
                                           {"i": victim}) or 0)
    report.check("cancel_removes_order", r.status_code == 204 and gone.status_code == 404 and rows == 0
                 and lines_left == 0,
                 f"DELETE /orders/{{id}} answered {r.status_code}; GET afterwards {gone.status_code} (want 404); "
                 f"{rows} order rows and {lines_left} line rows left")
    placed = [p for p in placed if p[0] != victim]
    expected.pop(victim, None)

    quoted = await client.post("/orders", json={"email": customers[1], "lines": [
        {"sku": "O'NEILL-7", "quantity": 2, "price_cents": 150}]})
    hits = await client.get("/search", params={"sku": "O'NEILL"})
    normal = await client.get("/search", params={"sku": "SKU-4-"})
    ok = (quoted.status_code == 201 and hits.status_code == 200
          and [h["sku"] for h in hits.json()] == ["O'NEILL-7"]
          and normal.status_code == 200 and sorted(h["sku"] for h in normal.json()) == [f"SKU-4-{j}" for j in range(3)])
    report.check("search_any_text", ok,
                 f"GET /search?sku=O'NEILL answered {hits.status_code} {hits.text[:120]}; ?sku=SKU-4- answered "
                 f"{normal.status_code} {normal.text[:120]}")
    if quoted.status_code == 201:
        expected[quoted.json()["id"]] = ("Emil", 300, ["O'NEILL-7"])

    revenue = sum(v[1] for v in expected.values())
    users = 3 + 3  # ann, bob, carol + three customers
    answers = await asyncio.gather(*(client.get("/stats") for _ in range(6)))
    bodies = [a.json() if a.status_code == 200 else None for a in answers]
    wanted = {"users": users, "orders": len(expected), "revenue_cents": revenue}
    report.check("stats_correct", all(b == wanted for b in bodies),
                 f"GET /stats answered {[a.status_code for a in answers]}, bodies {bodies[:1]}, expected {wanted}")


TASK = gradelib.Task(checks=CHECKS, backends=("postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

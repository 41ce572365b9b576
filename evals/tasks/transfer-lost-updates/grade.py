"""Grader: transfers stay correct when they run at the same time (see prompt.md).

``python grade.py SOLUTION_DIR [--backend postgresql|mysql]``. Serves ``bank.main:app`` with uvicorn
on a scratch database and talks to it over HTTP. To make races happen every time instead of now
and then, the grader itself holds a row lock on an account (``SELECT ... FOR UPDATE`` on its own
connection) while it sends the requests, waits until they queue behind that lock, then lets go:

- two withdrawals from one account: both must be applied (a read-modify-write loses one);
- two transfers in opposite directions between two accounts: both must succeed (locking the
  rows in request order deadlocks, and the database aborts one of them);
- a burst of random transfers: every answer 201 or 409, money conserved, balances exact.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine  # noqa: E402

CHECKS = ["accounts_api", "concurrent_withdrawals_kept", "opposite_transfers_succeed", "burst_balances_exact",
          "overdraft_refused"]


async def hold_lock(engine: AsyncEngine, account_id: int) -> AsyncConnection:
    conn = await engine.connect()
    await conn.begin()
    await conn.execute(text("SELECT id FROM accounts WHERE id = :id FOR UPDATE"), {"id": account_id})
    return conn


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    async with gradelib.scratch_database(backend) as url:
        os.environ["DATABASE_URL"] = url
        app = gradelib.load(solution, "bank.main:app")
        probe = create_async_engine(url)
        try:
            async with gradelib.served(app) as base:
                async with gradelib.http_client(base) as client:
                    await scenarios(client, probe, backend, report)
        finally:
            await probe.dispose()


async def scenarios(client: httpx.AsyncClient, probe: AsyncEngine, backend: str, report: gradelib.Report) -> None:
    async def open_account(owner: str, balance: int) -> int:
        r = await client.post("/accounts", json={"owner": owner, "balance": balance})
        if r.status_code != 201:
            raise AssertionError(f"POST /accounts answered {r.status_code}: {r.text[:200]}")
        return int(r.json()["id"])

    async def balance(account_id: int) -> int:
        r = await client.get(f"/accounts/{account_id}")
        if r.status_code != 200:
            raise AssertionError(f"GET /accounts/{account_id} answered {r.status_code}")
        return int(r.json()["balance"])

    def send(source: int, target: int, amount: int) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(client.post("/transfers", json={"from_id": source, "to_id": target,
                                                                   "amount": amount}))

    with_step = "accounts_api"
    try:
        a, b, c = [await open_account(name, bal) for name, bal in (("a", 1000), ("b", 0), ("c", 0))]
        report.check(with_step, await balance(a) == 1000, "GET /accounts/{id} does not show the opening balance")
    except Exception as exc:  # noqa: BLE001
        report.check(with_step, False, gradelib.describe(exc))
        return

    # 1. Two withdrawals from a at once: both read before either writes.
    lock = await hold_lock(probe, a)
    tasks = [send(a, b, 100)]
    await gradelib.queued(probe, backend, 1, tasks)
    tasks.append(send(a, c, 100))
    await gradelib.queued(probe, backend, 2, tasks)
    await lock.commit()
    await lock.close()
    answers = [(await asyncio.wait_for(t, gradelib.HTTP_TIMEOUT)).status_code for t in tasks]
    got = [await balance(x) for x in (a, b, c)]
    report.check("concurrent_withdrawals_kept", answers == [201, 201] and got == [800, 100, 100],
                 f"two simultaneous 100-cent transfers out of one account answered {answers}; balances "
                 f"a, b, c = {got}, expected [800, 100, 100]")

    # 2. d -> e and e -> d at once, both queued behind the grader's lock on d.
    d, e = await open_account("d", 1000), await open_account("e", 1000)
    lock = await hold_lock(probe, d)
    tasks = [send(d, e, 100)]
    await gradelib.queued(probe, backend, 1, tasks)
    tasks.append(send(e, d, 50))
    await gradelib.queued(probe, backend, 2, tasks)
    await lock.commit()
    await lock.close()
    responses = [await asyncio.wait_for(t, gradelib.HTTP_TIMEOUT) for t in tasks]
    answers = [r.status_code for r in responses]
    got = [await balance(x) for x in (d, e)]
    report.check("opposite_transfers_succeed", answers == [201, 201] and got == [950, 1050],
                 f"d->e 100 and e->d 50 at the same time answered {answers} "
                 f"({'; '.join(r.text[:80] for r in responses if r.status_code != 201)}); "
                 f"balances d, e = {got}, expected [950, 1050]")

    # 3. A burst of random transfers among four accounts.
    accounts = [await open_account(f"burst{i}", 500) for i in range(4)]
    rng = random.Random(11)
    plan = []
    for _ in range(40):
        source, target = rng.sample(accounts, 2)
        plan.append((source, target, rng.randint(1, 120)))
    gate = asyncio.Semaphore(8)

    async def limited(source: int, target: int, amount: int) -> httpx.Response:
        async with gate:
            return await client.post("/transfers", json={"from_id": source, "to_id": target, "amount": amount})

    responses = await asyncio.gather(*(limited(*p) for p in plan))
    expected = dict.fromkeys(accounts, 500)
    for (source, target, amount), r in zip(plan, responses, strict=True):
        if r.status_code == 201:
            expected[source] -= amount
            expected[target] += amount
    odd = sorted({r.status_code for r in responses} - {201, 409})
    got = {x: await balance(x) for x in accounts}
    report.check("burst_balances_exact", not odd and got == expected and min(got.values()) >= 0,
                 f"40 concurrent transfers: unexpected answers {odd}; balances {list(got.values())}, expected "
                 f"{list(expected.values())} from the transfers that answered 201 (total "
                 f"{sum(got.values())} of 2000)")

    # 4. An overdraft is refused and changes nothing.
    f, g = await open_account("f", 30), await open_account("g", 0)
    r = await client.post("/transfers", json={"from_id": f, "to_id": g, "amount": 31})
    got = [await balance(f), await balance(g)]
    report.check("overdraft_refused", r.status_code == 409 and got == [30, 0],
                 f"a 31-cent transfer from an account holding 30 answered {r.status_code}; balances {got}")


TASK = gradelib.Task(checks=CHECKS, backends=("postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

"""Grader: an event is never oversold, on SQLite, PostgreSQL and MariaDB (see prompt.md).

``python grade.py SOLUTION_DIR [--backend sqlite|postgresql|mysql]``. Serves ``tickets.main:app``
with uvicorn on a scratch database, as the user runs it: one process on SQLite, two processes on
a server (the user runs several pods). It talks to it over HTTP:

- the API as before (create, read, reserve, 404, 409 when the seats do not fit, cancel frees seats);
- a burst of single-seat reservations for a 10-seat event, sent at once to both processes;
- reservations that arrive while another transaction holds a write lock, the way the user's
  export job does. To make the race happen every time, the grader itself holds the lock and lets
  go only when the requests wait for it: on SQLite a ``BEGIN IMMEDIATE`` on the file (for two
  seconds; the prompt says such waits must end in success or a 409, not an error); on PostgreSQL
  ``LOCK TABLE reservations IN EXCLUSIVE MODE`` (reads go on, writes wait); on MariaDB a locking
  read of the whole reservations table (``SELECT ... FOR UPDATE``, so inserts wait). A check that
  reads first and writes later lets every waiting request read the same free seats.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

import httpx  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

CHECKS = ["api_basics", "sold_out_409", "cancel_frees_seats", "burst_never_oversold", "waiting_writers_not_oversold"]
APP = "tickets.main:app"
SQLITE_HOLD = 2.0  # seconds the grader keeps the SQLite write lock ("a second or two")


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    async with gradelib.scratch_database(backend) as url:
        env = gradelib.child_env(DATABASE_URL=url)
        processes = 1 if backend == "sqlite" else 2
        probe = create_async_engine(url, poolclass=NullPool)
        try:
            with contextlib.ExitStack() as stack:
                # One after the other: two processes creating the tables at once would race.
                bases = [stack.enter_context(gradelib.serve_in_process(solution, APP, env)) for _ in range(processes)]
                clients = [gradelib.http_client(base) for base in bases]
                try:
                    await scenarios(clients, probe, url, backend, report)
                finally:
                    for client in clients:
                        await client.aclose()
        finally:
            await probe.dispose()


async def scenarios(clients: list[httpx.AsyncClient], probe: AsyncEngine, url: str, backend: str,
                    report: gradelib.Report) -> None:
    client = clients[0]

    async def new_event(name: str, capacity: int) -> int:
        r = await client.post("/events", json={"name": name, "capacity": capacity})
        if r.status_code != 201:
            raise AssertionError(f"POST /events answered {r.status_code}: {r.text[:200]}")
        body = r.json()
        if body.get("capacity") != capacity or body.get("reserved") != 0 or body.get("name") != name:
            raise AssertionError(f"POST /events answered {body}, expected name, capacity and reserved 0")
        return int(body["id"])

    async def reserved(event_id: int) -> int:
        r = await client.get(f"/events/{event_id}")
        if r.status_code != 200:
            raise AssertionError(f"GET /events/{event_id} answered {r.status_code}: {r.text[:200]}")
        return int(r.json()["reserved"])

    async def stored(event_id: int) -> int:
        """Seats of the event's reservation rows, read by the grader itself."""
        async with probe.connect() as conn:
            total = await conn.scalar(text("SELECT COALESCE(SUM(seats), 0) FROM reservations WHERE event_id = :e"),
                                      {"e": event_id})
        return int(total or 0)

    def reserve(event_id: int, seats: int, via: int = 0) -> asyncio.Task[httpx.Response]:
        c = clients[via % len(clients)]
        return asyncio.create_task(
            c.post(f"/events/{event_id}/reservations", json={"customer": f"c{via}", "seats": seats}))

    # 1. The API as before.
    try:
        event = await new_event("basics", 3)
        first = await reserve(event, 2)
        body = first.json() if first.status_code == 201 else {}
        missing = (await client.post("/events/999999/reservations", json={"customer": "x", "seats": 1})).status_code
        ok = (first.status_code == 201 and body.get("event_id") == event and body.get("seats") == 2
              and "id" in body and await reserved(event) == 2 and missing == 404)
        report.check("api_basics", ok,
                     f"reserving 2 of 3 seats answered {first.status_code} {first.text[:120]}; GET reserved "
                     f"{await reserved(event)}; a reservation for an unknown event answered {missing} (want 404)")
    except Exception as exc:  # noqa: BLE001
        report.check("api_basics", False, gradelib.describe(exc))
        return
    first_id = int(body["id"])

    # 2. What does not fit is a 409, what fits is a 201.
    answers = [(await reserve(event, n)).status_code for n in (2, 1, 1)]
    report.check("sold_out_409", answers == [409, 201, 409] and await reserved(event) == 3,
                 f"with 1 of 3 seats left, reserving 2, 1, 1 answered {answers} (want [409, 201, 409]); "
                 f"reserved {await reserved(event)}")

    # 3. Cancelling frees the seats.
    deleted = (await client.delete(f"/reservations/{first_id}")).status_code
    after_cancel = await reserved(event)
    again = (await reserve(event, 2)).status_code
    report.check("cancel_frees_seats", deleted == 204 and after_cancel == 1 and again == 201
                 and await reserved(event) == 3 and await stored(event) == 3,
                 f"DELETE answered {deleted} (want 204), reserved then {after_cancel} (want 1), reserving the 2 freed "
                 f"seats answered {again}, reserved {await reserved(event)}, rows hold {await stored(event)} seats")

    # 4. A burst: 40 single-seat requests for 10 seats, spread over the processes.
    event = await new_event("burst", 10)
    responses = await asyncio.gather(*(reserve(event, 1, via=i) for i in range(40)))
    codes = [r.status_code for r in responses]
    odd = sorted({c for c in codes} - {201, 409})
    report.check("burst_never_oversold",
                 codes.count(201) == 10 and not odd and await reserved(event) == 10 and await stored(event) == 10,
                 f"40 simultaneous requests for a 10-seat event: {codes.count(201)} answered 201, other answers "
                 f"{odd or 'none'} besides 409; reserved {await reserved(event)}, rows hold {await stored(event)} seats")

    # 5. Requests that arrive while a writer holds the lock.
    event = await new_event("waiting", 4)
    count = 16
    if backend == "sqlite":
        path = make_url(url).database
        holder = sqlite3.connect(path, isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        tasks = [reserve(event, 1) for _ in range(count)]
        await asyncio.sleep(SQLITE_HOLD)
        holder.execute("COMMIT")
        holder.close()
    else:
        lock = await probe.connect()
        await lock.begin()
        if backend == "postgresql":
            await lock.execute(text("LOCK TABLE reservations IN EXCLUSIVE MODE"))
        else:
            await lock.execute(text("SELECT id FROM reservations FOR UPDATE"))
        tasks = [reserve(event, 1, via=i) for i in range(count)]
        await gradelib.queued(probe, backend, count, tasks, bound=30.0)
        await lock.commit()
        await lock.close()
    responses = [await asyncio.wait_for(t, gradelib.HTTP_TIMEOUT) for t in tasks]
    codes = [r.status_code for r in responses]
    odd = sorted({c for c in codes} - {201, 409})
    errors = "; ".join(r.text[:100] for r in responses if r.status_code not in (201, 409))[:200]
    report.check("waiting_writers_not_oversold",
                 codes.count(201) == 4 and not odd and await reserved(event) == 4 and await stored(event) == 4,
                 f"16 single-seat requests for a 4-seat event, sent while another transaction held the write lock: "
                 f"{codes.count(201)} answered 201 (want 4), other answers {odd or 'none'} besides 409"
                 f"{' (' + errors + ')' if errors else ''}; reserved {await reserved(event)}, rows hold "
                 f"{await stored(event)} seats")


TASK = gradelib.Task(checks=CHECKS, backends=("sqlite", "postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

"""200 requests cancelled at random points: no leaked connection, no half-committed transaction.

Three ways a request is cut short (PostgreSQL and MySQL/MariaDB, pool 5 + 5):

1. ``asyncio.timeout`` around the database work inside the endpoint (``/rel/with-timeout``: a user,
   a server-side sleep, 3 posts; random budget): the statement in flight is cancelled, the
   endpoint answers 504 and ``SessionDep`` rolls back. 201 -> stored with all posts; 504 -> nothing.
2. The request task itself cancelled at a random moment (what ``asyncio.wait_for`` around a call,
   a cancelled task group or a server that cancels on disconnect does): in-process through httpx
   ``ASGITransport``, which runs the app inside the caller's task. Whatever was not committed is
   gone; whatever was committed is complete.
3. A real client disconnect over uvicorn: the socket is closed at a random moment (half of them
   after the endpoint has flushed its first row). uvicorn does *not* cancel the endpoint, so a
   request that had started runs to the end and commits although nobody reads the answer (make
   writes safe to retry); one cut before its body arrived does nothing. Stored users are complete.

Afterwards: no connection checked out, none left to the garbage collector, none "idle in
transaction" on the server, and the app still answers.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import httpx
import pytest
from load_support import (
    POSTS_PER_BATCH,
    STARTED,
    app_database,
    batch_router,
    example_app,
    pool_guard,
    served,
    server_connections,
    stored_batches,
    timeout_router,
    unique_email,
)

# Server scenarios: they need PostgreSQL or MySQL/MariaDB (TEST_POSTGRES_URL / TEST_MYSQL_URL); the
# sqlite parameter is deselected, not skipped.
pytestmark = pytest.mark.only_backends("postgresql", "mysql")

TIMEOUTS, TASK_CANCELS, DISCONNECTS = 80, 60, 60  # 200 cut-short requests
CONCURRENCY = 20
WALL_LIMIT = 600.0  # a hang guard, not a speed limit


async def in_batches(jobs: list, concurrency: int = CONCURRENCY) -> list:
    results: list = []
    for start in range(0, len(jobs), concurrency):
        results += await asyncio.gather(*(job() for job in jobs[start : start + concurrency]))
    return results


async def test_cancelled_requests_leave_nothing_behind(backend: str, server_url: str) -> None:
    rng = random.Random(20260)
    timeout_emails = [unique_email("budget") for _ in range(TIMEOUTS)]
    cancel_emails = [unique_email("cancel") for _ in range(TASK_CANCELS)]
    disconnect_emails = [unique_email("gone") for _ in range(DISCONNECTS)]

    async with app_database(server_url) as db:
        app = example_app(db, pool_size=5, max_overflow=5, routers=(batch_router, timeout_router))
        with pool_guard() as guard:
            # 3. over real HTTP first: uvicorn runs the lifespan (engine, tables) itself.
            async with served(app) as base_url:

                async def disconnecting(email: str, after_start: bool) -> str:
                    STARTED[email] = asyncio.Event()
                    async with httpx.AsyncClient(base_url=base_url) as client:
                        call = asyncio.create_task(client.post("/rel/batch", json={"email": email, "pause": 0.02}))
                        if after_start:  # mid-request for sure: the user row is flushed, posts follow
                            await asyncio.wait_for(STARTED[email].wait(), 10)
                        await asyncio.sleep(rng.uniform(0.0, 0.03))
                        if call.done():
                            return "answered"
                        call.cancel()  # httpx closes the socket: the server sees a disconnect
                        await asyncio.gather(call, return_exceptions=True)
                    return "disconnected-after-start" if after_start else "disconnected"

                gone = await asyncio.wait_for(
                    in_batches(
                        [lambda e=e, i=i: disconnecting(e, i % 2 == 0) for i, e in enumerate(disconnect_emails)]
                    ),
                    WALL_LIMIT,
                )
                # The endpoints keep running after the disconnect: wait (bounded) until they are done.
                engine = app.state.engine
                for _ in range(500):
                    if engine.pool.checkedout() == 0:
                        break
                    await asyncio.sleep(0.02)
                http_checked_out = engine.pool.checkedout()
                http_stored = await stored_batches(engine, disconnect_emails)
                STARTED.clear()

            async with app.router.lifespan_context(app):
                engine = app.state.engine
                transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url="http://cancel") as client:
                    # 1. asyncio.timeout inside the endpoint.
                    async def budgeted(email: str, tight: bool) -> int:
                        # tight: a budget that runs out somewhere in the statements (or the server
                        # sleep); otherwise a generous one that the same work always fits in.
                        budget = rng.uniform(0.002, 0.1) if tight else 10.0
                        body = {"email": email, "budget": budget, "sleep": rng.uniform(0, 0.05) if tight else 0.0}
                        return (await client.post("/rel/with-timeout", json=body)).status_code

                    budget_answers = await asyncio.wait_for(
                        in_batches([lambda e=e, i=i: budgeted(e, i % 4 != 0) for i, e in enumerate(timeout_emails)]),
                        WALL_LIMIT,
                    )

                    # 2. the request task cancelled from outside at a random point.
                    async def cancelled(email: str) -> int | str:
                        try:
                            async with asyncio.timeout(rng.uniform(0.001, 0.15)):
                                r = await client.post("/rel/batch", json={"email": email, "pause": 0.01})
                                return r.status_code
                        except TimeoutError:
                            return "cancelled"

                    cancel_answers = await asyncio.wait_for(
                        in_batches([lambda e=e: cancelled(e) for e in cancel_emails]), WALL_LIMIT
                    )

                    still_serving = await client.post("/users", json={"email": unique_email("after"), "name": "a"})
                    health = await client.get("/health")
                stored = await stored_batches(engine, timeout_emails + cancel_emails)
                checked_out = engine.pool.checkedout()
                held = await server_connections(db)

    budget_counts, cancel_counts, gone_counts = Counter(budget_answers), Counter(cancel_answers), Counter(gone)
    print(
        f"{backend}: timeouts {dict(budget_counts)}, task cancels {dict(cancel_counts)}, "
        f"disconnects {dict(gone_counts)} (stored {len(http_stored)}), posts per stored user "
        f"{dict(Counter(list(stored.values()) + list(http_stored.values())))}, reset errors logged "
        f"{len(guard.reset_errors)}, server connections after {held}"
    )

    # 1. 201 -> complete; 504 -> nothing stored.
    assert set(budget_counts) <= {201, 504}, budget_counts
    assert budget_counts[504] > 0 and budget_counts[201] >= TIMEOUTS // 4, budget_counts
    for email, status in zip(timeout_emails, budget_answers):
        assert stored.get(email) == (POSTS_PER_BATCH if status == 201 else None), (status, stored.get(email))
    # 2. cancelled at random points: every acknowledged one complete; nothing else half-done.
    assert cancel_counts["cancelled"] > 0, cancel_counts
    assert set(cancel_counts) <= {201, "cancelled"}, cancel_counts
    for email, answer in zip(cancel_emails, cancel_answers):
        if answer == 201:
            assert stored.get(email) == POSTS_PER_BATCH
        else:
            assert stored.get(email) in (None, POSTS_PER_BATCH)
    # 3. real disconnects: an endpoint that had started ran on and committed; all stored is complete.
    assert gone_counts["disconnected-after-start"] > 0, gone_counts
    for email, outcome in zip(disconnect_emails, gone):
        if outcome == "disconnected-after-start":
            assert http_stored.get(email) == POSTS_PER_BATCH, (email, http_stored.get(email))
    assert set(http_stored.values()) <= {POSTS_PER_BATCH}, http_stored
    assert http_checked_out == 0 and checked_out == 0
    assert still_serving.status_code == 201 and health.status_code == 200
    assert not any("idle in transaction" in state for state in held), held
    assert sum(held.values()) <= 10, held

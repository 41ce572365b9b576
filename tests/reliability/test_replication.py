"""Streaming replication for real: a private primary and its hot standby (pg_basebackup -R), with
the routing session of templates/read_replica.py in front.

Proven here:
- read-your-writes: with replay paused on the standby, the naive router returns None for a row
  the client has just written; ``prepare_reads(mark)`` returns it (the WAL-position wait times out
  and pins the session to the primary; without a WAL position the pin window does it); once the
  standby replays, the same call lets the read go to the standby;
- under a write load, reads straight after a commit: the naive miss rate is reported (it depends
  on the machine: never asserted), ``prepare_reads`` never misses;
- standby stopped while 4 HTTP clients read and write through examples/fastapi_app.py: no 500; a
  read whose replica connection cannot be opened is re-run on the primary (then the replica is left
  alone for ``retry_after``), only a read already running on the standby when it stops gets 503;
  started again: reads return to it;
- primary stopped and the standby promoted: the app reads nothing from the promoted copy (it is
  no longer in recovery: ``require_standby`` refuses it) and writes fail with 503, never reaching
  it; a primary URL listing both hosts with ``target_session_attrs=primary`` follows the promotion;
- ``python examples/read_replica.py`` with ``REPLICA_URL`` runs against the pair.

Figures are printed (run with ``-s``); times are never asserted.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pgserver import PrivatePostgres, PrivateStandby
from replica_support import Pair, caught_up, read_after_write_load, replay_paused, routed_pair
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError

from examples.fastapi_app import create_app
from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker
from templates.models import User
from templates.read_replica import NotAStandby, WriteMark, make_read_only, mark_write, prepare_reads

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def pair(replication: tuple[PrivatePostgres, PrivateStandby]) -> AsyncIterator[Pair]:
    async with routed_pair(*replication) as routed:
        yield routed


async def write_user(pair: Pair) -> tuple[uuid.UUID, WriteMark]:
    async with pair.sessions() as session:
        async with session.begin():
            user = User(email=f"{uuid.uuid4().hex[:12]}@repl.test", name="W")
            session.add(user)
        return user.id, await mark_write(session)


async def test_naive_router_misses_a_fresh_write_and_prepare_reads_does_not(pair: Pair) -> None:
    async with replay_paused(pair.standby_server):
        user_id, mark = await write_user(pair)
        assert mark.lsn is not None
        async with pair.sessions() as session:
            assert await session.get(User, user_id) is None  # naive: the standby has not replayed it
        async with pair.sessions() as session:  # 1. wait for the WAL position: times out -> primary
            assert await prepare_reads(session, mark, replay_timeout=0.2) == "primary"
            assert await session.get(User, user_id) is not None
        async with pair.sessions() as session:  # 2. no WAL position (other backends): pin window
            assert await prepare_reads(session, WriteMark(at=mark.at), pin_window=30) == "primary"
            assert await session.get(User, user_id) is not None
    async with pair.sessions() as session:  # replay resumed: the standby catches up, reads stay there
        assert await prepare_reads(session, mark, replay_timeout=30) == "replica"
        assert await session.get(User, user_id) is not None
    restored = WriteMark.decode(mark.encode())
    assert restored == WriteMark(at=round(mark.at, 3), lsn=mark.lsn)
    assert WriteMark.decode("nonsense") is None and WriteMark.decode("1.0~x/y") is None


async def test_reads_right_after_writes_under_load(pair: Pair) -> None:
    report = await read_after_write_load(pair, writers=4, each=25, background=2)
    print(f"\nread-your-writes on a streaming standby: {report.summary()}")
    assert report.rounds == 100 and report.fixed_misses == 0, report.summary()


async def test_standby_stop_and_start_under_http_load(pair: Pair) -> None:
    await caught_up(pair)
    app = create_app(DatabaseSettings(url="sqlite+aiosqlite://"), with_tables=False)  # lifespan not run
    app.state.sessionmaker = pair.sessions
    replica_statements: list[float] = []

    def on_replica(*args: Any) -> None:
        replica_statements.append(time.monotonic())

    event.listen(pair.replica.sync_engine, "before_cursor_execute", on_replica)
    statuses: Counter[str] = Counter()
    stop = asyncio.Event()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        created = await client.post("/users", json={"email": f"{uuid.uuid4().hex[:8]}@repl.test", "name": "S"})
        user_id = created.json()["id"]
        await caught_up(pair)

        async def client_loop(n: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                if i % 5 == 0:
                    answer = await client.post("/users", json={"email": f"{uuid.uuid4().hex}@repl.test", "name": "c"})
                    statuses[f"POST {answer.status_code}"] += 1
                else:
                    answer = await client.get(f"/users/{user_id}")
                    statuses[f"GET {answer.status_code}"] += 1
                await asyncio.sleep(0.005)

        clients = [asyncio.create_task(client_loop(n)) for n in range(4)]
        try:
            await asyncio.sleep(0.3)
            before_stop = len(replica_statements)
            stopped_at = time.monotonic()
            await asyncio.to_thread(pair.standby_server.stop, "fast")
            down_failures = pair.health.failures
            served_while_down = sum(statuses.values())
            await asyncio.sleep(1.0)  # reads keep coming while the standby is down
            served_while_down = sum(statuses.values()) - served_while_down
            started_at = time.monotonic()
            await asyncio.to_thread(pair.standby_server.start)
            deadline = time.monotonic() + 60
            while not [t for t in replica_statements if t > started_at] and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(*clients)
            event.remove(pair.replica.sync_engine, "before_cursor_execute", on_replica)
    back = [t for t in replica_statements if t > started_at]
    print(
        f"\nstandby stopped for {started_at - stopped_at:.1f} s under 4 clients: {dict(statuses)}; "
        f"replica failures noted {pair.health.failures} (first: {pair.health.last_error}); "
        f"{served_while_down} requests answered while it was down; reads back on the standby "
        f"{(back[0] - started_at) if back else float('nan'):.2f} s after its start command returned"
    )
    assert before_stop > 0, "the standby served no read before it was stopped"
    assert pair.health.failures > down_failures or pair.health.failures >= 1
    # No 500. A read already running on the standby when it stops fails (503); the rest fall back.
    assert set(statuses) <= {"GET 200", "GET 503", "POST 201"}, statuses
    assert statuses["GET 503"] <= 4, statuses  # at most the 4 clients' in-flight reads
    assert served_while_down > 0
    assert back, "reads did not return to the standby within 60 s of its restart"
    await asyncio.to_thread(pair.standby_server.wait_streaming)


async def test_promoted_standby_is_neither_read_nor_written(
    fresh_replication: tuple[PrivatePostgres, PrivateStandby],
) -> None:
    """Primary stopped, standby promoted (``pg_ctl promote``): what the app does."""
    primary, standby = fresh_replication
    failover_url = (
        f"postgresql+asyncpg://postgres@/app?host=127.0.0.1:{primary.port}"
        f"&host=127.0.0.1:{standby.port}&target_session_attrs=primary"
    )
    failover = create_db_engine(DatabaseSettings(url=failover_url))
    read_only_only = create_db_engine(DatabaseSettings(url=standby.url()))  # make_read_only, no standby check
    make_read_only(read_only_only)
    plain_to_standby = create_db_engine(DatabaseSettings(url=standby.url()))
    try:
        async with routed_pair(primary, standby, retry_after=0.2) as pair:
            app = create_app(DatabaseSettings(url="sqlite+aiosqlite://"), with_tables=False)
            app.state.sessionmaker = pair.sessions
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
                created = await client.post("/users", json={"email": "p@repl.test", "name": "P"})
                user_id = created.json()["id"]
                await caught_up(pair)
                assert (await client.get(f"/users/{user_id}")).status_code == 200
                async with failover.connect() as conn:
                    assert await conn.scalar(text("SELECT inet_server_port()")) == primary.port

                await asyncio.to_thread(primary.stop, "fast")
                started = time.monotonic()
                await asyncio.to_thread(standby.promote)
                promoted_after = time.monotonic() - started
                replica_reads: list[str] = []
                event.listen(pair.replica.sync_engine, "before_cursor_execute", lambda *a: replica_reads.append(a[2]))
                answers: Counter[str] = Counter()
                for _ in range(5):
                    answers[f"GET {(await client.get(f'/users/{user_id}')).status_code}"] += 1
                    post = await client.post("/users", json={"email": f"{uuid.uuid4().hex}@x.test", "name": "x"})
                    answers[f"POST {post.status_code}"] += 1
            assert answers == Counter({"GET 503": 5, "POST 503": 5}), answers  # primary down; never the copy
            assert replica_reads == [], replica_reads  # nothing was read from the detached copy
            assert "not in recovery" in str(pair.health.last_error)
            with pytest.raises(NotAStandby):
                async with pair.replica.connect():
                    pass

        # make_read_only still refuses writes on the promoted server; a plain engine writes to the copy.
        with pytest.raises(DBAPIError, match="read-only transaction"):
            async with read_only_only.begin() as conn:
                await conn.execute(text("CREATE TABLE nope (id int)"))
        async with plain_to_standby.begin() as conn:
            await conn.execute(text("CREATE TABLE written_to_the_copy (id int)"))
        # A primary URL that lists both hosts follows the promotion (asyncpg target_session_attrs).
        started = time.monotonic()
        async with create_sessionmaker(failover)() as session, session.begin():
            port = await session.scalar(text("SELECT inet_server_port()"))
            session.add(User(email="after@repl.test", name="A"))
        print(
            f"\npromotion: pg_ctl promote took {promoted_after:.2f} s; routed app answered {dict(answers)}; "
            f"multi-host primary URL wrote to the promoted server {time.monotonic() - started:.2f} s later"
        )
        assert port == standby.port
        async with failover.connect() as conn:
            assert await conn.scalar(select(User.name).where(User.email == "after@repl.test")) == "A"
    finally:
        for engine in (failover, read_only_only, plain_to_standby):
            await engine.dispose()


def test_example_runs_against_the_streaming_pair(replication: tuple[PrivatePostgres, PrivateStandby]) -> None:
    primary, standby = replication
    env = {**os.environ, "DATABASE_URL": primary.url(), "REPLICA_URL": standby.url(), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "read_replica.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "replica = streaming standby" in run.stdout and "read_replica: ok" in run.stdout, run.stdout
    print(run.stdout)

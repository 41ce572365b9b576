"""Sizing across processes: ``workers x (pool_size + max_overflow)`` against ``max_connections``.

A private PostgreSQL with ``max_connections = 12``; the app logs in as a non-superuser role, so
``superuser_reserved_connections`` (3) leaves it 9. Real worker processes (hold_connections.py)
each open their pool's peak at once. Proven:
- 2 workers x (3 + 2) = 10 > 9: the server refuses the 10th connection (53300, "remaining
  connection slots are reserved ..."); 9 open;
- the fix without a pooler: 2 x (3 + 1) = 8: all open;
- the fix with PgBouncer (transaction mode, ``default_pool_size = 4``): the same 2 x (3 + 2) = 10
  client connections all open and run their transactions; the server sees at most 4;
- ``scripts/test-connection.sh --workers 2 --pool-size 3 --max-overflow 2 --json`` reports the
  same numbers: 10 wanted, 9 available, exceeds; and 8 / 9 / fits for the fix.
Forked workers (gunicorn --preload): two real ``os.fork()`` workers share the engine the parent
used. ``dispose(close=False)`` in each worker: both work and the parent's connection survives;
``dispose()``: the workers work but close the parent's connection (its server session ends).
(Nothing at all: the workers fail with "attached to a different loop", proven in test_pooling.py
and by fork_workers.py's ``none`` mode.)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pgserver import PgBouncer, PrivatePostgres

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
MAX_CONNECTIONS = 12  # the small_pg fixture's server


async def peak(
    url: str, workers: int, pool_size: int, max_overflow: int, mode: str = "direct", while_held: Any = None
) -> tuple[list[dict[str, Any]], Any]:
    """Start ``workers`` processes that each open pool_size + max_overflow connections at once;
    once all report, call ``while_held()`` (connections still open), then let them go."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(HERE / "hold_connections.py"),
            url,
            str(pool_size),
            str(max_overflow),
            mode,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(workers)
    ]
    try:
        lines = [await asyncio.wait_for(proc.stdout.readline(), 120) for proc in procs]  # type: ignore[union-attr]
        reports = [json.loads(line) for line in lines if line.strip()]
        assert len(reports) == workers, [await proc.stderr.read() for proc in procs]  # type: ignore[union-attr]
        seen = await while_held() if while_held is not None else None
    finally:
        for proc in procs:
            if proc.returncode is None and proc.stdin is not None:
                proc.stdin.write(b"release\n")
                await proc.stdin.drain()
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
    return reports, seen


def test_connection(url: str, workers: int, pool_size: int, max_overflow: int) -> dict[str, Any]:
    run = subprocess.run(
        [
            "bash",
            str(ROOT / "scripts" / "test-connection.sh"),
            url,
            "--workers",
            str(workers),
            "--pool-size",
            str(pool_size),
            "--max-overflow",
            str(max_overflow),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHON": sys.executable},
    )
    assert run.stdout.strip(), run.stderr
    report: dict[str, Any] = json.loads(run.stdout)
    return report


test_connection.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


async def app_connections(server: PrivatePostgres) -> int:
    return int(await asyncio.to_thread(server.psql, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'"))


async def test_pools_beyond_max_connections_fail_and_the_script_says_so(small_pg: PrivatePostgres) -> None:
    url = small_pg.url(user="app")
    script = await asyncio.to_thread(test_connection, url, 2, 3, 2)
    reports, on_server = await peak(url, 2, 3, 2, while_held=lambda: app_connections(small_pg))
    opened, failed = sum(r["opened"] for r in reports), sum(r["failed"] for r in reports)
    errors = {k for r in reports for k in r["errors"]}
    print(
        f"\n2 workers x (3 + 2) on max_connections {MAX_CONNECTIONS} (3 reserved for superusers): "
        f"{opened} opened, {failed} refused {sorted(errors)}; test-connection: {script['capacity']}"
    )
    assert (opened, failed, on_server) == (9, 1, 9)
    assert all(k.startswith("53300 ") for k in errors), errors  # too_many_connections
    capacity = script["capacity"]
    assert script["exit_code"] == 0 and any("exceeds the 9 connections" in w for w in script["warnings"]), script
    assert capacity["app_max_connections"] == opened + failed == 10
    assert capacity["available_to_app"] == opened == 9
    assert capacity["reserved_connections"] == 3 and capacity["exceeds"] is True


async def test_smaller_pools_fit(small_pg: PrivatePostgres) -> None:
    url = small_pg.url(user="app")
    script = await asyncio.to_thread(test_connection, url, 2, 3, 1)
    reports, _ = await peak(url, 2, 3, 1)
    opened, failed = sum(r["opened"] for r in reports), sum(r["failed"] for r in reports)
    assert (opened, failed) == (8, 0), reports
    capacity = script["capacity"]
    assert (capacity["app_max_connections"], capacity["available_to_app"], capacity["exceeds"]) == (8, 9, False)


async def test_pgbouncer_in_front_serves_every_client_on_four_server_connections(
    small_pg: PrivatePostgres, pgbouncer_installed: None
) -> None:
    bouncer = PgBouncer(small_pg, pool_mode="transaction", default_pool_size=4, users=("postgres", "app"))
    try:
        bouncer.start()
        url = bouncer.url(user="app")
        script = await asyncio.to_thread(test_connection, url, 2, 3, 2)
        reports, on_server = await peak(url, 2, 3, 2, mode="bouncer", while_held=lambda: app_connections(small_pg))
    finally:
        bouncer.destroy()
    opened, failed = sum(r["opened"] for r in reports), sum(r["failed"] for r in reports)
    print(
        f"\nthrough PgBouncer (default_pool_size 4): {opened} client connections opened, {failed} refused, "
        f"{on_server} server connections; test-connection through PgBouncer: {script.get('capacity')}"
    )
    assert (opened, failed) == (10, 0), reports
    assert on_server <= 4


@pytest.mark.only_backends("postgresql", "mysql")
@pytest.mark.parametrize("mode", ["close_false", "close_true"])  # "none": tests/test_pooling.py
def test_forked_workers_and_the_inherited_pool(server_url: str, backend: str, mode: str) -> None:
    run = subprocess.run(
        [sys.executable, str(HERE / "fork_workers.py"), server_url, mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and len(lines) == 1, run.stdout + run.stderr[-2000:]
    outcome = lines[0]
    workers = outcome["workers"]
    print(f"\n{backend} {mode}: {outcome}")
    if mode == "close_false":
        assert all(w["ok"] for w in workers) and outcome["parent_connection_alive"], lines
        assert not outcome["close_errors_logged"]
    elif mode == "close_true":
        assert all(w["ok"] for w in workers), lines
        assert outcome["close_errors_logged"]  # "Exception closing connection": the parent's, from a child
        if backend == "postgresql":
            assert not outcome["parent_connection_alive"]  # the child ended the parent's session
    else:  # the inherited pool used as is (not run here: tests/test_pooling.py proves it fails)
        assert not any(w["ok"] for w in workers), lines
        assert all("attached to a different loop" in w["error"] for w in workers), lines

"""Measurements behind references/scaling.md (run with ``make bench``; printed, never asserted as times).

- PgBouncer (transaction mode, 2 server connections) in front of a private PostgreSQL, two worker
  processes per variant of the asyncpg settings, each running start-up and a mixed load of
  ``BENCH_BOUNCER_REQUESTS`` requests (default 2500); then the named prepared statements left on
  PgBouncer's server connections. On the installed asyncpg and on every interpreter listed in
  ``BENCH_ASYNCPG_PYTHONS`` (os.pathsep-separated; e.g. a temporary venv with asyncpg 0.29).
- Read-after-write on a streaming standby under write load: the routed app path (naive vs
  ``prepare_reads``), and the tightest read (a held replica connection, straight after COMMIT)
  with ``synchronous_commit`` ``on`` versus ``remote_apply``, with commit latency.
- Four uvicorn workers migrating at start-up WITHOUT the lock (PostgreSQL): how many crash.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

RELIABILITY = Path(__file__).resolve().parents[1] / "reliability"
if str(RELIABILITY) not in sys.path:
    sys.path.insert(0, str(RELIABILITY))

from bouncer_scenarios import create_load_table, leftover_statements
from pgserver import PgBouncer, PrivatePostgres, PrivateStandby, missing_tools_reason

SCENARIOS = RELIABILITY / "bouncer_scenarios.py"
VARIANTS = [
    "asyncpg-recipe",  # unnamed statements, both caches off, template pool
    "asyncpg-recipe-nullpool",  # same with NullPool
    "asyncpg-unique-names-nullpool",  # the recipe this skill used to give (SQLAlchemy's docs)
    "asyncpg-cache-off-only",  # statement_cache_size=0 alone
    "asyncpg-unnamed-sqlalchemy-cache",  # "" names but SQLAlchemy's statement cache on
    "asyncpg-naive",  # template defaults
]


def need_private_servers(*, pgbouncer: bool = False) -> None:
    if not os.environ.get("TEST_POSTGRES_URL"):
        pytest.skip("set TEST_POSTGRES_URL to run the scaling benchmarks (they start private servers)")
    reason = missing_tools_reason(need_pgbouncer=pgbouncer)
    if reason:
        pytest.skip(reason)


def run_workers(python: str, url_template: str, variant: str, requests: int, budget: float) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [python, str(SCENARIOS), url_template, variant, "load", str(requests)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            results.append({"startup": f"killed after {budget:.0f} s"})
            continue
        lines = [line for line in out.splitlines() if line.startswith("{")]
        results.append(json.loads(lines[-1]) if lines else {"startup": f"crashed: {err.strip()[-200:]}"})
    return results


def summarise(results: list[dict[str, Any]]) -> str:
    parts = []
    for r in results:
        if r.get("startup") != "ok":
            parts.append(f"start-up failed: {r.get('startup')}")
            continue
        errors = sorted(r["errors"].items(), key=lambda kv: -kv[1])
        top = "; ".join(f"{n} x {msg[:90]}" for msg, n in errors[:2])
        parts.append(
            f"{r['ok']} ok, {r['wrong']} wrong, {sum(r['errors'].values())} errors"
            f"{' (' + top + ')' if top else ''}, {r['connects']} client connections, {r['seconds']:.1f} s"
        )
    return " | ".join(parts)


@pytest.mark.bench
def test_pgbouncer_prepared_statement_variants() -> None:
    need_private_servers(pgbouncer=True)
    requests = int(os.environ.get("BENCH_BOUNCER_REQUESTS", "2500"))
    pythons = [sys.executable] + [p for p in os.environ.get("BENCH_ASYNCPG_PYTHONS", "").split(os.pathsep) if p]
    server = PrivatePostgres()
    try:
        server.init()
        asyncio.run(create_load_table(server.url()))
        print(f"\nPgBouncer transaction mode, default_pool_size 2, 2 worker processes x {requests} mixed requests:")
        for python in pythons:
            version = subprocess.run(
                [python, "-c", "import asyncpg; print(asyncpg.__version__)"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            for variant in VARIANTS:
                bouncer = PgBouncer(server, pool_mode="transaction", default_pool_size=2)
                try:
                    bouncer.start()
                    started = time.perf_counter()
                    results = run_workers(python, bouncer.url("DRIVER"), variant, requests, 120 + requests * 0.2)
                    wall = time.perf_counter() - started
                    try:
                        left = asyncio.run(asyncio.wait_for(leftover_statements(bouncer.url(), 2), 60))
                        left_text = f"{sum(left.values())} named statements left ({sorted(left.values())})"
                    except Exception as exc:
                        left_text = f"could not look: {type(exc).__name__}"
                finally:
                    bouncer.destroy()
                print(f"  asyncpg {version}, {variant}: {summarise(results)}; {left_text}; wall {wall:.1f} s")
    finally:
        server.destroy()


@pytest.mark.bench
def test_read_after_write_on_a_streaming_standby() -> None:
    need_private_servers()
    from replica_support import read_after_write_load, routed_pair

    primary = PrivatePostgres(settings={"synchronous_commit": "on"})
    standby = PrivateStandby(primary)
    try:
        primary.init()
        standby.init()

        async def measure() -> None:
            async with routed_pair(primary, standby) as pair:
                report = await read_after_write_load(pair, writers=4, each=250, background=3)
                print(f"\nrouted app path, 4 writers, 3 background writers: {report.summary()}")
                for mode in ("on", "remote_apply"):
                    misses, commits = await tight_reads(pair, mode, rounds=1000)
                    print(
                        f"tightest read (held replica connection, straight after COMMIT), synchronous_commit "
                        f"{mode}: {misses} of 1000 missed; commit median {statistics.median(commits):.2f} ms, "
                        f"p95 {sorted(commits)[949]:.2f} ms"
                    )

        asyncio.run(measure())
    finally:
        try:
            standby.destroy()
        finally:
            primary.destroy()


async def tight_reads(pair: Any, mode: str, rounds: int) -> tuple[int, list[float]]:
    """Insert on the primary and read it back at once on an open standby connection."""
    from sqlalchemy import text

    if mode == "remote_apply":  # needs the standby listed as synchronous; '*' = any standby
        await asyncio.to_thread(pair.primary_server.psql, "ALTER SYSTEM SET synchronous_standby_names = '*'")
        await asyncio.to_thread(pair.primary_server.psql, "SELECT pg_reload_conf()")
        await asyncio.to_thread(pair.primary_server.wait_for, "SELECT sync_state FROM pg_stat_replication", "sync", 30)
    misses, commits = 0, []
    try:
        async with pair.primary.connect() as writer, pair.replica_admin.connect() as reader:
            await writer.execute(text("CREATE TABLE IF NOT EXISTS tight (id int PRIMARY KEY)"))
            await writer.execute(text("TRUNCATE tight"))
            await writer.commit()
            for i in range(rounds):
                await writer.execute(text(f"SET LOCAL synchronous_commit = {mode}"))
                await writer.execute(text("INSERT INTO tight VALUES (:i)"), {"i": i})
                started = time.perf_counter()
                await writer.commit()
                commits.append((time.perf_counter() - started) * 1000)
                if await reader.scalar(text("SELECT count(*) FROM tight WHERE id = :i"), {"i": i}) == 0:
                    misses += 1
                await reader.rollback()
    finally:
        if mode == "remote_apply":
            await asyncio.to_thread(pair.primary_server.psql, "ALTER SYSTEM RESET synchronous_standby_names")
            await asyncio.to_thread(pair.primary_server.psql, "SELECT pg_reload_conf()")
    return misses, commits


@pytest.mark.bench
@pytest.mark.only_backends("postgresql")
async def test_workers_migrating_without_a_lock(server_url: str, backend: str, tmp_path: Path) -> None:
    from load_support import app_database
    from worker_support import WORKERS, alembic_project, version_rows
    from worker_support import run_workers as run_uvicorn

    ini = alembic_project(tmp_path / "project")
    for app, label in (
        ("naive_migrate_app:create_app", "without the lock"),
        ("examples.migrations:create_app", "with migrate_at_startup"),
    ):
        async with app_database(server_url) as db:
            stdout, stderr, code = await asyncio.to_thread(run_uvicorn, app, db.url, ini, tmp_path, RELIABILITY)
            rows, tables = await version_rows(db.url)
        crashed = stderr.count("Application startup failed")
        errors = sorted(
            {
                line.split(":")[0] + ": " + line.split(")")[-1].strip()[:90]
                for line in stderr.splitlines()
                if line.startswith("sqlalchemy.exc.")
            }
        )
        print(
            f"\n{WORKERS} uvicorn workers migrating at start-up {label}: {crashed} failed at start-up "
            f"{errors}; alembic_version rows {rows}; tables {tables}"
        )

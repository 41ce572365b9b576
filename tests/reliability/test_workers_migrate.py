"""Four uvicorn workers, each migrating at start-up, against a fresh database.

``uvicorn --workers 4 --factory examples.migrations:create_app``: every worker's lifespan calls
``templates/migrate_at_startup.migrate_at_startup``. The revision sleeps 1 s between two
``CREATE TABLE``s, so all four workers are starting while the first one migrates. Proven on
PostgreSQL (advisory lock) and MariaDB (``GET_LOCK``):
- exactly one worker migrates (base -> head); the other three wait for the lock and find head;
- no worker crashes (no traceback; the supervisor exits 0 on SIGTERM); all four start serving;
- ``alembic_version`` holds one row and both tables exist.

The counter-check (the same workers running ``command.upgrade`` without the lock: 3 of 4 crashed
at start-up on PostgreSQL) is a benchmark, tests/bench/test_bench_scaling.py, to keep CI cheap.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from load_support import app_database
from worker_support import WORKERS, alembic_project, run_workers, version_rows


@pytest.mark.only_backends("postgresql", "mysql")
async def test_four_uvicorn_workers_migrate_exactly_once(server_url: str, backend: str, tmp_path: Path) -> None:
    ini = alembic_project(tmp_path / "project")
    async with app_database(server_url) as db:
        stdout, stderr, code = await asyncio.to_thread(
            run_workers, "examples.migrations:create_app", db.url, ini, tmp_path
        )
        rows, tables = await version_rows(db.url)
    lines = [line for line in stdout.splitlines() if line.startswith("worker ")]
    print(f"\n{backend}, {WORKERS} uvicorn workers:\n" + "\n".join(lines))
    assert "Traceback" not in stderr and "startup failed" not in stderr, stderr[-3000:]
    assert stderr.count("Application startup complete") == WORKERS, stderr[-3000:]
    assert code == 0, stderr[-3000:]
    assert len(lines) == WORKERS, stdout
    assert sum("migrated None -> 0001" in line for line in lines) == 1, lines
    assert sum("found head 0001 -> 0001" in line for line in lines) == WORKERS - 1, lines
    assert (rows, tables) == (1, ["worker_notes", "worker_tags"])

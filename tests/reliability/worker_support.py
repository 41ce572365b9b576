"""Several uvicorn workers migrating at start-up (test_workers_migrate.py and the bench).

- ``alembic_project(root)``: the skill's Alembic setup (``scripts/setup-alembic.py``) plus one
  hand-written revision that holds the migration open for a second between two CREATE TABLEs;
- ``run_workers(app, url, ini, log_dir)``: ``uvicorn --workers 4 --factory APP`` until every worker
  logged its start-up (bounded), then SIGTERM; returns stdout, stderr and the exit code;
- ``version_rows(url)``: rows in ``alembic_version`` and the tables the revision creates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pgserver import free_port
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORKERS = 4

REVISION = '''"""create worker tables"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("worker_notes", sa.Column("id", sa.Integer, primary_key=True), sa.Column("body", sa.Text))
    # Hold the migration open for a second: every other worker starts while this one migrates.
    op.execute("SELECT pg_sleep(1)" if op.get_bind().dialect.name == "postgresql" else "SELECT SLEEP(1)")
    op.create_table("worker_tags", sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))


def downgrade() -> None:
    op.drop_table("worker_tags")
    op.drop_table("worker_notes")
'''


def alembic_project(root: Path) -> Path:
    """A project with the skill's Alembic setup and one hand-written revision; returns alembic.ini."""
    (root / "mig_app").mkdir(parents=True)
    (root / "mig_app" / "models.py").write_text("from sqlalchemy import MetaData\n\nmetadata = MetaData()\n")
    setup = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "setup-alembic.py"),
            "--metadata",
            "mig_app.models:metadata",
            "--project",
            str(root),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    (root / "alembic" / "versions" / "0001_create_worker_tables.py").write_text(REVISION)
    return root / "alembic.ini"


def run_workers(app: str, url: str, ini: Path, log_dir: Path, extra_path: Path | None = None) -> tuple[str, str, int]:
    """Start ``uvicorn --workers 4`` on ``app``; once every worker logged its start-up (or 120 s
    passed), stop it with SIGTERM. Returns (stdout, stderr, exit code)."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "ALEMBIC_CONFIG": str(ini),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT, extra_path) if p),
    }
    out_path, err_path = log_dir / "stdout.log", log_dir / "stderr.log"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                app,
                "--workers",
                str(WORKERS),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                started = err_path.read_text().count("Application startup complete")
                failed = err_path.read_text().count("Application startup failed")
                if started + failed >= WORKERS and started >= 1:
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # let a crashed worker's replacement (if any) log too
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    return out_path.read_text(), err_path.read_text(), proc.returncode


async def version_rows(url: str) -> tuple[int, list[str]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
            names = await conn.run_sync(lambda c: c.dialect.get_table_names(c))
            tables = sorted(t for t in names if t.startswith("worker_"))
        return len(rows), tables
    finally:
        await engine.dispose()

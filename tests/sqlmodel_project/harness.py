"""Helpers for the SQLModel script tests: a copy of the sample project, an empty database, runs.

``make_project(tmp)`` copies this folder's ``app/`` and report programs to ``tmp/"my project"`` (a
path with a space) and adds templates/base_model.py as ``app/base_model.py``, the way a user copies
the template. ``user_database(server_url)`` yields the URL of a database made for one test (a file
on SQLite, ``CREATE DATABASE`` on the servers) and drops it afterwards: the scripts and Alembic get
it as ``DATABASE_URL``, like a user's own database.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

HERE = Path(__file__).resolve().parent
SKILL = HERE.parents[1]
SCRIPTS = SKILL / "scripts"
METADATA = "app.models:SQLModel.metadata"
TIMEOUT = 120


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        lines = [ln for ln in self.out.splitlines() if ln.strip()]
        assert len(lines) == 1, f"--json must print one line on stdout, got {self.out!r}"
        data = json.loads(lines[0])
        assert isinstance(data, dict)
        return data

    @property
    def text(self) -> str:
        return self.out + self.err

    def describe(self) -> str:
        return f"{' '.join(self.args)} -> {self.code}\nstdout:\n{self.out[-2000:]}\nstderr:\n{self.err[-3000:]}"


def make_project(tmp: Path) -> Path:
    project = tmp / "my project"
    ignore = shutil.ignore_patterns("__pycache__", "harness.py")
    shutil.copytree(HERE, project, ignore=ignore)
    shutil.copy(SKILL / "templates" / "base_model.py", project / "app" / "base_model.py")
    return project


def environment(url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    env["PYTHON"] = sys.executable
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(extra)
    return env


def run(cmd: list[str], *, cwd: Path, url: str | None, **extra: str) -> Run:
    proc = subprocess.run(cmd, cwd=cwd, env=environment(url, **extra), capture_output=True, text=True, timeout=TIMEOUT)
    return Run(cmd, proc.returncode, proc.stdout, proc.stderr)


def script(name: str, *args: str, cwd: Path, url: str | None = None, **extra: str) -> Run:
    """``bash scripts/NAME.sh ARGS`` in ``cwd`` (the user's project) with DATABASE_URL=url."""
    return run(["bash", str(SCRIPTS / f"{name}.sh"), *args], cwd=cwd, url=url, **extra)


def alembic(*args: str, cwd: Path, url: str | None, **extra: str) -> Run:
    """The alembic command line, as the user runs it after setup."""
    return run([sys.executable, "-m", "alembic", *args], cwd=cwd, url=url, **extra)


def python(*args: str, cwd: Path, url: str | None, **extra: str) -> Run:
    return run([sys.executable, *args], cwd=cwd, url=url, **extra)


async def admin(url: str, sql: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@contextmanager
def user_database(server_url: str) -> Iterator[str]:
    """An empty database of its own for one test, as a URL string (dropped afterwards)."""
    base = make_url(server_url)
    backend = base.get_backend_name()
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="asp-sqlmodel-") as tmp:
            yield base.set(database=str(Path(tmp) / "app.db")).render_as_string(hide_password=False)
        return
    name = f"smt_{secrets.token_hex(4)}"
    admin_url = base.render_as_string(hide_password=False)
    quoted = f'"{name}"' if backend == "postgresql" else f"`{name}`"
    asyncio.run(admin(admin_url, f"CREATE DATABASE {quoted}"))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        force = " WITH (FORCE)" if backend == "postgresql" else ""
        asyncio.run(admin(admin_url, f"DROP DATABASE IF EXISTS {quoted}{force}"))

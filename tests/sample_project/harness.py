"""Helpers for the Alembic script tests: a copy of the sample project, script and alembic runs.

``make_project(tmp)`` copies sample_app/ to ``tmp/"my project"`` (a path with a space) and adds
templates/base_model.py as sample_app/base_model.py, the way a user copies the template.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SKILL = Path(__file__).resolve().parents[2]
SCRIPTS = SKILL / "scripts"
SAMPLE_APP = Path(__file__).resolve().parent / "sample_app"
METADATA = "sample_app.models:Base.metadata"
PASSWORD = "Sekr3t%Pa55-XYZ"  # distinctive; '%' also proves the ConfigParser escaping
PASSWORD_MARKERS = ("Sekr3t", "Pa55-XYZ")


@dataclass
class Run:
    args: list[str]
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict[str, Any]:
        lines = [ln for ln in self.out.splitlines() if ln.strip()]
        assert len(lines) == 1, f"--json must print exactly one line on stdout, got {self.out!r}"
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
    shutil.copytree(SAMPLE_APP, project / "sample_app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SKILL / "templates" / "base_model.py", project / "sample_app" / "base_model.py")
    return project


def environment(url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    env["PYTHON"] = sys.executable
    if url is not None:
        env["DATABASE_URL"] = url
    env.update(extra)
    return env


def script(name: str, *args: str, cwd: Path, url: str | None = None, timeout: float = 90, **extra: str) -> Run:
    """``bash scripts/NAME.sh ARGS`` in ``cwd`` (the user's project) with DATABASE_URL=url."""
    cmd = ["bash", str(SCRIPTS / f"{name}.sh"), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=environment(url, **extra), capture_output=True, text=True, timeout=timeout)
    return Run(cmd, proc.returncode, proc.stdout, proc.stderr)


def alembic(*args: str, cwd: Path, url: str | None, timeout: float = 90) -> Run:
    """The alembic command line, as the user runs it after setup."""
    cmd = [sys.executable, "-m", "alembic", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=environment(url), capture_output=True, text=True, timeout=timeout)
    return Run(cmd, proc.returncode, proc.stdout, proc.stderr)


def edit_models(project: Path, marker: str, replacement: str) -> None:
    """Replace the ``# edit: MARKER`` line (or any exact line) of sample_app/models.py."""
    path = project / "sample_app" / "models.py"
    text = path.read_text()
    pattern = re.compile(rf"^[ \t]*# edit: {re.escape(marker)}[ \t]*$" if not marker.startswith("=") else
                         rf"^.*{re.escape(marker[1:])}.*$", re.MULTILINE)
    new, count = pattern.subn(lambda m: replacement, text)
    assert count == 1, f"marker {marker!r} not found once in models.py"
    path.write_text(new)


def revision_files(project: Path, directory: str = "alembic") -> list[Path]:
    return sorted((project / directory / "versions").glob("*.py"))

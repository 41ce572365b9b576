"""The skills installer (`npx skills add`) installs this folder for Claude Code intact."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("REQUIRE_ALL_BACKENDS", "").strip() not in ("", "0", "false", "no")
SHIPPED_IGNORE = shutil.ignore_patterns(".venv*", ".git", "node_modules", "__pycache__", ".ci", "*.egg-info", "build")


def skills_command() -> list[str]:
    local = shutil.which("skills")
    if local:
        return [local]
    msg = "the `skills` installer is not available: npm install skills and put node_modules/.bin on PATH (.ci/run does)"
    if REQUIRE_ALL:
        pytest.fail(msg)
    pytest.skip(msg)


def test_skills_add_installs_for_claude_code(tmp_path: Path) -> None:
    cmd = skills_command()
    source = tmp_path / "src" / "async-sqlalchemy-patterns"
    shutil.copytree(ROOT, source, ignore=SHIPPED_IGNORE)
    project = tmp_path / "user project"
    project.mkdir()
    env = dict(os.environ, DISABLE_TELEMETRY="1", DO_NOT_TRACK="1", CI="1")
    proc = subprocess.run(
        [*cmd, "add", str(source), "-a", "claude-code", "-y", "--copy"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    installed = project / ".claude" / "skills" / "async-sqlalchemy-patterns"
    assert (installed / "SKILL.md").read_bytes() == (ROOT / "SKILL.md").read_bytes()
    scripts = sorted((ROOT / "scripts").glob("*.sh"))
    assert scripts, "no scripts to install"
    for script in scripts:
        copied = installed / "scripts" / script.name
        assert copied.is_file(), f"{script.name} was not installed"
        assert os.access(copied, os.X_OK), f"{script.name} lost its run bit in the install"
    for folder in ("templates", "examples", "references"):
        for f in (ROOT / folder).glob("*"):
            if f.is_file():
                assert (installed / folder / f.name).is_file(), f"{folder}/{f.name} was not installed"
    helper = installed / "scripts" / "test-connection.sh"
    if (ROOT / "scripts" / "test-connection.sh").exists():
        run = subprocess.run(["bash", str(helper), "--help"], cwd=project, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr[-1000:]
        assert "usage" in run.stdout.lower()

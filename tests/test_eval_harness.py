"""The eval harness (evals/harness): working copies hold only the project (and, with the skill,
only what the skill ships), and the first message never names the cause, the grader or the skill's
files; the offline variant offers no database server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HARNESS = ROOT / "evals" / "harness"
TASKS = sorted(p.name for p in (ROOT / "evals" / "tasks").iterdir() if (p / "prompt.md").exists())


def run(args: list[str], runs: Path) -> str:
    env = {**os.environ, "RUNS_DIR": str(runs)}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("arm", ["with-skill", "without-skill"])
def test_working_copy_and_prompt(arm: str, tmp_path: Path) -> None:
    task = "ticket-oversell"
    path = Path(run(["bash", str(HARNESS / "make_run.sh"), task, arm, "1"], tmp_path).strip())
    assert path == tmp_path / task / f"{arm}-1"
    project = {
        p.relative_to(ROOT / "evals" / "tasks" / task / "project")
        for p in (ROOT / "evals" / "tasks" / task / "project").rglob("*")
        if p.is_file()
    }
    copied = {
        p.relative_to(path)
        for p in path.rglob("*")
        if p.is_file() and ".git" not in p.parts and ".claude" not in p.parts
    }
    assert copied == project
    skill = path / ".claude" / "skills" / "async-sqlalchemy-patterns"
    if arm == "with-skill":
        assert sorted(p.name for p in skill.iterdir()) == sorted(
            ["SKILL.md", "LICENSE", "templates", "examples", "references", "scripts"]
        )
        assert not list(skill.rglob("grade.py")) and not list(skill.rglob("__pycache__"))
    else:
        assert not skill.exists()
    text = run([sys.executable, str(HARNESS / "prompt.py"), task, arm, "1"], tmp_path)
    assert text.endswith((ROOT / "evals" / "tasks" / task / "prompt.md").read_text(encoding="utf-8") + "\n")
    assert ("async-sqlalchemy-patterns" in text) == (arm == "with-skill")
    for word in ("grade.py", "reference/", "naive/", "BEGIN IMMEDIATE"):
        assert word not in text


@pytest.mark.parametrize("task", TASKS)
def test_offline_prompt_offers_no_server(task: str, tmp_path: Path) -> None:
    run(["bash", str(HARNESS / "make_run.sh"), task, "without-skill", "1"], tmp_path)
    text = run([sys.executable, str(HARNESS / "prompt.py"), task, "without-skill", "1", "--offline"], tmp_path)
    assert "TEST_POSTGRES_URL" not in text and "TEST_MYSQL_URL" not in text
    assert "they are shared" not in text.lower() and "leave everything else alone" not in text
    assert "No PostgreSQL or MariaDB server is available" in text
    assert "--- The user's request ---" in text


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "RUNS_DIR": str(tmp_path)}
    for args in (
        ["bash", str(HARNESS / "make_run.sh"), "no-such-task", "with-skill", "1"],
        ["bash", str(HARNESS / "make_run.sh"), "ticket-oversell", "both", "1"],
        [sys.executable, str(HARNESS / "prompt.py"), "ticket-oversell", "with-skill"],
    ):
        assert subprocess.run(args, capture_output=True, env=env, cwd=ROOT).returncode == 2

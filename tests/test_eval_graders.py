"""The task evals' graders are code, so they are tested (evals/README.md describes the evals).

For every task in ``evals/tasks/*/task.json``:
- its ``reference/`` passes its ``grade.py`` (exit 0, every check PASS) on every backend the task
  needs;
- its ``naive/`` fails (exit 1) with a FAIL line for each check ``task.json`` names under
  ``naive_fails``, on each backend listed there.

Backends come from tests/conftest.py's ``backend`` fixture; the backends a task does not use are
deselected with ``only_backends``, so CI reports no skips for them. Without a server URL the
server cases skip naming the variable; ``REQUIRE_ALL_BACKENDS=1`` turns that (and a missing
pgbouncer, grader exit code 4) into failures. Graders run in subprocesses, four at a time: the
first grader test starts every selected grader run whose backend has a server URL, each test then
waits for its own.

The task folders' shape is checked without any database.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "evals" / "tasks"
TASKS = sorted(p.parent.name for p in TASKS_DIR.glob("*/task.json"))
REQUIRE_ALL = os.environ.get("REQUIRE_ALL_BACKENDS", "").strip() not in ("", "0", "false", "no")
NAIVE_MARKER = "DELIBERATELY WRONG example for the evals"
SERVER_VARS = {"sqlite": None, "postgresql": "TEST_POSTGRES_URL", "mysql": "TEST_MYSQL_URL"}
SLOW = {"mysql-stream-while-writing", "pgbouncer-prepared-statements", "legacy-app-review", "db-restart-503"}
GRADER_TIMEOUT = 900  # hang guard for one grader run; they take seconds
PARALLEL_GRADERS = 4  # they mostly wait on databases and HTTP


def meta(task: str) -> dict:  # type: ignore[type-arg]
    return json.loads((TASKS_DIR / task / "task.json").read_text())  # type: ignore[no-any-return]


def grader_checks(task: str) -> list[str]:
    """The CHECKS list of a grade.py, read without importing it."""
    tree = ast.parse((TASKS_DIR / task / "grade.py").read_text())
    names: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values: list[str] = []
            if isinstance(node.value, ast.List):
                for element in node.value.elts:
                    if isinstance(element, ast.Constant) and isinstance(element.value, str):
                        values.append(element.value)
                    elif isinstance(element, ast.Starred) and isinstance(element.value, ast.Name):
                        values += names.get(element.value.id, [])
                names[node.targets[0].id] = values
    return names.get("CHECKS", [])


@dataclass
class Run:
    code: int
    out: str
    err: str

    def lines(self, word: str) -> list[str]:
        return [line for line in self.out.splitlines() if line.startswith(word + " ")]

    def describe(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.out[-3000:]}\nstderr:\n{self.err[-2000:]}"


def run_grader(task: str, solution: str, backend: str) -> Run:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PYTHONPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, str(TASKS_DIR / task / "grade.py"), str(TASKS_DIR / task / solution), "--backend", backend]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=GRADER_TIMEOUT, env=env, cwd=ROOT)
    except subprocess.TimeoutExpired as exc:
        return Run(-1, str(exc.stdout or ""), f"grader did not finish within {GRADER_TIMEOUT}s")
    return Run(proc.returncode, proc.stdout, proc.stderr)


def cases() -> list[tuple[str, str, list[str]]]:
    """(task, solution, backends) for every grader run this file makes."""
    out = []
    for task in TASKS:
        info = meta(task)
        out.append((task, "reference", list(info["backends"])))
        out.append((task, "naive", sorted(info["naive_fails"])))
    return out


class GraderRuns:
    """Starts the selected grader runs in a bounded pool on first use, hands out the results."""

    def __init__(self, selected: set[tuple[str, str, str]]) -> None:
        self.selected = selected  # (task, solution, backend) of the test_grader items of this run
        self.pool = ThreadPoolExecutor(PARALLEL_GRADERS, thread_name_prefix="grader")
        self.futures: dict[tuple[str, str, str], Future[Run]] = {}

    def start(self) -> None:
        configured = {b for b, var in SERVER_VARS.items() if var is None or os.environ.get(var)}
        # Slow ones first: the pool then ends with short runs instead of one long straggler.
        for key in sorted(self.selected, key=lambda k: (k[0] not in SLOW, k)):
            if key[2] in configured:
                self.futures[key] = self.pool.submit(run_grader, *key)

    def result(self, task: str, solution: str, backend: str) -> Run:
        if not self.futures:
            self.start()
        if (task, solution, backend) not in self.futures:
            self.futures[(task, solution, backend)] = self.pool.submit(run_grader, task, solution, backend)
        return self.futures[(task, solution, backend)].result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def grader_runs(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    selected = set()
    for item in request.session.items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if getattr(item, "originalname", "") == "test_grader" and {"task", "solution", "backend"} <= set(params):
            selected.add((params["task"], params["solution"], params["backend"]))
    runs = GraderRuns(selected)
    try:
        yield runs
    finally:
        runs.close()


@pytest.mark.parametrize(
    ("task", "solution"),
    [pytest.param(t, s, id=f"{t}-{s}", marks=pytest.mark.only_backends(*b)) for t, s, b in cases()],
)
def test_grader(task: str, solution: str, backend: str, grader_runs: GraderRuns) -> None:
    run = grader_runs.result(task, solution, backend)
    if run.code == 4:
        reason = "; ".join(run.lines("SKIP")) or run.describe()
        if REQUIRE_ALL:
            pytest.fail(f"REQUIRE_ALL_BACKENDS=1 but the grader could not run: {reason}", pytrace=False)
        pytest.skip(reason)
    checks = grader_checks(task)
    assert re.search(r"^score \d+/\d+$", run.out, re.M), run.describe()
    reported = {re.sub(r"^(PASS|FAIL) (\S+?)\[.*", r"\2", line) for line in run.lines("PASS") + run.lines("FAIL")}
    assert reported == set(checks), f"the grader reported {sorted(reported)}, its CHECKS are {checks}\n{run.describe()}"
    if solution == "reference":
        assert run.code == 0 and not run.lines("FAIL"), run.describe()
        assert len(run.lines("PASS")) == len(checks), run.describe()
    else:
        assert run.code == 1, run.describe()
        assert "grader stopped" not in run.out, f"the grader broke instead of judging\n{run.describe()}"
        failed = {line.split(" ", 2)[1].rstrip(":") for line in run.lines("FAIL")}
        for check in meta(task)["naive_fails"][backend]:
            assert f"{check}[{backend}]" in failed, (
                f"naive/ of {task} should FAIL {check} on {backend}\n{run.describe()}"
            )


# --- the shape of the task folders (no database) ----------------------------------------------


def test_there_are_enough_tasks() -> None:
    assert len(TASKS) >= 8, TASKS


@pytest.mark.parametrize("task", TASKS)
def test_task_folder_shape(task: str) -> None:
    folder = TASKS_DIR / task
    info = meta(task)
    assert info["name"] == task
    assert isinstance(info["summary"], str) and 20 <= len(info["summary"]) <= 200
    assert set(info["backends"]) <= {"sqlite", "postgresql", "mysql"} and info["backends"]
    assert info["naive_fails"] and set(info["naive_fails"]) <= set(info["backends"]), info["naive_fails"]
    checks = grader_checks(task)
    assert checks and len(set(checks)) == len(checks), checks
    for backend, failing in info["naive_fails"].items():
        assert failing and set(failing) <= set(checks), (backend, failing, checks)
    assert info["starts_from"] in ("project", "scratch")
    for name in ("prompt.md", "grade.py", "reference", "naive"):
        assert (folder / name).exists(), f"{task}/{name} is missing"
    if info["starts_from"] == "project":
        project = {p.relative_to(folder / "project") for p in (folder / "project").rglob("*") if p.is_file()}
        for solution in ("reference", "naive"):
            files = {p.relative_to(folder / solution) for p in (folder / solution).rglob("*") if p.is_file()}
            assert project <= files, f"{task}/{solution} lacks {sorted(map(str, project - files))}"
    else:
        assert not (folder / "project").exists()


@pytest.mark.parametrize("task", TASKS)
def test_prompt_names_symptoms_not_the_skill(task: str) -> None:
    prompt = (TASKS_DIR / task / "prompt.md").read_text()
    assert 300 <= len(prompt) <= 3000, len(prompt)
    for word in ("skill", "SKILL.md", "async-sqlalchemy-patterns", "reference/", "naive/", "grade.py"):
        assert word.lower() not in prompt.lower(), f"{task}/prompt.md mentions {word!r}"


@pytest.mark.parametrize("task", TASKS)
def test_naive_files_say_they_are_wrong(task: str) -> None:
    for path in sorted((TASKS_DIR / task / "naive").rglob("*")):
        if path.is_file():
            first = path.read_text().splitlines()[0]
            assert NAIVE_MARKER in first and "never copy" in first, f"{path.relative_to(ROOT)}: {first!r}"
    for path in sorted((TASKS_DIR / task).glob("*/**/*")):
        if path.is_file() and "naive" not in path.relative_to(TASKS_DIR / task).parts:
            assert NAIVE_MARKER not in path.read_text(), f"{path.relative_to(ROOT)} carries the naive marker"


def test_readme_and_results_list_every_task() -> None:
    readme = (ROOT / "evals" / "README.md").read_text()
    results = (ROOT / "evals" / "results.md").read_text()
    for task in TASKS:
        assert f"| `{task}` |" in readme, f"evals/README.md has no row for {task}"
        for arm in ("with-skill", "without-skill"):
            assert f"| `{task}` | {arm} |" in results, f"evals/results.md has no {arm} row for {task}"

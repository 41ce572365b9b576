"""Grader: the project's async test suite passes on PostgreSQL and MariaDB with one engine per run.

``python grade.py SOLUTION_DIR [--backend sqlite|postgresql|mysql]``. Runs the solution's own
pytest suite (``python -m pytest`` in a copy of the folder) with ``TEST_DATABASE_URL`` set to a
scratch database, after adding one test module of the grader's, written the way the team writes
new tests (plain ``async def test_...(session)`` functions and a test class, no markers). A
pytest plugin of the grader's counts the SQLAlchemy engines that connected during the run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

CHECKS = ["suite_passes", "suite_not_shrunk", "new_test_module_works", "one_engine_per_run"]
PROJECT_TESTS = 7  # tests in the project's own suite
MAX_ENGINES = 3  # one for the tests, perhaps an admin engine that creates/drops a scratch namespace

PROBE = '''"""Added by the grader: new tests written the plain way."""

from notes.repo import count_notes, create_note, list_notes


async def test_grader_probe_writes(session):
    await create_note(session, "probe", "written by the grader", tags=["probe"])
    assert [n.title for n in await list_notes(session)] == ["probe"]


async def test_grader_probe_sees_nothing_left_over(session):
    assert await count_notes(session) == 0


class TestGraderProbeClass:
    async def test_in_a_class(self, session):
        await create_note(session, "in a class")
        assert await count_notes(session) == 1
'''
PROBE_TESTS = 3

PLUGIN = '''"""Grader plugin: records how many distinct SQLAlchemy engines connected during the run."""
import json
import os

from sqlalchemy import event
from sqlalchemy.engine import Engine

ENGINES = {}


@event.listens_for(Engine, "engine_connect")
def seen(connection):
    ENGINES[id(connection.engine)] = connection.engine  # kept alive: ids are never reused


def pytest_sessionfinish(session, exitstatus):
    with open(os.environ["GRADER_ENGINE_REPORT"], "w") as fh:
        json.dump({"engines": len(ENGINES)}, fh)
'''


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    tests = solution / "tests"
    if not tests.is_dir():
        report.fail_rest("the solution has no tests/ folder")
        return
    (tests / "test_grader_probe.py").write_text(PROBE)
    with tempfile.TemporaryDirectory(prefix="evalgrade-plugin-") as plugin_dir:
        (Path(plugin_dir) / "grader_engine_count.py").write_text(PLUGIN)
        junit = Path(plugin_dir) / "junit.xml"
        engines_file = Path(plugin_dir) / "engines.json"
        async with gradelib.scratch_database(backend) as url:
            env = gradelib.child_env(TEST_DATABASE_URL=url, PYTHONPATH=os.pathsep.join([plugin_dir, str(solution)]),
                                     GRADER_ENGINE_REPORT=str(engines_file))
            # --tb=line: rendering the full tracebacks of a broken suite took longer than the run
            args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "grader_engine_count", "-p", "no:randomly",
                    "--tb=line", f"--junitxml={junit}", "-o", "junit_family=xunit2"]
            proc = gradelib.run_python(args, solution, env, timeout=600)
        if not junit.exists():
            report.fail_rest(f"pytest did not produce a report (exit {proc.returncode}): {gradelib.tail(proc)}")
            return
        cases = ET.parse(junit).getroot().iter("testcase")
        outcomes: dict[str, str] = {}
        for case in cases:
            state = "passed"
            for child in case:
                if child.tag in ("failure", "error"):
                    state = "failed"
                elif child.tag == "skipped" and state == "passed":
                    state = "skipped"
            outcomes[f"{case.get('classname')}::{case.get('name')}"] = state
        bad = {name: state for name, state in outcomes.items() if state != "passed"}
        report.check("suite_passes", proc.returncode == 0 and not bad,
                     f"pytest exited {proc.returncode}; {len(bad)} of {len(outcomes)} tests did not pass, e.g. "
                     f"{list(bad.items())[:2]}: {gradelib.tail(proc, 300)}")
        own = [name for name, state in outcomes.items() if "test_grader_probe" not in name and state == "passed"]
        report.check("suite_not_shrunk", len(own) >= PROJECT_TESTS,
                     f"{len(own)} of the project's tests passed; it has {PROJECT_TESTS}")
        probe = [name for name, state in outcomes.items() if "test_grader_probe" in name and state == "passed"]
        report.check("new_test_module_works", len(probe) == PROBE_TESTS,
                     f"{len(probe)} of {PROBE_TESTS} plain async tests in a new module passed "
                     f"({[s for n, s in outcomes.items() if 'test_grader_probe' in n]})")
        engines = json.loads(engines_file.read_text())["engines"] if engines_file.exists() else None
        report.check("one_engine_per_run", engines is not None and 1 <= engines <= MAX_ENGINES,
                     f"{engines} SQLAlchemy engines connected during the run (the suite should share one; "
                     f"at most {MAX_ENGINES} counted)")


TASK = gradelib.Task(checks=CHECKS, backends=("sqlite", "postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

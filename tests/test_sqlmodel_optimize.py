"""scripts/optimize-queries.sh on SQLModel code: runtime mode on the sample project's programs
(unchanged, on every backend) and static mode on SQLModel idioms.

Static mode reads SQLModel idioms: ``Relationship(...)`` (the lazy setting sits inside
``sa_relationship_kwargs``), ``await session.exec(...)`` and the ``sqlmodel.ext.asyncio`` import;
the false-positive guards next to those tests keep a sessionmaker or an eager load clean.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "sqlmodel_project"))
from harness import Run, make_project, script, user_database

pytestmark = pytest.mark.slow


def marked_lines(path: Path, rule: str, mode: str) -> set[int]:
    """Lines carrying ``# runtime: RULE`` / ``# static: RULE`` markers (as in tests/corpus)."""
    return {n for n, line in enumerate(path.read_text().splitlines(), 1) if "#" in line and f"{mode}: {rule}" in line}


def findings_of(run: Run, *, static: bool) -> list[dict[str, Any]]:
    if static:
        return run.json["findings"]
    line = [ln for ln in run.err.splitlines() if ln.startswith("{")][-1]
    return json.loads(line)["findings"]


# --------------------------------------------------------------------------- runtime


@pytest.mark.parametrize(("program", "expected"), [("report_nplus1.py", {"n_plus_one"}), ("report_eager.py", set())])
def test_runtime_on_a_sqlmodel_program(program: str, expected: set[str], server_url: str, tmp_path: Path) -> None:
    """`optimize-queries.sh -- python report.py`: SQLModel's AsyncSession.exec goes through the same
    engine events; the finding points at the user's line, not into sqlmodel's session module."""
    project = make_project(tmp_path)
    with user_database(server_url) as url:
        run = script("optimize-queries", "--json", "--", sys.executable, program, cwd=project, url=url)
    assert f"{program.removesuffix('.py')}: ok" in run.out, run.describe()
    findings = findings_of(run, static=False)
    assert {f["rule"] for f in findings} == expected, run.describe()
    assert run.code == (1 if expected else 0), run.describe()
    if expected:
        want = marked_lines(project / program, "n_plus_one", "runtime")
        assert {(f["file"], f["line"]) for f in findings} == {(program, line) for line in want}
        assert "selectinload(User.posts)" in findings[0]["fix"]


# --------------------------------------------------------------------------- static

ASYNC_HEADER = """\
import uuid

from sqlalchemy.orm import selectinload
from sqlmodel import Field, Relationship, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession
"""

MODELS = """\
class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    heroes: list["Hero"] = Relationship(back_populates="team", sa_relationship_kwargs={LAZY})


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    team_id: int | None = Field(default=None, foreign_key="team.id")
    team: Team | None = Relationship(back_populates="heroes", sa_relationship_kwargs={"lazy": "raise"})
"""


def static_run(tmp_path: Path, source: str) -> Run:
    path = tmp_path / "code" / "heroes.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(textwrap.dedent(source))
    run = script("optimize-queries", "--static", "code", "--json", cwd=tmp_path)
    assert run.code in (0, 1), run.describe()
    return run


def rules_at(run: Run) -> set[tuple[str, int]]:
    return {(f["rule"], f["line"]) for f in findings_of(run, static=True)}


def test_static_whole_sample_project(tmp_path: Path) -> None:
    """False-positive guard: the sample app (lazy="raise" relationships over several modules) and
    the selectinload report are clean."""
    project = make_project(tmp_path)
    run = script("optimize-queries", "--static", "app", "report_eager.py", "--json", cwd=project)
    assert run.code == 0 and findings_of(run, static=True) == [], run.describe()


def test_static_exec_in_a_loop_is_query_in_loop(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = script("optimize-queries", "--static", "app", "report_nplus1.py", "--json", cwd=project)
    want = marked_lines(project / "report_nplus1.py", "query_in_loop", "static")
    assert {(f["rule"], f["file"], f["line"]) for f in findings_of(run, static=True)} == {
        ("query_in_loop", "report_nplus1.py", line) for line in want
    }, run.describe()


def test_static_batched_exec_is_not_flagged(tmp_path: Path) -> None:
    """False-positive guard: one exec per batch of keys (``.in_(...)``) is the fix, not the bug."""
    run = static_run(
        tmp_path,
        ASYNC_HEADER
        + MODELS.replace("{LAZY}", '{"lazy": "raise"}')
        + """

async def names(session: AsyncSession, ids: list[int]) -> list[str]:
    out: list[str] = []
    for start in range(0, len(ids), 500):
        batch = ids[start : start + 500]
        out += (await session.exec(select(Team.name).where(Team.id.in_(batch)))).all()
    return out
""",
    )
    assert rules_at(run) == set(), run.describe()


def test_static_unloaded_relationship_read_is_lazy_load_in_async(tmp_path: Path) -> None:
    source = (
        ASYNC_HEADER
        + MODELS.replace("{LAZY}", '{"lazy": "raise"}')
        + """

async def roster(session: AsyncSession) -> dict[str, int]:
    teams = (await session.exec(select(Team))).all()
    sizes = {}
    for team in teams:
        sizes[team.name] = len(team.heroes)
    return sizes
"""
    )
    run = static_run(tmp_path, source)
    line = next(n for n, text in enumerate(source.splitlines(), 1) if "len(team.heroes)" in text)
    assert rules_at(run) == {("lazy_load_in_async", line)}, run.describe()


def test_static_loaded_relationship_read_is_clean(tmp_path: Path) -> None:
    """False-positive guard: the same read after ``selectinload(Team.heroes)``."""
    run = static_run(
        tmp_path,
        ASYNC_HEADER
        + MODELS.replace("{LAZY}", '{"lazy": "raise"}')
        + """

async def roster(session: AsyncSession) -> dict[str, int]:
    teams = (await session.exec(select(Team).options(selectinload(Team.heroes)))).all()
    sizes = {}
    for team in teams:
        sizes[team.name] = len(team.heroes)
    return sizes
""",
    )
    assert rules_at(run) == set(), run.describe()


def test_static_relationship_without_lazy_in_async_code(tmp_path: Path) -> None:
    source = ASYNC_HEADER + MODELS.replace(", sa_relationship_kwargs={LAZY}", "")
    run = static_run(tmp_path, source)
    line = next(n for n, text in enumerate(source.splitlines(), 1) if 'heroes: list["Hero"]' in text)
    assert rules_at(run) == {("relationship_without_lazy", line)}, run.describe()


@pytest.mark.parametrize("lazy", ['{"lazy": "raise"}', '{"lazy": "selectin"}', 'dict(lazy="raise")'])
def test_static_relationship_with_lazy_is_clean(lazy: str, tmp_path: Path) -> None:
    """False-positive guard: a lazy setting inside sa_relationship_kwargs counts."""
    run = static_run(tmp_path, ASYNC_HEADER + MODELS.replace("{LAZY}", lazy))
    assert rules_at(run) == set(), run.describe()


def test_static_sync_sqlmodel_script_is_not_async_code(tmp_path: Path) -> None:
    """Near miss: sync SQLModel (``Session``, default lazy loading) is not this skill's problem."""
    run = static_run(
        tmp_path,
        """\
from sqlmodel import Field, Relationship, Session, SQLModel, create_engine, select


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    heroes: list["Hero"] = Relationship(back_populates="team")


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    team_id: int | None = Field(default=None, foreign_key="team.id")
    team: Team | None = Relationship(back_populates="heroes")


def main() -> None:
    with Session(create_engine("sqlite://")) as session:
        for team in session.exec(select(Team)).all():
            print(len(team.heroes))
""",
    )
    assert rules_at(run) == set(), run.describe()

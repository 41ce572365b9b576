"""scripts/generate-migration.sh on every backend, against a copy of tests/sample_project.

Each test gets its own scratch database (a temp SQLite file, or a database created on the
server and dropped afterwards), used as the user's DATABASE_URL. On PostgreSQL and MariaDB the URL
carries a distinctive password (with a '%'): it must never appear in any output.
"""

from __future__ import annotations

import ast
import asyncio
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_project.harness import (
    METADATA,
    PASSWORD,
    PASSWORD_MARKERS,
    SCRIPTS,
    Run,
    alembic,
    edit_models,
    make_project,
    revision_files,
    script,
)

sys.path.insert(0, str(SCRIPTS))
from scratch_db import admin_execute, scratch_database

pytestmark = pytest.mark.slow


@pytest.fixture
def user_db(server_url: str, backend: str) -> Iterator[str]:
    """A fresh, empty database as the user's DATABASE_URL (dropped afterwards).

    PostgreSQL: the URL gets PASSWORD (loopback trust auth accepts any). MariaDB: a user of its own
    with PASSWORD, allowed on this database and on the roundtrip's scratch databases.
    """
    base = make_url(server_url)
    if backend == "postgresql":
        base = base.set(password=PASSWORD)
    with scratch_database(base) as url:
        if backend != "mysql":
            yield url.render_as_string(hide_password=False)
            return
        user = f"asp_pw_{secrets.token_hex(3)}"
        for sql in (
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'",
            f"GRANT ALL ON `{url.database}`.* TO '{user}'@'%'",
            f"GRANT ALL ON `alembic\\_roundtrip\\_%`.* TO '{user}'@'%'",
        ):
            asyncio.run(admin_execute(base, sql))
        try:
            yield url.set(username=user, password=PASSWORD).render_as_string(hide_password=False)
        finally:
            asyncio.run(admin_execute(base, f"DROP USER IF EXISTS '{user}'@'%'"))


class Outputs:
    """Every run of a test, so one assertion can check that no password leaked anywhere."""

    def __init__(self) -> None:
        self.runs: list[Run] = []

    def __call__(self, run: Run, expected: int = 0) -> Run:
        self.runs.append(run)
        assert run.code == expected, run.describe()
        assert "Traceback (most recent call last)" not in run.text, run.describe()
        return run

    def assert_no_password(self) -> None:
        for run in self.runs:
            for marker in PASSWORD_MARKERS:
                assert marker not in run.text, f"password leaked in: {run.describe()}"


def created_tables(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    upgrade = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "upgrade")
    return {
        node.args[0].value
        for node in ast.walk(upgrade)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "create_table"
        and isinstance(node.args[0], ast.Constant)
    }


def initial_revision(project: Path, url: str, check: Outputs) -> dict:
    check(script("setup-alembic", "--metadata", METADATA, cwd=project))
    result = check(script("generate-migration", "init", "--json", cwd=project, url=url)).json
    check(alembic("upgrade", "head", cwd=project, url=url))
    return result


def test_lifecycle(user_db: str, backend: str, tmp_path: Path) -> None:
    check, project, url = Outputs(), make_project(tmp_path), user_db

    setup = check(script("setup-alembic", "--metadata", METADATA, "--json", cwd=project)).json
    assert setup["changed"] is True
    again = check(script("setup-alembic", "--metadata", METADATA, "--json", cwd=project)).json
    assert again["changed"] is False and {f["action"] for f in again["files"]} == {"unchanged"}

    init = check(script("generate-migration", "init", "--json", cwd=project, url=url)).json
    first = Path(init["revision_file"])
    assert revision_files(project) == [first]
    assert created_tables(first) == {"sp_authors", "sp_books"}
    assert init["operations"].count("create_table") == 2 and init["warnings"] == []
    assert first.name[:8].isdigit() and first.name.endswith("_init.py"), first.name  # date + slug

    # not applied yet: autogenerate would compare against an outdated schema -> refused
    behind = check(script("generate-migration", "more", cwd=project, url=url), expected=1)
    assert "alembic upgrade head" in behind.err and len(revision_files(project)) == 1

    check(alembic("upgrade", "head", cwd=project, url=url))
    drift = check(alembic("check", cwd=project, url=url))
    assert "No new upgrade operations detected" in drift.text

    nothing = check(script("generate-migration", "nothing changed", "--json", cwd=project, url=url)).json
    assert nothing["revision_file"] is None and nothing["operations"] == []
    assert revision_files(project) == [first]

    edit_models(project, "book columns", "    isbn: Mapped[str | None] = mapped_column(String(20))")
    added = check(script("generate-migration", "add isbn", "--json", "--roundtrip", cwd=project, url=url)).json
    assert added["operations"] == ["add_column"], added
    assert added["operation_details"][0]["table"] == "sp_books" and added["operation_details"][0]["column"] == "isbn"
    assert added["warnings"] == [] and added["roundtrip"]["ok"] is True, added
    if backend == "sqlite":
        assert "batch_alter_table" in Path(added["revision_file"]).read_text()

    check(alembic("upgrade", "head", cwd=project, url=url))
    check(alembic("downgrade", "-1", cwd=project, url=url))
    check(alembic("upgrade", "head", cwd=project, url=url))
    check(alembic("check", cwd=project, url=url))

    edit_models(project, "=isbn: Mapped", "    # edit: book columns")
    dropped = check(script("generate-migration", "drop isbn", "--json", "--strict", cwd=project, url=url), expected=1)
    result = dropped.json
    assert result["operations"] == ["drop_column"]
    assert [w["rule"] for w in result["warnings"]] == ["drop_column"]
    assert isinstance(result["warnings"][0]["line"], int) and result["ok"] is False
    assert Path(result["revision_file"]).is_file()  # --strict keeps the file for editing
    check.assert_no_password()


def test_risky_changes_are_flagged(user_db: str, backend: str, tmp_path: Path) -> None:
    check, project, url = Outputs(), make_project(tmp_path), user_db
    initial_revision(project, url, check)

    edit_models(project, "=title: Mapped[str]", "    headline: Mapped[str] = mapped_column(String(200))")  # a rename
    edit_models(project, "=name: Mapped[str]", "    name: Mapped[str] = mapped_column(String(150), unique=True)")
    edit_models(project, "author columns", "    country: Mapped[str] = mapped_column(String(2))")
    edit_models(
        project,
        "more tables",
        """\
import enum
from sqlalchemy import Enum, Index


class SpMood(enum.Enum):
    happy = "happy"
    sad = "sad"


class SpReview(Base):
    __tablename__ = "sp_reviews"

    id: Mapped[int] = mapped_column(primary_key=True)
    mood: Mapped[SpMood] = mapped_column(Enum(SpMood, name="sp_mood"))


Index("ix_sp_books_author_title", SpBook.author_id, SpBook.headline)
""",
    )
    run = script("generate-migration", "risky", "--json", "--roundtrip", cwd=project, url=url)
    check(run, expected=1 if backend == "postgresql" else 0)
    result = run.json
    rules = {w["rule"] for w in result["warnings"]}
    # the downgrade re-adds title NOT NULL without a default and narrows name back to 100: both fail on real rows
    expected = {
        "drop_column",
        "rename_suspected",
        "not_null_without_default",
        "downgrade_not_null_without_default",
        "downgrade_type_change",
    }
    if backend == "sqlite":
        expected |= {"type_change"}  # widening 100 -> 150: batch mode copies the table
    else:  # widening 100 -> 150 rewrites nothing on PostgreSQL, extends in place on MySQL/MariaDB: a note
        assert [n["rule"] for n in result["notes"]] == ["type_change"], result["notes"]
    if backend == "postgresql":
        expected |= {"enum_change", "index_not_concurrent"}
    assert rules == expected, [(w["rule"], w["line"], w["message"][:150]) for w in result["warnings"]]
    lines = Path(result["revision_file"]).read_text().splitlines()
    for warning in result["warnings"]:
        assert 0 < warning["line"] <= len(lines)
    rename = next(w for w in result["warnings"] if w["rule"] == "rename_suspected")
    assert "title" in rename["message"] and "headline" in rename["message"]
    if backend == "postgresql":
        # drop_table in the downgrade leaves the enum type behind: the second upgrade fails
        assert result["roundtrip"]["failed_step"] == "upgrade head again", result["roundtrip"]
        assert "sp_mood" in result["roundtrip"]["error"]
    else:
        assert result["roundtrip"]["ok"] is True, result["roundtrip"]
    check.assert_no_password()


def test_human_output_and_empty_downgrade(user_db: str, tmp_path: Path) -> None:
    check, project, url = Outputs(), make_project(tmp_path), user_db
    initial_revision(project, url, check)
    edit_models(
        project,
        "more tables",
        """\
class SpShelf(Base):
    __tablename__ = "sp_shelves"

    id: Mapped[int] = mapped_column(primary_key=True)
""",
    )
    edit_models(project, '=__tablename__ = "sp_books"', '    __tablename__ = "sp_books_v2"')  # drop + create
    run = check(script("generate-migration", "shelves", cwd=project, url=url))
    assert run.out.startswith("created ") and "operations (" in run.out
    assert "[drop_table]" in run.out
    path = project / run.out.splitlines()[0].removeprefix("created ")  # shown relative to the cwd
    assert path in revision_files(project)
    text = path.read_text()
    body = text[: text.index("def downgrade() -> None:")] + "def downgrade() -> None:\n    pass\n"
    path.write_text(body)
    sys.path.insert(0, str(SCRIPTS))
    from revision_review import review_revision

    review = review_revision(path, make_url(url).get_backend_name())
    assert "empty_downgrade" in {w.rule for w in review.warnings}
    check.assert_no_password()


def test_unreachable_database_fails_cleanly(backend: str, tmp_path: Path) -> None:
    """Connection errors: exit 1, one line, no traceback, no password."""
    check, project = Outputs(), make_project(tmp_path)
    check(script("setup-alembic", "--metadata", METADATA, cwd=project))
    urls = {
        "sqlite": f"postgresql+asyncpg://app:{PASSWORD.replace('%', '%25')}@127.0.0.1:9/app",  # nothing listens on 9
        "postgresql": f"postgresql+asyncpg://postgres:{PASSWORD.replace('%', '%25')}@127.0.0.1:9/test",
        "mysql": f"mysql+aiomysql://root:{PASSWORD.replace('%', '%25')}@127.0.0.1:3306/test",  # wrong password
    }
    run = check(script("generate-migration", "x", "--url", urls[backend], cwd=project), expected=1)
    errors = [ln for ln in run.err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and run.out == "", run.describe()
    json_run = check(script("generate-migration", "x", "--json", cwd=project, url=urls[backend]), expected=1)
    assert json_run.json["exit_code"] == 1 and json_run.json["revision_file"] is None
    assert revision_files(project) == []
    check.assert_no_password()


@pytest.mark.only_backends("postgresql")  # PostgreSQL named enum types only
def test_enum_column_on_postgresql(user_db: str, backend: str, tmp_path: Path) -> None:
    """op.add_column with a new Enum does not CREATE TYPE on PostgreSQL: flagged, and --roundtrip shows it fail."""
    check, project, url = Outputs(), make_project(tmp_path), user_db
    initial_revision(project, url, check)
    edit_models(
        project,
        "=from sqlalchemy import ForeignKey, String",
        "import enum\n\nfrom sqlalchemy import Enum, ForeignKey, String\n\n\nclass SpKind(enum.Enum):\n"
        '    paper = "paper"\n    ebook = "ebook"\n',
    )
    edit_models(
        project, "book columns", '    kind: Mapped[SpKind | None] = mapped_column(Enum(SpKind, name="sp_kind"))'
    )
    run = check(script("generate-migration", "book kind", "--json", "--roundtrip", cwd=project, url=url), expected=1)
    result = run.json
    assert result["operations"] == ["add_column"]
    assert [w["rule"] for w in result["warnings"]] == ["enum_change"]
    assert "does not create it" in result["warnings"][0]["message"]
    assert result["roundtrip"]["failed_step"] == "upgrade head" and "does not exist" in result["roundtrip"]["error"]
    check.assert_no_password()

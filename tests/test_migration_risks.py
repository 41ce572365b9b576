"""What generate-migration warns about, confirmed on a populated database (PostgreSQL, MariaDB).

The sample project gets rows, then a change; the warnings must name the risk, and running the
revision against those rows must show it: a unique constraint fails on duplicates, a downgrade
that re-adds a NOT NULL column fails, an enum value the database lacks cannot be inserted. On
PostgreSQL the relfilenode proves which ALTERs rewrite the table and pg_locks which tables an
added foreign key locks.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_project.harness import METADATA, SCRIPTS, Run, alembic, edit_models, make_project, script

sys.path.insert(0, str(SCRIPTS))
from scratch_db import scratch_database

pytestmark = [pytest.mark.slow, pytest.mark.only_backends("postgresql", "mysql")]


@pytest.fixture
def user_db(server_url: str) -> Iterator[str]:
    with scratch_database(make_url(server_url)) as url:
        yield url.render_as_string(hide_password=False)


def ok(run: Run, expected: int = 0) -> Run:
    assert run.code == expected, run.describe()
    if run.args[1:3] != ["-m", "alembic"]:  # our scripts never print a traceback; alembic's CLI does
        assert "Traceback (most recent call last)" not in run.text, run.describe()
    return run


def sql(url: str, *statements: str) -> list[Any]:
    """Run statements in one transaction; the result of the last one (rows, or [] for DDL/DML)."""

    async def run() -> list[Any]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                result = None
                for statement in statements:
                    result = await conn.execute(text(statement))
                return list(result.all()) if result is not None and result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def relfilenode(url: str, table: str) -> int:
    return int(sql(url, f"SELECT relfilenode FROM pg_class WHERE oid = '{table}'::regclass")[0][0])


def setup_with_rows(project: Path, url: str) -> None:
    ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    ok(script("generate-migration", "init", cwd=project, url=url))
    ok(alembic("upgrade", "head", cwd=project, url=url))
    sql(
        url,
        "INSERT INTO sp_authors (id, name, created_at, updated_at) VALUES "
        "(1, 'ann', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP), (2, 'bob', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        "INSERT INTO sp_books (id, author_id, title) VALUES (1, 1, 'same'), (2, 1, 'same'), (3, 2, 'other')",
    )


def test_constraints_on_a_populated_table(user_db: str, backend: str, tmp_path: Path) -> None:
    """FK + unique + VARCHAR widening on sp_books with rows; then the downgrade that re-adds a NOT NULL column."""
    project, url = make_project(tmp_path), user_db
    setup_with_rows(project, url)
    edit_models(project, "=title: Mapped[str]", "    title: Mapped[str] = mapped_column(String(250), unique=True)")
    edit_models(
        project, "book columns", '    editor_id: Mapped[int | None] = mapped_column(ForeignKey("sp_authors.id"))'
    )
    result = ok(script("generate-migration", "editor and unique title", "--json", cwd=project, url=url)).json
    rules = [w["rule"] for w in result["warnings"]]
    assert sorted(rules) == ["add_foreign_key", "add_unique_constraint", "downgrade_type_change"], result["warnings"]
    # widening 200 -> 250 is a note: no rewrite on PostgreSQL, in place on MariaDB (2-byte length prefix either way)
    assert [n["rule"] for n in result["notes"]] == ["type_change"], result["notes"]
    before = relfilenode(url, "sp_books") if backend == "postgresql" else None

    failed = ok(alembic("upgrade", "head", cwd=project, url=url), expected=1)  # the duplicate titles
    assert ("could not create unique index" if backend == "postgresql" else "Duplicate entry") in failed.text
    sql(url, "DELETE FROM sp_books WHERE id = 2")
    if backend == "mysql":  # no transactional DDL: the failed revision left its first steps applied
        sql(url, "ALTER TABLE sp_books DROP COLUMN editor_id")
    ok(alembic("upgrade", "head", cwd=project, url=url))
    if backend == "postgresql":
        assert relfilenode(url, "sp_books") == before  # VARCHAR(200) -> VARCHAR(250): the table was not rewritten

    # drop the NOT NULL title: its data cannot come back, and the downgrade fails on the remaining rows
    edit_models(project, "=title: Mapped[str]", "    # edit: gone")
    dropped = ok(script("generate-migration", "drop title", "--json", cwd=project, url=url)).json
    rules = [w["rule"] for w in dropped["warnings"]]
    assert "drop_column" in rules and "downgrade_not_null_without_default" in rules, dropped["warnings"]
    assert "cannot come back" in next(w["message"] for w in dropped["warnings"] if w["rule"] == "drop_column")
    ok(alembic("upgrade", "head", cwd=project, url=url))
    down = ok(alembic("downgrade", "-1", cwd=project, url=url), expected=1)
    # PostgreSQL refuses NULLs; MariaDB fills the column with '' and the re-added unique constraint then fails
    assert ("contains null values" if backend == "postgresql" else "Duplicate entry") in down.text, down.describe()


@pytest.mark.only_backends("postgresql")
def test_postgresql_rewrites_and_locks(user_db: str) -> None:
    """The facts behind type_change (rewrite or not) and add_foreign_key (locks both tables)."""
    sql(
        user_db,
        "CREATE TABLE rr_parent (id int PRIMARY KEY)",
        "INSERT INTO rr_parent SELECT generate_series(1, 50)",
        "CREATE TABLE rr_child (id int PRIMARY KEY, parent_id int, v varchar(100), n int)",
        "INSERT INTO rr_child SELECT g, g, 'x', g FROM generate_series(1, 50) g",
    )
    facts = {}
    for change in ("v TYPE varchar(200)", "v TYPE text", "v TYPE varchar", "v TYPE varchar(50)", "n TYPE bigint"):
        before = relfilenode(user_db, "rr_child")
        sql(user_db, f"ALTER TABLE rr_child ALTER COLUMN {change}")
        facts[change] = relfilenode(user_db, "rr_child") != before
    assert facts == {
        "v TYPE varchar(200)": False,
        "v TYPE text": False,
        "v TYPE varchar": False,
        "v TYPE varchar(50)": True,
        "n TYPE bigint": True,
    }
    locks = sql(
        user_db,
        "ALTER TABLE rr_child ADD CONSTRAINT fk_rr FOREIGN KEY (parent_id) REFERENCES rr_parent (id)",
        "SELECT c.relname, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
        "WHERE l.pid = pg_backend_pid() AND c.relname IN ('rr_parent', 'rr_child') ORDER BY 1",
    )
    assert {("rr_child", "ShareRowExclusiveLock"), ("rr_parent", "ShareRowExclusiveLock")} <= set(locks), locks
    # the suggested form: NOT VALID skips the scan, VALIDATE CONSTRAINT takes a lock that lets writes through
    sql(user_db, "ALTER TABLE rr_child DROP CONSTRAINT fk_rr")
    locks = sql(
        user_db,
        "ALTER TABLE rr_child ADD CONSTRAINT fk_rr FOREIGN KEY (parent_id) REFERENCES rr_parent (id) NOT VALID",
        "ALTER TABLE rr_child VALIDATE CONSTRAINT fk_rr",
        "SELECT l.mode FROM pg_locks l WHERE l.pid = pg_backend_pid() AND l.relation = 'rr_child'::regclass",
    )
    assert ("ShareUpdateExclusiveLock",) in locks


ENUM_MODELS = """\
import enum

from sqlalchemy import Enum, ForeignKey, String


class SpFormat(enum.Enum):
    paper = "paper"
    ebook = "ebook"
    # edit: formats
"""


def test_enum_value_missing_in_the_database(user_db: str, backend: str, tmp_path: Path) -> None:
    """A value added to the Python Enum: autogenerate sees no change; generate-migration reports the drift."""
    project, url = make_project(tmp_path), user_db
    edit_models(project, "=from sqlalchemy import ForeignKey, String", ENUM_MODELS)
    edit_models(
        project,
        "book columns",
        '    fmt: Mapped[SpFormat] = mapped_column(Enum(SpFormat, name="sp_format"), server_default="paper")',
    )
    setup_with_rows(project, url)
    clean = ok(script("generate-migration", "nothing", "--json", cwd=project, url=url)).json
    assert clean["revision_file"] is None and clean["enum_drift"] == []

    edit_models(project, "formats", '    audio = "audio"')
    run = ok(
        script("generate-migration", "audio", "--json", cwd=project, url=url),
        expected=1 if backend == "postgresql" else 0,
    )
    result = run.json
    if backend == "mysql":
        # autogenerate compares MySQL ENUM columns itself: the revision holds the change, no drift is left over
        assert result["operations"] == ["alter_column"] and result["enum_drift"] == [], result
        Path(result["revision_file"]).unlink()
        (drift,) = asyncio.run(drift_in_process(project, url))  # what a setup without compare_type would miss
        assert drift.missing_in_database == ["audio"] and drift.tables == ["sp_books.fmt"]
        statement = drift.statements[0]
        assert statement == "ALTER TABLE sp_books MODIFY COLUMN fmt ENUM('paper', 'ebook', 'audio') NOT NULL"
    else:
        assert result["revision_file"] is None and result["operations"] == [], result  # autogenerate: "no changes"
        (drift,) = result["enum_drift"]
        assert drift["missing_in_database"] == ["audio"] and drift["columns"] == ["sp_books.fmt"]
        statement = drift["statements"][0]
        assert statement == "ALTER TYPE sp_format ADD VALUE IF NOT EXISTS 'audio' AFTER 'ebook'"
        human = ok(script("generate-migration", "audio", cwd=project, url=url), expected=1)
        assert "[enum_drift]" in human.out and statement in human.out

    with pytest.raises(Exception, match="audio|Data truncated"):  # the risk: the new value cannot be stored
        sql(url, "UPDATE sp_books SET fmt = 'audio' WHERE id = 1")
    if backend == "mysql":  # MySQL's MODIFY COLUMN restates the column: keep its default
        statement += " DEFAULT 'paper'"
    sql(url, statement)
    sql(url, "UPDATE sp_books SET fmt = 'audio' WHERE id = 1")
    fixed = ok(script("generate-migration", "audio", "--json", cwd=project, url=url)).json
    assert fixed["enum_drift"] == [] and fixed["revision_file"] is None, fixed


async def drift_in_process(project: Path, url: str) -> list[Any]:
    from enum_drift import enum_drift

    sys.path.insert(0, str(project))
    try:
        from sample_app.models import Base  # type: ignore[import-not-found]

        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(enum_drift, Base.metadata)
        finally:
            await engine.dispose()
    finally:
        sys.path.remove(str(project))
        for name in [m for m in sys.modules if m == "sample_app" or m.startswith("sample_app.")]:
            del sys.modules[name]

"""setup-alembic and generate-migration on a SQLModel project whose models live in several modules.

``SQLModel.metadata`` is empty until the modules defining ``table=True`` models are imported, and
``app/models/__init__.py`` here imports none of them (a common layout): setup must find them and
write ``import_models`` so env.py imports them, or autogenerate sees no model at all. SQLModel's
``AutoString`` must render so the revision imports and upgrades on every backend (MySQL/MariaDB
need a VARCHAR length), and SQLModel's MetaData has no naming convention: the unique constraint
autogenerate adds has no name, which generate-migration flags and --roundtrip shows failing.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

pytest.importorskip("sqlmodel")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_project.harness import SCRIPTS, Run, alembic, script

sys.path.insert(0, str(SCRIPTS))
from scratch_db import scratch_database

pytestmark = pytest.mark.slow

SPEC = "sqm_app.models:SQLModel.metadata"
USER = """\
from sqlmodel import Field, SQLModel


class SqmUser(SQLModel, table=True):
    __tablename__ = "sqm_users"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    email: str | None = Field(default=None, max_length=200)
    # edit
"""
POST = """\
import uuid

from sqlmodel import Field, SQLModel


class SqmPost(SQLModel, table=True):
    __tablename__ = "sqm_posts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    user_id: int = Field(foreign_key="sqm_users.id")
    title: str
"""


def make_project(tmp: Path) -> Path:
    project = tmp / "sqlmodel project"
    models = project / "sqm_app" / "models"
    models.mkdir(parents=True)
    (models / "__init__.py").write_text(
        '"""The models package; it does not import its modules."""\n\n'
        "from sqlmodel import SQLModel\n\n__all__ = ['SQLModel']\n"
    )
    (models / "user.py").write_text(USER)
    (models / "post.py").write_text(POST)
    (models / "tests").mkdir()  # test-only models are not imported by env.py
    (models / "tests" / "fake.py").write_text("raise RuntimeError('tests must not be imported')\n")
    return project


def ok(run: Run, expected: int = 0) -> Run:
    assert run.code == expected, run.describe()
    assert "Traceback (most recent call last)" not in run.text, run.describe()
    return run


@pytest.fixture
def user_db(server_url: str, backend: str, tmp_path: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'sqm.db'}"
        return
    with scratch_database(make_url(server_url)) as url:
        yield url.render_as_string(hide_password=False)


def test_sqlmodel_models_in_several_modules(user_db: str, backend: str, tmp_path: Path) -> None:
    project, url = make_project(tmp_path), user_db
    setup = ok(script("setup-alembic", "--metadata", SPEC, "--json", cwd=project)).json
    assert setup["import_models"] == ["sqm_app.models"] and setup["tables"] == 2, setup
    assert sorted(setup["models_found_in"]) == ["sqm_app.models.post", "sqm_app.models.user"]
    assert "import_models = sqm_app.models" in (project / "alembic.ini").read_text()

    init = ok(script("generate-migration", "init", "--json", cwd=project, url=url)).json
    assert init["operations"].count("create_table") == 2, init
    revision = Path(init["revision_file"])
    source = revision.read_text()
    assert "sqlmodel" not in source  # AutoString rendered as SQLAlchemy's own type: the file imports only sqlalchemy
    if backend == "mysql":
        assert "sa.String(length=255)" in source  # MySQL/MariaDB need a VARCHAR length
    spec = importlib.util.spec_from_file_location("sqm_revision", revision)
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # the revision imports
    ok(alembic("upgrade", "head", cwd=project, url=url))
    checked = ok(alembic("check", cwd=project, url=url))
    assert "No new upgrade operations detected" in checked.text

    if backend != "postgresql":
        return
    # SQLModel's MetaData has no naming convention: a unique field added later gets an unnamed constraint
    user = project / "sqm_app" / "models" / "user.py"
    user.write_text(user.read_text().replace("    # edit", "    slug: str | None = Field(default=None, unique=True)"))
    run = ok(script("generate-migration", "slug", "--json", "--roundtrip", cwd=project, url=url), expected=1)
    result = run.json
    rules = [w["rule"] for w in result["warnings"]]
    assert "unnamed_constraint" in rules and "add_unique_constraint" in rules, result["warnings"]
    assert result["roundtrip"]["failed_step"] == "downgrade -1", result["roundtrip"]
    assert "name" in result["roundtrip"]["error"]


def test_sqlmodel_metadata_without_models_is_named(tmp_path: Path) -> None:
    """``sqlmodel:SQLModel.metadata`` is a library's module: nothing to walk, and the empty MetaData is reported."""
    project = make_project(tmp_path)
    dry = ok(
        script("setup-alembic", "--metadata", "sqlmodel:SQLModel.metadata", "--dry-run", "--json", cwd=project)
    ).json
    assert dry["tables"] == 0 and any("holds no table" in w for w in dry["warnings"]), dry
    explicit = ok(
        script(
            "setup-alembic",
            "--metadata",
            "sqlmodel:SQLModel.metadata",
            "--models",
            "sqm_app.models",
            "--json",
            cwd=project,
        )
    ).json
    assert explicit["tables"] == 2 and explicit["import_models"] == ["sqm_app.models"] and explicit["warnings"] == []
    assert "import_models = sqm_app.models" in (project / "alembic.ini").read_text()

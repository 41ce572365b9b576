"""Alembic on a SQLModel project: setup-alembic + generate-migration on tests/sqlmodel_project, the
``import sqlmodel`` that templates/script.py.mako adds, and the Alembic errors SQLModel users paste
(references/sqlmodel.md).

Every test gets its own empty database (``harness.user_database``) used as the user's DATABASE_URL.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "sqlmodel_project"))
from harness import METADATA, SKILL, Run, alembic, make_project, python, script, user_database

pytestmark = pytest.mark.slow

TEMPLATES = SKILL / "templates"
IMPORT_REVISION = (
    "import importlib.util, sys; spec = importlib.util.spec_from_file_location('revision', sys.argv[1]); "
    "spec.loader.exec_module(importlib.util.module_from_spec(spec))"
)


def ok(run: Run, expected: int = 0) -> Run:
    assert run.code == expected, run.describe()
    assert "Traceback (most recent call last)" not in run.text, run.describe()
    return run


def created_tables(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "create_table"
        and isinstance(node.args[0], ast.Constant)
    }


def only_revision(versions: Path) -> Path:
    files = sorted(versions.glob("*.py"))
    assert len(files) == 1, files
    return files[0]


# --------------------------------------------------------------------------- the skill's scripts


def bound_every_str(project: Path) -> None:
    """The MySQL/MariaDB workaround of references/sqlmodel.md: a max_length on every str column."""
    for module, old, new in (
        ("users.py", "    name: str  #", "    name: str = Field(max_length=100)  #"),
        ("posts.py", '    body: str = ""', '    body: str = Field(default="", max_length=10_000)'),
    ):
        path = project / "app" / module
        text = path.read_text()
        assert text.count(old) == 1, (module, old)
        path.write_text(text.replace(old, new))


def scripts_flow(project: Path, url: str) -> None:
    """setup-alembic --metadata app.models:SQLModel.metadata, generate-migration, upgrade, check, then
    the models write and read on the migrated schema (UUID, aware datetime with microseconds)."""
    setup = ok(script("setup-alembic", "--metadata", METADATA, "--json", cwd=project)).json
    assert setup["ok"] and setup["metadata"] == METADATA
    assert (project / "alembic" / "script.py.mako").read_text() == (TEMPLATES / "script.py.mako").read_text()
    init = ok(script("generate-migration", "init", "--json", cwd=project, url=url)).json
    revision = Path(init["revision_file"])
    assert created_tables(revision) == {"smp_users", "smp_posts"}  # two modules, both imported by app/models.py
    assert sorted(init["operations"]) == ["create_index", "create_table", "create_table"] and init["warnings"] == []
    ok(python("-c", IMPORT_REVISION, str(revision), cwd=project, url=None))
    ok(alembic("upgrade", "head", cwd=project, url=url))
    assert "No new upgrade operations detected" in ok(alembic("check", cwd=project, url=url)).text
    assert "check_schema: ok" in ok(python("check_schema.py", cwd=project, url=url)).out


def test_scripts_on_the_sqlmodel_project(server_url: str, backend: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    if backend == "mysql":
        bound_every_str(project)
    with user_database(server_url) as url:
        scripts_flow(project, url)


@pytest.mark.only_backends("mysql")
def test_str_without_max_length_on_mysql(server_url: str, backend: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    with user_database(server_url) as url:
        scripts_flow(project, url)


def test_autostring_is_rendered_as_its_implementation(tmp_path: Path) -> None:
    """The skill's env.py asks AutoString for its type on the compared database: the revision says
    ``sa.String()`` (VARCHAR(255) on MySQL/MariaDB) and needs no ``import sqlmodel``."""
    project = make_project(tmp_path)
    ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    with user_database("sqlite+aiosqlite://") as url:
        revision = Path(ok(script("generate-migration", "init", "--json", cwd=project, url=url)).json["revision_file"])
    text = revision.read_text()
    assert "sa.Column('name', sa.String(), nullable=False)" in text, text
    assert "sa.Column('email', sa.String(length=255), nullable=False)" in text, text
    assert "sqlmodel" not in text


def test_a_table_module_missing_from_models_still_reaches_the_revision(tmp_path: Path) -> None:
    """Models over several modules: the metadata holds only what was imported. With one import
    forgotten in app/models.py, setup-alembic still finds the table module and env.py imports it
    (without that, autogenerate would leave the table out, and on a live schema drop it); the app
    itself still fails at its first query, naming the class nobody imported."""
    project = make_project(tmp_path)
    models = project / "app" / "models.py"
    models.write_text(models.read_text().replace("from app.posts import Post\n", ""))
    ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    with user_database("sqlite+aiosqlite://") as url:
        init = ok(script("generate-migration", "init", "--json", cwd=project, url=url)).json
        assert created_tables(Path(init["revision_file"])) == {"smp_users", "smp_posts"}
        # ... while the app fails at its first query, naming the class nobody imported
        probe = python(
            "-c",
            "from sqlalchemy.orm import configure_mappers; import app.models; configure_mappers()",
            cwd=project,
            url=url,
        )
    assert probe.code == 1 and "expression 'Post' failed to locate a name ('Post')" in probe.err, probe.describe()


def test_plain_projects_never_need_sqlmodel(tmp_path: Path) -> None:
    """A project without SQLModel: revisions do not mention sqlmodel and migrate with it uninstalled."""
    project = tmp_path / "plain project"
    shutil.copytree(
        SKILL / "tests" / "sample_project" / "sample_app",
        project / "sample_app",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(TEMPLATES / "base_model.py", project / "sample_app" / "base_model.py")
    blocker = tmp_path / "no-sqlmodel"
    blocker.mkdir()
    (blocker / "sqlmodel.py").write_text("raise ImportError('sqlmodel is not installed here')\n")
    ok(script("setup-alembic", "--metadata", "sample_app.models:Base.metadata", cwd=project))
    with user_database("sqlite+aiosqlite://") as url:
        revision = Path(
            ok(script("generate-migration", "init", "--json", cwd=project, url=url, PYTHONPATH=str(blocker))).json[
                "revision_file"
            ]
        )
        assert "sqlmodel" not in revision.read_text()
        ok(alembic("upgrade", "head", cwd=project, url=url, PYTHONPATH=str(blocker)))
    blocked = python("-c", "import sqlmodel", cwd=project, url=None, PYTHONPATH=str(blocker))
    assert "sqlmodel is not installed here" in blocked.err  # the blocker works


def render(template: str, **overrides: str) -> str:
    from mako.template import Template

    values: dict[str, object] = {
        "message": "add things",
        "up_revision": "abc123",
        "down_revision": None,
        "branch_labels": None,
        "depends_on": None,
        "create_date": "2025-01-01 00:00:00",
        "imports": "",
        "upgrades": "op.add_column('t', sa.Column('x', sa.Integer(), nullable=True))",
        "downgrades": "op.drop_column('t', 'x')",
        "comma": lambda value: ", ".join(value or ()),
    }
    values.update(overrides)
    return str(Template(template).render(**values))


def test_script_template_imports_sqlmodel_only_when_used() -> None:
    template = (TEMPLATES / "script.py.mako").read_text()
    without_block = re.sub(r"<%\n.*?% endif\n", "", template, flags=re.S)
    assert without_block != template
    # a plain revision renders exactly as before the SQLModel block existed
    assert render(template) == render(without_block)
    assert "sqlmodel" not in render(template)
    uses = "op.add_column('t', sa.Column('x', sqlmodel.sql.sqltypes.AutoString(), nullable=True))"
    rendered = render(template, upgrades=uses)
    assert "from alembic import op\nimport sqlmodel\n" in rendered and rendered.count("import sqlmodel") == 1
    ast.parse(rendered)
    # an env.py that already adds the import to autogenerate's imports: still one import
    twice = render(template, upgrades=uses, imports="import sqlmodel")
    assert twice.count("import sqlmodel") == 1
    ast.parse(twice)
    # `alembic revision` without --autogenerate passes no upgrades/downgrades/imports at all
    bare = render(template, upgrades=None, downgrades=None, imports=None)
    assert "def upgrade() -> None:\n    pass" in bare and "sqlmodel" not in bare


# --------------------------------------------------------------------------- Alembic's own async env

HEROES = """\
from sqlmodel import Field, SQLModel


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    headquarters: str


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    secret_name: str = Field(max_length=100)
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
"""


def stock_async_project(tmp_path: Path, url: str) -> Path:
    """What `alembic init -t async` gives a SQLModel user, pointed at the models and the database."""
    project = tmp_path / "heroes project"
    project.mkdir()
    (project / "heroes.py").write_text(HEROES)
    ok(alembic("init", "-t", "async", "migrations", cwd=project, url=None))
    env_py = project / "migrations" / "env.py"
    env_py.write_text(
        env_py.read_text().replace(
            "target_metadata = None", "from heroes import SQLModel\n\ntarget_metadata = SQLModel.metadata", 1
        )
    )
    ini = project / "alembic.ini"
    ini.write_text(ini.read_text().replace("driver://user:pass@localhost/dbname", url.replace("%", "%%"), 1))
    return project


def test_stock_env_revision_fails_with_name_error_until_the_template_imports_sqlmodel(
    server_url: str, backend: str, tmp_path: Path
) -> None:
    with user_database(server_url) as url:
        project = stock_async_project(tmp_path, url)
        versions = project / "migrations" / "versions"
        ok(alembic("revision", "--autogenerate", "-m", "heroes", cwd=project, url=None))
        revision = only_revision(versions)
        assert "sqlmodel.sql.sqltypes.AutoString()" in revision.read_text()
        failed = alembic("upgrade", "head", cwd=project, url=None)
        assert failed.code == 1 and "NameError: name 'sqlmodel' is not defined" in failed.err, failed.describe()

        # fix: the skill's script.py.mako (or `import sqlmodel` added to the file by hand)
        shutil.copy(TEMPLATES / "script.py.mako", project / "migrations" / "script.py.mako")
        revision.unlink()
        ok(alembic("revision", "--autogenerate", "-m", "heroes", cwd=project, url=None))
        revision = only_revision(versions)
        assert "\nimport sqlmodel\n" in revision.read_text()
        ok(alembic("upgrade", "head", cwd=project, url=None))
        assert "No new upgrade operations detected" in ok(alembic("check", cwd=project, url=None)).text

        if backend == "mysql":
            # autogenerate's downgrade drops the foreign key's index before the table
            stuck = alembic("downgrade", "base", cwd=project, url=None)
            assert stuck.code == 1, stuck.describe()
            assert "Cannot drop index 'ix_hero_team_id': needed in a foreign key constraint" in stuck.err
            text = revision.read_text()
            fixed = re.sub(r"\n[ \t]*op\.drop_index\(op\.f\('ix_hero_team_id'\), table_name='hero'\)", "", text)
            assert fixed != text
            revision.write_text(fixed)
        ok(alembic("downgrade", "base", cwd=project, url=None))
        ok(alembic("upgrade", "head", cwd=project, url=None))

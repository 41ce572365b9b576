"""scripts/setup-alembic.sh and the script contract of both Alembic scripts.

Setup itself needs no database, so most tests run once; the ones that run migrations use a
temporary SQLite file (the server backends are covered by test_generate_migration.py).
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_project.harness import (
    METADATA,
    PASSWORD,
    PASSWORD_MARKERS,
    SKILL,
    Run,
    alembic,
    make_project,
    revision_files,
    script,
)

TEMPLATES = SKILL / "templates"


def ok(run: Run, expected: int = 0) -> Run:
    assert run.code == expected, run.describe()
    assert "Traceback (most recent call last)" not in run.text, run.describe()
    return run


def one_error_line(run: Run) -> str:
    lines = [ln for ln in run.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), run.describe()
    return lines[0]


def snapshot(project: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(project)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(project.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.parametrize("name", ["setup-alembic", "generate-migration"])
def test_help(name: str, tmp_path: Path) -> None:
    run = ok(script(name, "--help", cwd=tmp_path))
    for word in ("usage:", "exit codes:", "example:", "--json"):
        assert word in run.out, run.out
    assert run.err == ""


def test_setup_writes_an_async_environment(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = ok(script("setup-alembic", "--metadata", METADATA, "--json", cwd=project))
    result = run.json
    assert result["ok"] and result["changed"] and result["metadata"] == METADATA
    assert {f["path"]: f["action"] for f in result["files"]} == {
        "alembic.ini": "create",
        "alembic/env.py": "create",
        "alembic/script.py.mako": "create",
        "alembic/versions/.gitkeep": "create",
    }
    ini = configparser.ConfigParser(defaults={"here": str(project)})  # what Alembic passes
    ini.read(project / "alembic.ini")
    main = ini["alembic"]
    assert "sqlalchemy.url" not in main, "the URL must come from DATABASE_URL, never from alembic.ini"
    assert main["script_location"] == f"{project}/alembic"  # %(here)s: works from any directory
    assert main["target_metadata"] == METADATA
    assert main["file_template"].startswith("%(year)d%(month).2d%(day).2d")
    assert (project / "alembic" / "env.py").read_text() == (TEMPLATES / "env.py").read_text()
    env_py = (project / "alembic" / "env.py").read_text()
    for needle in (
        "async_engine_from_config",
        "run_sync",
        "NullPool",
        'config.attributes.get("connection")',
        "compare_type",
        "render_as_batch",
        "DATABASE_URL",
        'replace("%", "%%")',
    ):
        assert needle in env_py, needle


def test_setup_twice_changes_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    before = snapshot(project)
    run = ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    assert "already set up: nothing changed" in run.out
    assert snapshot(project) == before


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    before = snapshot(project)
    result = ok(script("setup-alembic", "--metadata", METADATA, "--dry-run", "--json", cwd=project)).json
    assert result["dry_run"] is True and result["changed"] is False
    assert [f["action"] for f in result["files"]] == ["create"] * 4
    assert snapshot(project) == before


def test_different_setup_is_refused_then_replaced_with_backup(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    env_py = project / "alembic" / "env.py"
    custom = env_py.read_text() + "\n# my own tweak\n"
    env_py.write_text(custom)
    before = snapshot(project)

    refused = ok(script("setup-alembic", "--metadata", METADATA, cwd=project), expected=1)
    assert "alembic/env.py" in refused.err and "--force" in refused.err
    assert snapshot(project) == before

    dry = ok(script("setup-alembic", "--metadata", METADATA, "--dry-run", "--json", cwd=project), expected=1).json
    assert {f["path"]: f["action"] for f in dry["files"]}["alembic/env.py"] == "replace"
    assert snapshot(project) == before

    forced = ok(script("setup-alembic", "--metadata", METADATA, "--force", "--json", cwd=project)).json
    entry = next(f for f in forced["files"] if f["path"] == "alembic/env.py")
    assert entry["action"] == "replace" and entry["backup"]
    assert (project / entry["backup"]).read_text() == custom  # nothing lost
    assert env_py.read_text() == (TEMPLATES / "env.py").read_text()


def test_other_metadata_in_existing_ini_is_named(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    ini = project / "alembic.ini"
    ini.write_text(ini.read_text() + f"sqlalchemy.url = postgresql://app:{PASSWORD}@db/app\n")
    run = ok(script("setup-alembic", "--metadata", "sample_app.models:Base", "--json", cwd=project), expected=1)
    result = run.json
    differences = next(f for f in result["files"] if f["path"] == "alembic.ini")["differences"]
    assert any("sqlalchemy.url" in d for d in differences), differences
    for marker in PASSWORD_MARKERS:
        assert marker not in run.text


def test_declarative_base_is_accepted_as_its_metadata(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    result = ok(script("setup-alembic", "--metadata", "sample_app.models:Base", "--json", cwd=project)).json
    assert result["metadata"] == METADATA


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("sample_app.nope:Base.metadata", "cannot import module 'sample_app.nope'"),
        ("sample_app.models:Nope.metadata", "has no attribute"),
        ("sample_app.models:SpBook.title", "not a sqlalchemy MetaData"),
        ("sample_app.models", "MODULE:ATTR"),
    ],
)
def test_bad_metadata_exits_2_with_one_line(spec: str, expected: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = ok(script("setup-alembic", "--metadata", spec, cwd=project), expected=2)
    assert expected in one_error_line(run)
    assert not (project / "alembic.ini").exists()


def test_broken_module_names_the_import_error(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    (project / "sample_app" / "broken.py").write_text("import not_installed_pkg_xyz\n")
    run = ok(script("setup-alembic", "--metadata", "sample_app.broken:Base", "--json", cwd=project), expected=2)
    line = one_error_line(run)
    assert "sample_app.broken" in line and "not_installed_pkg_xyz" in line
    assert run.json["exit_code"] == 2


def test_usage_errors(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    one_error_line(ok(script("setup-alembic", "--metadata", METADATA, "--bogus", cwd=project), expected=2))
    one_error_line(ok(script("setup-alembic", cwd=project), expected=2))
    one_error_line(ok(script("setup-alembic", "--metadata", METADATA, "--dir", "../outside", cwd=project), expected=2))
    one_error_line(ok(script("generate-migration", cwd=project, url="sqlite+aiosqlite://"), expected=2))
    one_error_line(ok(script("generate-migration", "x", "--bogus", cwd=project, url="sqlite+aiosqlite://"), expected=2))
    no_url = ok(script("generate-migration", "x", "--json", cwd=project), expected=2)
    assert "DATABASE_URL" in no_url.json["error"]


def test_malformed_url_exits_2_without_the_password(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    ok(script("setup-alembic", "--metadata", METADATA, cwd=project))
    for bad in (
        f"postgresql+asyncpg://app:{PASSWORD}@db:notaport/app",
        f"postgresql+asyncpg:/app:{PASSWORD}@db/app",
        f"not a url {PASSWORD}",
    ):
        run = ok(script("generate-migration", "x", "--url", bad, cwd=project), expected=2)
        assert "malformed database URL" in one_error_line(run)
        json_run = ok(script("generate-migration", "x", "--json", cwd=project, url=bad), expected=2)
        assert json_run.json["exit_code"] == 2
        for marker in PASSWORD_MARKERS:
            assert marker not in run.text + json_run.text


def test_no_alembic_setup_exits_3(tmp_path: Path) -> None:
    project = make_project(tmp_path)
    run = ok(script("generate-migration", "x", "--json", cwd=project, url="sqlite+aiosqlite://"), expected=3)
    assert "setup-alembic" in run.json["error"]


def test_missing_packages_exit_3_with_the_pip_command(tmp_path: Path) -> None:
    # a python3 with nothing installed: a fresh virtual environment without pip
    venv = tmp_path / "bare venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120, capture_output=True
    )
    bare = venv / "bin" / "python"
    probe = subprocess.run(
        [str(bare), "-c", "import sqlalchemy"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
    )
    assert probe.returncode != 0 and "No module named 'sqlalchemy'" in probe.stderr, probe.stderr
    project = make_project(tmp_path)
    for name, args in (("setup-alembic", ["--metadata", METADATA]), ("generate-migration", ["x"])):
        run = ok(script(name, *args, cwd=project, url="sqlite+aiosqlite://", PYTHON=str(bare)), expected=3)
        assert "pip install" in one_error_line(run)
    missing = ok(script("setup-alembic", "--metadata", METADATA, "--json", cwd=project, PYTHON="/no/such/python"), 3)
    assert missing.json["exit_code"] == 3


def test_other_directory_relative_paths_and_nested_dir(tmp_path: Path) -> None:
    """Run from outside the project with a relative --project, a nested --dir, then use alembic from elsewhere."""
    project = make_project(tmp_path)
    run = ok(
        script(
            "setup-alembic", "--metadata", METADATA, "--project", "my project", "--dir", "db/mig rations", cwd=tmp_path
        )
    )
    assert "created" in run.out
    assert (project / "db" / "mig rations" / "env.py").is_file()
    url = f"sqlite+aiosqlite:///{tmp_path / 'app one.db'}"
    ini = str(project / "alembic.ini")
    gen = ok(script("generate-migration", "init", "--config", ini, "--json", cwd=tmp_path, url=url)).json
    assert Path(gen["revision_file"]).parent == project / "db" / "mig rations" / "versions"
    ok(alembic("-c", ini, "upgrade", "head", cwd=tmp_path, url=url))
    ok(alembic("-c", ini, "check", cwd=tmp_path, url=url))
    sql = ok(alembic("-c", ini, "downgrade", "head:base", "--sql", cwd=tmp_path, url=url))  # offline mode
    assert "DROP TABLE sp_books" in sql.out
    assert revision_files(project, "db/mig rations")


def test_sqlite_batch_mode_with_foreign_keys_on_deletes_child_rows() -> None:
    """Why env.py refuses a SQLite connection with PRAGMA foreign_keys=ON (the app's engine)."""
    import sqlalchemy as sa
    from alembic.migration import MigrationContext
    from alembic.operations import Operations

    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        conn.exec_driver_sql("CREATE TABLE parent (id INTEGER PRIMARY KEY, name VARCHAR(10))")
        conn.exec_driver_sql(
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id) ON DELETE CASCADE)"
        )
        conn.exec_driver_sql("INSERT INTO parent VALUES (1, 'a')")
        conn.exec_driver_sql("INSERT INTO child VALUES (1, 1)")
        conn.commit()
        with Operations(MigrationContext.configure(conn)).batch_alter_table("parent") as batch:
            batch.alter_column("name", type_=sa.String(50))  # copy, DROP TABLE parent, rename
        conn.commit()
        # the DROP TABLE ran ON DELETE CASCADE: the child row is gone
        assert conn.exec_driver_sql("SELECT count(*) FROM child").scalar() == 0
    engine.dispose()


def test_existing_alembic_init_setup_is_refused_then_forced(tmp_path: Path) -> None:
    """The common case: the project already ran `alembic init -t async alembic`."""
    project = make_project(tmp_path)
    ok(alembic("init", "-t", "async", "alembic", cwd=project, url=None))
    (project / "sample_app" / "models.py").write_text(
        (project / "sample_app" / "models.py").read_text() + "\nprint('models imported')\n"
    )
    refused = ok(script("setup-alembic", "--metadata", METADATA, "--json", cwd=project), expected=1)
    result = refused.json  # the module's print went to stderr, stdout is still one JSON object
    actions = {f["path"]: f["action"] for f in result["files"]}
    assert actions["alembic.ini"] == actions["alembic/env.py"] == "replace", actions
    ini_diff = next(f for f in result["files"] if f["path"] == "alembic.ini")["differences"]
    assert any("sqlalchemy.url" in d for d in ini_diff) and any("target_metadata" in d for d in ini_diff)
    assert "driver://user:pass" not in refused.text  # alembic init's placeholder URL is not echoed
    forced = ok(script("setup-alembic", "--metadata", METADATA, "--force", "--json", cwd=project)).json
    backups = [f["backup"] for f in forced["files"] if f["backup"]]
    assert len(backups) >= 2 and all((project / b).is_file() for b in backups)
    url = f"sqlite+aiosqlite:///{tmp_path / 'app.db'}"
    ok(script("generate-migration", "init", cwd=project, url=url))


def test_symlinked_wrapper_finds_the_skill(tmp_path: Path) -> None:
    """An agent may link the script into PATH; the templates are still found next to the real file."""
    import subprocess

    from sample_project.harness import SCRIPTS, environment

    project = make_project(tmp_path)
    link = tmp_path / "bin dir" / "setup-alembic"
    link.parent.mkdir()
    link.symlink_to(SCRIPTS / "setup-alembic.sh")
    proc = subprocess.run(
        ["bash", str(link), "--metadata", METADATA, "--json"],
        cwd=project,
        env=environment(None),
        capture_output=True,
        text=True,
        timeout=60,
    )
    run = ok(Run([str(link)], proc.returncode, proc.stdout, proc.stderr))
    assert run.json["changed"] is True
    assert (project / "alembic" / "env.py").read_text() == (TEMPLATES / "env.py").read_text()

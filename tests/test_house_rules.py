"""The house rules hold: which room may import which, lint, format and types.

- Arrows point one way: examples -> templates, tests -> everything. A template never imports an
  example or a script; an example never imports a script; nothing but a test imports an example.
- Only ``templates/fastapi_integration.py`` imports ``fastapi``, and the framework-free templates
  import and run in an environment where FastAPI is not installed.
- ruff (lint and format) passes on the repository; ``mypy --strict`` passes on ``templates/``.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FASTAPI_TEMPLATE = "templates/fastapi_integration.py"
# What a plain `import` names: fastapi pulls starlette and pydantic, which a worker may not have.
WEB_FRAMEWORK = ("fastapi", "starlette")


def imported_modules(path: Path) -> set[str]:
    """Absolute module names ``path`` imports (relative imports resolved within its folder)."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # "from .database import x" inside templates/ -> templates.database
                names.add(".".join([path.parent.name, *(node.module or "").split(".")]).rstrip("."))
            elif node.module:
                names.add(node.module)
    return names


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def top(module: str) -> str:
    return module.split(".")[0]


def test_imported_modules_sees_every_kind_of_import(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    sample = folder / "x.py"
    sample.write_text("import fastapi.responses\nfrom examples.y import z\nfrom .database import a\nfrom . import b\n")
    assert imported_modules(sample) == {"fastapi.responses", "examples.y", "templates.database", "templates"}


@pytest.mark.parametrize("path", files("templates"), ids=rel)
def test_templates_import_no_example_and_no_script(path: Path) -> None:
    bad = {m for m in imported_modules(path) if top(m) in ("examples", "scripts")}
    assert not bad, f"{rel(path)} imports {sorted(bad)}: templates stand alone; examples import templates"


@pytest.mark.parametrize("path", files("templates") + files("examples") + files("scripts"), ids=rel)
def test_only_the_fastapi_template_imports_a_web_framework(path: Path) -> None:
    if rel(path) == FASTAPI_TEMPLATE:
        assert "fastapi" in {top(m) for m in imported_modules(path)}
        return
    if path.parent.name == "examples":
        return  # examples may build a FastAPI app; they are not copied as a dependency
    bad = {m for m in imported_modules(path) if top(m) in WEB_FRAMEWORK}
    assert not bad, f"{rel(path)} imports {sorted(bad)}: only {FASTAPI_TEMPLATE} may"


@pytest.mark.parametrize("path", files("examples"), ids=rel)
def test_examples_import_no_script_and_no_other_example(path: Path) -> None:
    bad = {m for m in imported_modules(path) if top(m) in ("scripts", "examples")}
    bad |= {m for m in imported_modules(path) if top(m) in {p.stem for p in (ROOT / "scripts").glob("*.py")}}
    assert not bad, f"{rel(path)} imports {sorted(bad)}: examples import templates only (and libraries)"


@pytest.mark.parametrize("path", files("scripts"), ids=rel)
def test_scripts_import_no_example_and_no_template(path: Path) -> None:
    bad = {m for m in imported_modules(path) if top(m) in ("examples", "templates")}
    assert not bad, f"{rel(path)} imports {sorted(bad)}: scripts run in the user's project, without this repository"


@pytest.fixture(scope="session")
def site_without_fastapi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This interpreter's installed packages, less FastAPI and Starlette (links, no package index)."""
    source = Path(sysconfig.get_paths()["purelib"])
    target = tmp_path_factory.mktemp("no-fastapi")
    for entry in source.iterdir():
        if entry.name.lower().startswith(WEB_FRAMEWORK) or entry.suffix == ".pth":
            continue
        (target / entry.name).symlink_to(entry)
    return target


FRAMEWORK_FREE_PROGRAM = textwrap.dedent(
    """
    import asyncio, importlib.util, sys

    assert importlib.util.find_spec("fastapi") is None, "fastapi is importable"
    from sqlalchemy import select
    from templates.database import commit_or_rollback, create_sessionmaker
    from templates.db_errors import is_conflict
    from templates.models import User
    from templates.base_model import Base
    from templates.repository import Repository
    from templates.retry import run_in_transaction
    from templates.scratch import scratch_engine


    async def main() -> None:
        async with scratch_engine() as engine:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            sessions = create_sessionmaker(engine)
            async with commit_or_rollback(sessions) as session:
                session.add(User(email="worker@example.com", name="Worker"))

            async def count(session):
                return len((await session.scalars(select(User))).all())

            assert await run_in_transaction(sessions, count) == 1
            try:
                async with commit_or_rollback(sessions) as session:
                    session.add(User(email="worker@example.com", name="Twin"))
            except Exception as exc:
                assert is_conflict(exc), exc
            else:
                raise AssertionError("duplicate e-mail was stored")
        print("framework-free ok", "fastapi" in sys.modules)


    asyncio.run(main())
    """
)


def test_framework_free_templates_run_without_fastapi_installed(site_without_fastapi: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(site_without_fastapi)])
    done = subprocess.run(
        [sys.executable, "-S", "-c", FRAMEWORK_FREE_PROGRAM],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "framework-free ok False"
    # and the FastAPI template really does need it there
    broken = subprocess.run(
        [sys.executable, "-S", "-c", "import templates.fastapi_integration"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert broken.returncode != 0 and "No module named 'fastapi'" in broken.stderr


def tool(name: str) -> str:
    path = Path(sys.executable).with_name(name)
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_ruff_lint() -> None:
    done = subprocess.run(
        [tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_ruff_format() -> None:
    done = subprocess.run(
        [tool("ruff"), "format", "--check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def test_mypy_strict_on_templates() -> None:
    done = subprocess.run(
        [tool("mypy"), "--no-incremental", "--cache-dir", os.devnull],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "--strict" not in done.stdout
    assert "Success" in done.stdout

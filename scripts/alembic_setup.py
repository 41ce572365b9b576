"""Setup planning for setup-alembic (importable; no CLI here).

- ``check_metadata()``: import ``MODULE:ATTR`` the way env.py will; one-line error otherwise.
- ``plan_setup()``: what setup-alembic would write into a project, and what already differs.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKILL_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = SKILL_ROOT / "templates"


class MetadataError(Exception):
    """``--metadata`` is malformed or does not import (exit 2)."""


@dataclass
class MetadataCheck:
    spec: str  # MODULE:ATTR as env.py reads it
    tables: int  # tables registered once every model module is imported
    import_models: list[str] = field(default_factory=list)  # env.py imports these (and their submodules) first
    found_in: list[str] = field(default_factory=list)  # modules whose import added tables the spec alone missed
    skipped: list[str] = field(default_factory=list)  # submodules that failed to import (name: error)


SKIPPED_PARTS = ("test", "tests", "conftest", "alembic", "migrations", "__main__")


def model_submodules(package: Any) -> list[str]:
    """Every submodule of ``package`` (recursively), except tests, conftest and migration folders.

    templates/env.py applies the same rule to ``import_models``.
    """
    import pkgutil

    return [
        info.name
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{package.__name__}.")
        if not any(part in SKIPPED_PARTS or part.startswith("test_") for part in info.name.split("."))
    ]


def count_tables(obj: Any) -> int:
    return sum(len(m.tables) for m in (obj if isinstance(obj, (list, tuple)) else [obj]))


def check_metadata(spec: str, project: Path, models: list[str] | None = None) -> MetadataCheck:
    """Import ``MODULE:ATTR`` with ``project`` on sys.path, the way env.py will; the spec env.py should use.

    A declarative Base (``app.models:Base``) is accepted and becomes ``app.models:Base.metadata``.
    Models spread over several modules register their tables only when imported (``SQLModel.metadata``
    starts empty): the modules in ``models`` are imported first; without them, the submodules of the
    metadata's own package (or of its parent package) are tried, and when they add tables the result
    names that package in ``import_models`` for env.py.
    """
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec or ""):
        raise MetadataError(f"--metadata must look like MODULE:ATTR (e.g. app.models:Base.metadata), got {spec!r}")
    from sqlalchemy import MetaData

    module_name, _, attr = spec.partition(":")
    root = str(project.resolve())
    sys.path.insert(0, root)

    def load(name: str) -> Any:
        try:
            return importlib.import_module(name)
        except Exception as exc:
            raise MetadataError(f"cannot import module {name!r} (from {root}): {type(exc).__name__}: {exc}") from None

    try:
        for name in models or []:
            for sub in [name, *model_submodules(load(name))]:
                load(sub)
        obj: Any = load(module_name)
        module = obj
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise MetadataError(f"module {module_name!r} has no attribute {attr!r} (missing {part!r})")
            obj = getattr(obj, part)
        if isinstance(obj, MetaData) or (
            isinstance(obj, (list, tuple)) and obj and all(isinstance(m, MetaData) for m in obj)
        ):
            metadata, resolved = obj, spec
        elif isinstance(getattr(obj, "metadata", None), MetaData):
            metadata, resolved = obj.metadata, f"{spec}.metadata"
        else:
            raise MetadataError(
                f"{spec!r} is a {type(obj).__name__}, not a sqlalchemy MetaData (try MODULE:Base.metadata)"
            )
        check = MetadataCheck(resolved, count_tables(metadata), list(models or []))
        if models:
            return check
        package_name = module_name if hasattr(module, "__path__") else module_name.rpartition(".")[0]
        package = sys.modules.get(package_name) if package_name else None
        folders = [str(Path(p).resolve()) for p in getattr(package, "__path__", [])]
        if package is None or not any(f == root or f.startswith(root + os.sep) for f in folders):
            return check  # a library's package (e.g. sqlmodel:SQLModel.metadata): not the project's models
        for sub in model_submodules(package):
            before = count_tables(metadata)
            try:
                importlib.import_module(sub)
            except Exception as exc:
                check.skipped.append(f"{sub}: {type(exc).__name__}: {exc}")
                continue
            if count_tables(metadata) > before:
                check.found_in.append(sub)
        if check.found_in:
            check.import_models = [package_name]
            check.tables = count_tables(metadata)
        return check
    finally:
        if root in sys.path:
            sys.path.remove(root)


def ini_value(text: str, key: str) -> str | None:
    m = re.search(rf"^{re.escape(key)}\s*=\s*(.*?)\s*$", text, re.MULTILINE)
    return m[1] if m else None


def render_ini(metadata: str, directory: str, import_models: list[str] | None = None) -> str:
    text = (TEMPLATES / "alembic.ini").read_text()
    location = directory if Path(directory).is_absolute() else f"%(here)s/{Path(directory).as_posix()}"
    text = re.sub(
        r"(?m)^script_location = .*$", lambda m: f"script_location = {escape_ini(location, keep_here=True)}", text
    )
    if import_models:
        text = re.sub(r"(?m)^# import_models = .*$", lambda m: f"import_models = {' '.join(import_models)}", text)
    return re.sub(r"(?m)^target_metadata = .*$", lambda m: f"target_metadata = {metadata}", text)


def escape_ini(value: str, *, keep_here: bool = False) -> str:
    """ConfigParser interpolates ``%``: double it (but keep a leading ``%(here)s``)."""
    if keep_here and value.startswith("%(here)s"):
        return "%(here)s" + value[len("%(here)s") :].replace("%", "%%")
    return value.replace("%", "%%")


@dataclass
class PlannedFile:
    path: str  # relative to the project
    action: str  # create | unchanged | replace (different content exists)
    differences: list[str] = field(default_factory=list)
    backup: str | None = None
    content: str = field(default="", repr=False)


def describe_ini_differences(existing: str, wanted: str) -> list[str]:
    out = []
    for key in ("script_location", "target_metadata", "import_models", "file_template"):
        have, want = ini_value(existing, key), ini_value(wanted, key)
        if have != want:
            out.append(f"{key} is {have!r}, setup would write {want!r}" if have is not None else f"{key} is missing")
    if ini_value(existing, "sqlalchemy.url"):
        out.append("sqlalchemy.url is set in the file (setup keeps the URL out of alembic.ini: DATABASE_URL)")
    if not out:
        out.append("other lines differ from templates/alembic.ini")
    return out


def describe_text_differences(existing: str, wanted: str) -> list[str]:
    import difflib

    changed = [
        ln
        for ln in difflib.unified_diff(existing.splitlines(), wanted.splitlines(), lineterm="", n=0)
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]
    return [f"differs from the template ({len(changed)} changed lines)"]


def plan_setup(
    project: Path, metadata: str, directory: str, import_models: list[str] | None = None
) -> list[PlannedFile]:
    """The files setup writes, each marked create / unchanged / replace."""
    mig = Path(directory)
    wanted: list[tuple[Path, str, str]] = [
        (Path("alembic.ini"), render_ini(metadata, directory, import_models), "ini"),
        (mig / "env.py", (TEMPLATES / "env.py").read_text(), "text"),
        (mig / "script.py.mako", (TEMPLATES / "script.py.mako").read_text(), "text"),
        (mig / "versions" / ".gitkeep", "", "text"),
    ]
    plans = []
    for rel, content, kind in wanted:
        target = rel if rel.is_absolute() else project / rel
        shown = str(rel.as_posix())
        if not target.exists():
            plans.append(PlannedFile(shown, "create", content=content))
            continue
        existing = target.read_text(errors="replace")
        if existing == content:
            plans.append(PlannedFile(shown, "unchanged", content=content))
        else:
            diffs = (
                describe_ini_differences(existing, content)
                if kind == "ini"
                else describe_text_differences(existing, content)
            )
            plans.append(PlannedFile(shown, "replace", diffs, content=content))
    return plans

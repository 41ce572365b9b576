"""Setup planning for setup-alembic (importable; no CLI here).

- ``check_metadata()``: import ``MODULE:ATTR`` the way env.py will; one-line error otherwise.
- ``plan_setup()``: what setup-alembic would write into a project, and what already differs.
"""

from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKILL_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = SKILL_ROOT / "templates"


class MetadataError(Exception):
    """``--metadata`` is malformed or does not import (exit 2)."""


def check_metadata(spec: str, project: Path) -> str:
    """Import ``MODULE:ATTR`` with ``project`` on sys.path; the spec env.py should use.

    A declarative Base (``app.models:Base``) is accepted and becomes ``app.models:Base.metadata``.
    """
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec or ""):
        raise MetadataError(f"--metadata must look like MODULE:ATTR (e.g. app.models:Base.metadata), got {spec!r}")
    from sqlalchemy import MetaData

    module_name, _, attr = spec.partition(":")
    root = str(project.resolve())
    sys.path.insert(0, root)
    try:
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's module's
            raise MetadataError(
                f"cannot import module {module_name!r} (from {root}): {type(exc).__name__}: {exc}"
            ) from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise MetadataError(f"module {module_name!r} has no attribute {attr!r} (missing {part!r})")
            obj = getattr(obj, part)
    finally:
        if root in sys.path:
            sys.path.remove(root)
    if isinstance(obj, MetaData):
        return spec
    if isinstance(getattr(obj, "metadata", None), MetaData):
        return f"{spec}.metadata"
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(m, MetaData) for m in obj):
        return spec
    raise MetadataError(f"{spec!r} is a {type(obj).__name__}, not a sqlalchemy MetaData (try MODULE:Base.metadata)")


def ini_value(text: str, key: str) -> str | None:
    m = re.search(rf"^{re.escape(key)}\s*=\s*(.*?)\s*$", text, re.MULTILINE)
    return m[1] if m else None


def render_ini(metadata: str, directory: str) -> str:
    text = (TEMPLATES / "alembic.ini").read_text()
    location = directory if Path(directory).is_absolute() else f"%(here)s/{Path(directory).as_posix()}"
    text = re.sub(r"(?m)^script_location = .*$", lambda m: f"script_location = {escape_ini(location, keep_here=True)}", text)
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
    for key in ("script_location", "target_metadata", "file_template"):
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
        ln for ln in difflib.unified_diff(existing.splitlines(), wanted.splitlines(), lineterm="", n=0)
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]
    return [f"differs from the template ({len(changed)} changed lines)"]


def plan_setup(project: Path, metadata: str, directory: str) -> list[PlannedFile]:
    """The files setup writes, each marked create / unchanged / replace."""
    mig = Path(directory)
    wanted: list[tuple[Path, str, str]] = [
        (Path("alembic.ini"), render_ini(metadata, directory), "ini"),
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
            diffs = describe_ini_differences(existing, content) if kind == "ini" else describe_text_differences(existing, content)
            plans.append(PlannedFile(shown, "replace", diffs, content=content))
    return plans

"""Set up Alembic for an async SQLAlchemy project (logic of scripts/setup-alembic.sh).

Writes alembic.ini and the migrations folder (env.py, script.py.mako, versions/) into the project
from the skill's templates. Safe to run twice; never overwrites a different setup without --force
(which keeps a backup); never installs anything.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

if sys.version_info < (3, 10):
    print(f"error: Python 3.10+ is required (this is {sys.version.split()[0]}); set PYTHON=...", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scriptlib import (
    EXIT_ENV,
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    ArgumentParser,
    EnvironmentProblem,
    UsageError,
    bounded,
    emit,
    fail,
    require_module,
    shorten,
    wants_json,
)

EPILOG = """\
exit codes:
  0  set up, or already set up identically (nothing changed)
  1  a different setup exists (files listed; use --force to replace them, with a backup)
  2  bad usage or input (unknown option, --metadata that does not import)
  3  environment problem (sqlalchemy or alembic not installed for this Python)

example:
  cd my-project && bash /path/to/skill/scripts/setup-alembic.sh --metadata app.models:Base.metadata

The database URL is never written to alembic.ini: env.py reads DATABASE_URL at migration time.
Python: python3, or the interpreter in $PYTHON (use your project's virtualenv).
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="setup-alembic.sh",
        description="Write alembic.ini and an async Alembic environment into the project (the current directory).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--metadata",
        required=True,
        metavar="MODULE:ATTR",
        help="the MetaData autogenerate compares with, e.g. app.models:Base.metadata",
    )
    parser.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="MODULE",
        help="a module or package holding models, imported (with every submodule) before the "
        "metadata is read; repeatable. Default: found by importing the metadata's package",
    )
    parser.add_argument("--dir", default="alembic", metavar="DIR", help="migrations folder (default: alembic)")
    parser.add_argument("--project", default=".", metavar="PATH", help="project root (default: current directory)")
    parser.add_argument(
        "--force", action="store_true", help="replace a different existing setup (keeps FILE.bak-TIMESTAMP)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list what would be written; write nothing")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser.parse_args(argv)


def backup_path(target: Path, stamp: str) -> Path:
    candidate = target.with_name(f"{target.name}.bak-{stamp}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}.bak-{stamp}-{n}")
    return candidate


def setup(args: argparse.Namespace) -> tuple[int, dict[str, Any], list[str]]:
    """Plan and (unless --dry-run or refused) write the setup: (exit code, JSON result, human lines).

    Raises UsageError (2) or EnvironmentProblem (3).
    """
    require_module("sqlalchemy", "sqlalchemy[asyncio]")
    require_module("alembic")

    from alembic_setup import MetadataError, check_metadata, plan_setup

    project = Path(args.project).resolve()
    if not project.is_dir():
        raise UsageError(f"project folder {args.project!r} does not exist")
    directory = args.dir.strip().rstrip("/\\")
    if not directory or directory in (".", "..") or Path(directory).parts[:1] == ("..",):
        raise UsageError(f"--dir {args.dir!r}: give a folder inside the project, e.g. alembic or db/migrations")
    try:
        with redirect_stdout(sys.stderr):  # the user's module may print at import: keep stdout clean
            check = check_metadata(args.metadata, project, args.models)
    except MetadataError as exc:
        raise UsageError(str(exc)) from None
    metadata = check.spec

    plans = plan_setup(project, metadata, directory, check.import_models)
    conflicts = [p for p in plans if p.action == "replace"]
    refused = bool(conflicts) and not args.force
    stamp = time.strftime("%Y%m%d-%H%M%S")

    if not args.dry_run and not refused:
        for plan in plans:
            if plan.action == "unchanged":
                continue
            target = project / plan.path
            target.parent.mkdir(parents=True, exist_ok=True)
            if plan.action == "replace":
                backup = backup_path(target, stamp)
                shutil.copy2(target, backup)
                plan.backup = str(backup.relative_to(project))
            target.write_text(plan.content)

    changed = [p for p in plans if p.action != "unchanged"]
    result: dict[str, Any] = {
        "ok": not refused,
        "project": str(project),
        "metadata": metadata,
        "directory": directory,
        "dry_run": args.dry_run,
        "changed": bool(changed) and not refused and not args.dry_run,
        "files": [
            {"path": p.path, "action": p.action, "differences": p.differences, "backup": p.backup} for p in plans
        ],
        "tables": check.tables,
        "import_models": check.import_models,
        "models_found_in": check.found_in,
        "warnings": [],
    }
    if check.found_in:
        result["warnings"].append(
            f"{args.metadata} alone registers fewer tables than its package: models live in "
            f"{', '.join(check.found_in)}; alembic.ini gets import_models = {' '.join(check.import_models)} so env.py "
            "imports them all (or autogenerate would see no model and propose dropping every table)"
        )
    if check.tables == 0:
        result["warnings"].append(
            f"{metadata} holds no table: import the modules that define your models in it, or pass "
            "--models PACKAGE (autogenerate against an empty MetaData proposes dropping every table)"
        )
    verb = {
        "create": "would create" if args.dry_run else "created",
        "replace": "would replace" if args.dry_run or refused else "replaced",
        "unchanged": "unchanged",
    }
    lines = [f"warning: {w}" for w in result["warnings"]]
    for p in plans:
        line = f"{verb[p.action]:<14} {p.path}"
        if p.backup:
            line += f" (backup: {p.backup})"
        lines.append(line)
        shown, more = bounded(p.differences, 5)
        lines += [f"               - {d}" for d in shown] + ([f"               - ... and {more} more"] if more else [])
    if refused:
        names = ", ".join(p.path for p in conflicts)
        message = (
            f"a different Alembic setup exists ({names}); nothing written. Re-run with --force to replace it "
            "(backups are kept)"
        )
        result["error"] = message
        return EXIT_PROBLEMS, result, lines + [f"refused: {message}"]
    if not changed:
        lines.append("already set up: nothing changed")
    elif not args.dry_run:
        lines.append(f"target_metadata = {metadata}; the URL comes from DATABASE_URL at migration time")
        lines.append('next: bash scripts/generate-migration.sh "initial schema"   (then: alembic upgrade head)')
    return EXIT_OK, result, lines


def main(argv: list[str]) -> int:
    """The command line: one exit path for every outcome (UsageError 2, EnvironmentProblem 3)."""
    as_json = wants_json(argv)
    try:
        code, result, lines = setup(parse_args(argv))
    except UsageError as exc:
        fail(EXIT_USAGE, str(exc), as_json=as_json)
    except EnvironmentProblem as exc:
        fail(EXIT_ENV, str(exc), as_json=as_json)
    emit(result, as_json=as_json, human=lines)
    if code == EXIT_PROBLEMS and not as_json:
        print(f"error: {result['error']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        fail(EXIT_PROBLEMS, f"setup failed: {type(exc).__name__}: {shorten(exc)}", as_json=wants_json(sys.argv[1:]))

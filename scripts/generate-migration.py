"""Autogenerate an Alembic revision and review it (logic of scripts/generate-migration.sh).

Runs ``alembic revision --autogenerate`` against the database, deletes the file again when it holds
no operation, reads the new file with the AST and reports its operations and the risks
autogenerate leaves in it. ``--roundtrip`` replays upgrade -> downgrade -> upgrade on a scratch
database (never the user's).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, NoReturn

if sys.version_info < (3, 10):
    print(f"error: Python 3.10+ is required (this is {sys.version.split()[0]}); set PYTHON=...", file=sys.stderr)
    sys.exit(3)

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scriptlib import (  # noqa: E402
    EXIT_ENV, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, EnvironmentProblem, UsageError, bounded, emit, fail, mask,
    check_url, masked_url, require_driver, require_module, wants_json,
)

EPILOG = """\
exit codes:
  0  revision written and reviewed (or no changes: nothing written)
  1  failed: database not at head, cannot connect, roundtrip failed, or warnings with --strict
  2  bad usage or input (unknown option, missing MESSAGE, malformed URL)
  3  environment problem (alembic / driver not installed, no alembic.ini: run setup-alembic.sh)

warning rules: drop_table, drop_column, rename_suspected, not_null_without_default, type_change,
  enum_change (PostgreSQL), index_not_concurrent (PostgreSQL), empty_downgrade

example:
  DATABASE_URL=postgresql+asyncpg://app@localhost/app bash scripts/generate-migration.sh "add user email" --roundtrip

Run it in the project root (where alembic.ini is) or pass --config. The password is never printed.
"""

EMPTY_RESULT: dict[str, Any] = {"revision_file": None, "operations": [], "warnings": []}


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        fail(EXIT_USAGE, f"{message} (see --help)", as_json=wants_json(sys.argv[1:]), extra=EMPTY_RESULT)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = Parser(
        prog="generate-migration.sh",
        description="Autogenerate an Alembic revision against the database, then review it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("message", metavar="MESSAGE", help='what the revision does, e.g. "add user email"')
    parser.add_argument("--url", metavar="URL", help="database URL (default: $DATABASE_URL)")
    parser.add_argument("--config", default="alembic.ini", metavar="PATH", help="alembic.ini (default: ./alembic.ini)")
    parser.add_argument("--roundtrip", action="store_true",
                        help="apply upgrade -> downgrade -> upgrade on a scratch database and report the failing step")
    parser.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if not args.message.strip():
        parser.error("MESSAGE must not be empty")
    return args


def one_line(exc: BaseException, limit: int = 400) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return mask(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def make_config(ini: Path, raw_url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(ini), stdout=sys.stderr)
    cfg.set_main_option("sqlalchemy.url", raw_url.replace("%", "%%"))  # ConfigParser interpolates '%'
    return cfg


def run_alembic(fn: Any, *args: Any, **kwargs: Any) -> Any:
    with redirect_stdout(sys.stderr):  # alembic prints "Generating ... done" on stdout
        return fn(*args, **kwargs)


def shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def roundtrip(ini: Path, url: Any, as_json: bool) -> dict[str, Any]:
    """upgrade head -> downgrade -1 -> upgrade head on a scratch database."""
    from alembic import command

    from migration_tools import scratch_database

    steps = [("upgrade head", command.upgrade, "head"), ("downgrade -1", command.downgrade, "-1"),
             ("upgrade head again", command.upgrade, "head")]
    passed: list[str] = []
    saved = os.environ.get("DATABASE_URL")
    try:
        with scratch_database(url) as scratch:
            raw = scratch.render_as_string(hide_password=False)
            os.environ["DATABASE_URL"] = raw
            cfg = make_config(ini, raw)
            for label, fn, target in steps:
                try:
                    run_alembic(fn, cfg, target)
                except Exception as exc:  # noqa: BLE001 - report the step, not a traceback
                    return {"ok": False, "failed_step": label, "error": one_line(exc), "passed": passed}
                passed.append(label)
    except Exception as exc:  # noqa: BLE001 - creating/dropping the scratch database failed
        step = "drop scratch database" if len(passed) == len(steps) else "create scratch database"
        return {"ok": False, "failed_step": step, "error": one_line(exc), "passed": passed}
    finally:
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
    return {"ok": True, "failed_step": None, "error": None, "passed": passed}


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    as_json = args.json

    def die(code: int, message: str) -> NoReturn:
        fail(code, message, as_json=as_json, extra=EMPTY_RESULT)

    try:
        require_module("sqlalchemy", "sqlalchemy[asyncio]")
        require_module("alembic")
        checked = check_url(args.url, source="--url" if args.url else None)  # malformed / sync driver: exit 2
        url = checked.url
        require_driver(checked.dialect)
    except UsageError as exc:
        die(EXIT_USAGE, str(exc))
    except EnvironmentProblem as exc:
        die(EXIT_ENV, str(exc))

    ini = Path(args.config)
    if not ini.is_file():
        die(EXIT_ENV, f"no Alembic setup: {shown_path(ini)} not found (run setup-alembic.sh --metadata MODULE:ATTR "
                      "in the project root, or pass --config)")

    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from migration_tools import review_revision

    raw = url.render_as_string(hide_password=False)
    os.environ["DATABASE_URL"] = raw  # for env.py files that read the environment
    cfg = make_config(ini, raw)
    try:
        script_dir = ScriptDirectory.from_config(cfg)
    except CommandError as exc:
        die(EXIT_ENV, f"alembic setup in {shown_path(ini)} is incomplete: {one_line(exc)}")
    version_dirs = [Path(p) for p in (script_dir.version_locations or ())] or [Path(script_dir.versions)]
    before = {p for d in version_dirs if d.is_dir() for p in d.rglob("*.py")}

    try:
        produced = run_alembic(command.revision, cfg, message=args.message, autogenerate=True)
    except CommandError as exc:
        text = str(exc)
        if "not up to date" in text:
            die(EXIT_PROBLEMS, f"the database at {masked_url(url)} is not at the latest revision; run "
                               "'alembic upgrade head' with the same DATABASE_URL first, then generate again")
        if "heads" in text.lower():
            die(EXIT_PROBLEMS, f"alembic: {text} (merge them first: alembic merge heads -m 'merge heads')")
        die(EXIT_PROBLEMS, f"alembic: {mask(text)}")
    except ModuleNotFoundError as exc:
        die(EXIT_ENV, f"env.py could not import {exc.name!r}: {one_line(exc)} (install it, or fix target_metadata "
                      "in alembic.ini)")
    except (OSError, ConnectionError) as exc:
        die(EXIT_PROBLEMS, f"cannot connect to {masked_url(url)}: {one_line(exc)}")
    except Exception as exc:  # noqa: BLE001 - DB errors, errors in the user's env.py/models
        die(EXIT_PROBLEMS, f"autogenerate failed against {masked_url(url)}: {one_line(exc)}")

    scripts = produced if isinstance(produced, list) else [produced] if produced is not None else []
    new_files = [Path(s.path) for s in scripts if s is not None and getattr(s, "path", None)]
    if not new_files:  # fall back to the folder listing
        new_files = sorted({p for d in version_dirs if d.is_dir() for p in d.rglob("*.py")} - before)

    review = None
    if new_files:
        review = review_revision(new_files[0], url.get_backend_name())
        if not review.operations:
            for path in new_files:
                path.unlink(missing_ok=True)
            new_files, review = [], None

    if review is None:
        result = {"ok": True, **EMPTY_RESULT, "message": "no changes: the models match the database"}
        emit(result, as_json=as_json, human=["no changes: the models match the database; no revision file written"])
        return EXIT_OK

    revision_file = new_files[0]
    result = {"ok": True, "revision_file": str(revision_file.resolve()), "revision": review.revision, **review.to_json()}
    ops_shown, ops_more = bounded(review.operations, 30)
    warn_shown, warn_more = bounded(review.warnings, 30)
    lines = [f"created {shown_path(revision_file)}",
             f"operations ({len(review.operations)}): " + ", ".join(o.describe() for o in ops_shown)
             + (f", ... and {ops_more} more" if ops_more else "")]
    if review.warnings:
        lines.append(f"warnings ({len(review.warnings)}):")
        lines += [f"  line {w.line}: [{w.rule}] {w.message}" for w in warn_shown]
        if warn_more:
            lines.append(f"  ... and {warn_more} more")
    else:
        lines.append("warnings: none")

    code = EXIT_OK
    if args.roundtrip:
        outcome = roundtrip(ini, url, as_json)
        result["roundtrip"] = outcome
        if outcome["ok"]:
            lines.append("roundtrip: upgrade head -> downgrade -1 -> upgrade head passed on a scratch database")
        else:
            lines.append(f"roundtrip FAILED at '{outcome['failed_step']}': {outcome['error']}")
            code = EXIT_PROBLEMS
    if args.strict and review.warnings:
        lines.append(f"--strict: {len(review.warnings)} warning(s); review and edit {shown_path(revision_file)}")
        code = EXIT_PROBLEMS
    result["ok"] = code == EXIT_OK
    lines.append("next: read the file, edit what the warnings point at, then: alembic upgrade head")
    emit(result, as_json=as_json, human=lines)
    return code


if __name__ == "__main__":
    from migration_tools import MaskingStream

    sys.stderr = MaskingStream(sys.stderr, mask)  # alembic/driver log lines are masked too
    try:
        sys.exit(main(sys.argv[1:]))
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - one masked line, never a traceback
        fail(EXIT_PROBLEMS, f"generate-migration failed: {one_line(exc)}", as_json=wants_json(sys.argv[1:]),
             extra=EMPTY_RESULT)
    finally:
        sys.stderr.flush()

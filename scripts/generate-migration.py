"""Autogenerate an Alembic revision and review it (logic of scripts/generate-migration.sh).

Runs ``alembic revision --autogenerate`` against the database, deletes the file again when it holds
no operation, reads the new file with the AST and reports its operations and the risks
autogenerate leaves in it. ``--roundtrip`` replays upgrade -> downgrade -> upgrade on a scratch
database (never the user's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
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
    check_url,
    emit,
    fail,
    mask,
    masked_url,
    require_driver,
    require_module,
    shorten,
    wants_json,
)

EPILOG = """\
exit codes:
  0  revision written and reviewed (or no changes: nothing written)
  1  failed: database not at head, cannot connect, roundtrip failed, enum drift, or warnings with --strict
  2  bad usage or input (unknown option, missing MESSAGE, malformed URL)
  3  environment problem (alembic / driver not installed, no alembic.ini: run setup-alembic.sh)

warning rules (upgrade): drop_table, drop_column, rename_suspected, not_null_without_default, type_change,
  enum_change (PostgreSQL), index_not_concurrent (PostgreSQL), add_foreign_key, add_unique_constraint,
  unnamed_constraint, empty_downgrade; on downgrade() the same checks as downgrade_<rule>.
  enum_drift (PostgreSQL, MySQL/MariaDB): enum values the models have and the database lacks; checked on
  every run, also when autogenerate finds no change (exit 1: write the printed ALTER in a revision).
notes (never --strict): changes that carry no risk on this backend, e.g. a VARCHAR widening that
  PostgreSQL applies without rewriting the table.

example:
  DATABASE_URL=postgresql+asyncpg://app@localhost/app bash scripts/generate-migration.sh "add user email" --roundtrip

Run it in the project root (where alembic.ini is) or pass --config. The password is never printed.
"""

EMPTY_RESULT: dict[str, Any] = {"revision_file": None, "operations": [], "warnings": []}


class Problem(Exception):
    """The operation failed (exit 1)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="generate-migration.sh",
        description="Autogenerate an Alembic revision against the database, then review it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("message", metavar="MESSAGE", help='what the revision does, e.g. "add user email"')
    parser.add_argument("--url", metavar="URL", help="database URL (default: $DATABASE_URL)")
    parser.add_argument("--config", default="alembic.ini", metavar="PATH", help="alembic.ini (default: ./alembic.ini)")
    parser.add_argument(
        "--roundtrip",
        action="store_true",
        help="apply upgrade -> downgrade -> upgrade on a scratch database and report the failing step",
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if not args.message.strip():
        parser.error("MESSAGE must not be empty")
    return args


def one_line(exc: BaseException) -> str:
    text = shorten(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
    from scratch_db import scratch_database

    steps = [
        ("upgrade head", command.upgrade, "head"),
        ("downgrade -1", command.downgrade, "-1"),
        ("upgrade head again", command.upgrade, "head"),
    ]
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
                except Exception as exc:
                    return {"ok": False, "failed_step": label, "error": one_line(exc), "passed": passed}
                passed.append(label)
    except Exception as exc:
        step = "drop scratch database" if len(passed) == len(steps) else "create scratch database"
        return {"ok": False, "failed_step": step, "error": one_line(exc), "passed": passed}
    finally:
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved
    return {"ok": True, "failed_step": None, "error": None, "passed": passed}


@contextmanager
def capture_target_metadata() -> Iterator[dict[str, Any]]:
    """Record the ``target_metadata`` any env.py hands to ``context.configure()`` (ours or the user's own)."""
    from alembic.runtime.environment import EnvironmentContext

    seen: dict[str, Any] = {}
    original = EnvironmentContext.configure

    def configure(self: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("target_metadata") is not None:
            seen["metadata"] = kwargs["target_metadata"]
        return original(self, *args, **kwargs)

    EnvironmentContext.configure = configure  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        EnvironmentContext.configure = original  # type: ignore[method-assign]


def check_enums(url: Any, metadata: Any) -> list[Any]:
    """``enum_drift`` on a connection of our own (read-only catalog queries)."""
    from enum_drift import enum_drift, model_enums
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    if (
        metadata is None
        or url.get_backend_name() not in ("postgresql", "mysql", "mariadb")
        or not model_enums(metadata)
    ):
        return []

    async def run() -> list[Any]:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(enum_drift, metadata)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def generate(args: argparse.Namespace) -> tuple[int, dict[str, Any], list[str]]:
    """Autogenerate, review and (``--roundtrip``) replay one revision: (exit code, JSON result, human lines).

    Raises UsageError (2), EnvironmentProblem (3) or Problem (1).
    """
    require_module("sqlalchemy", "sqlalchemy[asyncio]")
    require_module("alembic")
    checked = check_url(args.url, source="--url" if args.url else None)  # malformed / sync driver: exit 2
    url = checked.url
    require_driver(checked.dialect)

    ini = Path(args.config)
    if not ini.is_file():
        raise EnvironmentProblem(
            f"no Alembic setup: {shown_path(ini)} not found (run setup-alembic.sh --metadata "
            "MODULE:ATTR in the project root, or pass --config)"
        )

    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError
    from revision_review import review_revision

    raw = url.render_as_string(hide_password=False)
    os.environ["DATABASE_URL"] = raw  # for env.py files that read the environment
    cfg = make_config(ini, raw)
    try:
        script_dir = ScriptDirectory.from_config(cfg)
    except CommandError as exc:
        raise EnvironmentProblem(f"alembic setup in {shown_path(ini)} is incomplete: {one_line(exc)}") from None
    version_dirs = [Path(p) for p in (script_dir.version_locations or ())] or [Path(script_dir.versions)]
    before = {p for d in version_dirs if d.is_dir() for p in d.rglob("*.py")}

    try:
        with capture_target_metadata() as captured:
            produced = run_alembic(command.revision, cfg, message=args.message, autogenerate=True)
    except CommandError as exc:
        text = str(exc)
        if "not up to date" in text:
            raise Problem(
                f"the database at {masked_url(url)} is not at the latest revision; run "
                "'alembic upgrade head' with the same DATABASE_URL first, then generate again"
            ) from None
        if "heads" in text.lower():
            raise Problem(f"alembic: {text} (merge them first: alembic merge heads -m 'merge heads')") from None
        raise Problem(f"alembic: {mask(text)}") from None
    except ModuleNotFoundError as exc:
        raise EnvironmentProblem(
            f"env.py could not import {exc.name!r}: {one_line(exc)} (install it, or fix target_metadata in alembic.ini)"
        ) from None
    except (OSError, ConnectionError) as exc:
        raise Problem(f"cannot connect to {masked_url(url)}: {one_line(exc)}") from None
    except Exception as exc:
        raise Problem(f"autogenerate failed against {masked_url(url)}: {one_line(exc)}") from None

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

    drift_error: str | None = None
    try:
        drifts = check_enums(url, captured.get("metadata"))
    except Exception as exc:
        drifts, drift_error = [], one_line(exc)
    if review is not None:  # MySQL/MariaDB: autogenerate compares ENUM columns itself and wrote the change
        altered = {
            f"{o.table}.{o.column}"
            for o in review.operations
            if o.op == "alter_column" and any(k.arg == "type_" for k in o.node.keywords)
        }
        drifts = [d for d in drifts if not (d.type_name is None and set(d.tables) <= altered)]
    drift_json = [
        {
            "rule": "enum_drift",
            "type": d.type_name,
            "columns": d.tables,
            "missing_in_database": d.missing_in_database,
            "extra_in_database": d.extra_in_database,
            "statements": d.statements,
            "message": d.message(),
        }
        for d in drifts
    ]
    drift_lines = [f"  [enum_drift] {d.message()}" for d in drifts]
    drift_lines += [f"  enum check could not run: {drift_error}"] if drift_error else []
    code = EXIT_PROBLEMS if any(d.missing_in_database for d in drifts) else EXIT_OK

    if review is None:
        result = {
            "ok": code == EXIT_OK,
            **EMPTY_RESULT,
            "enum_drift": drift_json,
            "message": "no changes: the models match the database",
        }
        lines = ["no changes: the models match the database; no revision file written"]
        if drift_lines:
            lines = ["no table or column changes; no revision file written", "enum drift:", *drift_lines]
        return code, result, lines

    revision_file = new_files[0]
    result = {
        "ok": True,
        "revision_file": str(revision_file.resolve()),
        "revision": review.revision,
        **review.to_json(),
        "enum_drift": drift_json,
    }
    ops_shown, ops_more = bounded(review.operations, 30)
    warn_shown, warn_more = bounded(review.warnings, 30)
    lines = [
        f"created {shown_path(revision_file)}",
        f"operations ({len(review.operations)}): "
        + ", ".join(o.describe() for o in ops_shown)
        + (f", ... and {ops_more} more" if ops_more else ""),
    ]
    if review.warnings:
        lines.append(f"warnings ({len(review.warnings)}):")
        lines += [f"  line {w.line}: [{w.rule}] {w.message}" for w in warn_shown]
        if warn_more:
            lines.append(f"  ... and {warn_more} more")
    else:
        lines.append("warnings: none")
    notes_shown, _ = bounded(review.notes, 10)
    lines += [f"  note, line {n.line}: [{n.rule}] {n.message}" for n in notes_shown]
    if drift_lines:
        lines += ["enum drift:", *drift_lines]

    if args.roundtrip:
        outcome = roundtrip(ini, url, args.json)
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
    return code, result, lines


def main(argv: list[str]) -> int:
    """The command line: one exit path for every outcome (UsageError 2, EnvironmentProblem 3, Problem 1)."""
    as_json = wants_json(argv)
    try:
        args = parse_args(argv)
        code, result, lines = generate(args)
    except UsageError as exc:
        fail(EXIT_USAGE, str(exc), as_json=as_json, extra=EMPTY_RESULT)
    except EnvironmentProblem as exc:
        fail(EXIT_ENV, str(exc), as_json=as_json, extra=EMPTY_RESULT)
    except Problem as exc:
        fail(EXIT_PROBLEMS, str(exc), as_json=as_json, extra=EMPTY_RESULT)
    emit(result, as_json=as_json, human=lines)
    return code


class MaskingStream:
    """A text stream that masks secrets in everything written through it (line-buffered)."""

    def __init__(self, stream: Any) -> None:
        self.stream, self.pending = stream, ""

    def write(self, text: str) -> int:
        self.pending += text
        if "\n" in self.pending:
            done, _, self.pending = self.pending.rpartition("\n")
            self.stream.write(mask(done) + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(mask(self.pending))
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


if __name__ == "__main__":
    sys.stderr = MaskingStream(sys.stderr)  # alembic/driver log lines are masked too
    try:
        sys.exit(main(sys.argv[1:]))
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        fail(
            EXIT_PROBLEMS,
            f"generate-migration failed: {one_line(exc)}",
            as_json=wants_json(sys.argv[1:]),
            extra=EMPTY_RESULT,
        )
    finally:
        sys.stderr.flush()

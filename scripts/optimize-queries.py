"""optimize-queries: find N+1 queries, missing indexes and async SQLAlchemy anti-patterns.

Runtime mode runs a command with every SQLAlchemy engine instrumented (sitecustomize on
PYTHONPATH, class-level engine events; see scripts/sqlprobe/recorder.py) and analyses what ran.
Static mode parses Python sources (AST) for patterns that cause those problems.
Run ``bash scripts/optimize-queries.sh --help`` for usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROBE = HERE / "sqlprobe"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(PROBE))

import scriptlib
from scriptlib import EXIT_ENV, EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, UsageError

PROG = "optimize-queries.sh"
RANK = {"error": 0, "warning": 1, "info": 2}
HUMAN_LIMIT = 50
JSON_LIMIT = 500
SKIPPED_LIMIT = 50

USAGE = f"""usage: {PROG} [--threshold N] [--slow-ms MS] [--explain | --no-explain] [--include-test-tables]
                [--report FILE] [--json] -- COMMAND [ARGS...]
       {PROG} --static PATH... [--json]

Runtime mode: runs COMMAND (a script, pytest, an app's self-check) with every SQLAlchemy engine
instrumented, then reports on stderr. COMMAND's stdout/stderr pass through untouched.
  n_plus_one            same statement >= N times from one line (same callers) with different parameters
  repeated_identical    same statement with the same parameters >= N times on one connection
  slow_query            a read (or UPDATE/DELETE with WHERE) slower than --slow-ms; set-up writes/DDL not
  missing_index         the plan reads a whole table to filter on columns no index could serve (one
                        finding per statement: composite or expression index); booleans and
                        discriminators left out
  unindexed_foreign_key the plan reads a whole table to filter/join on a foreign key no index leads with
Static mode: parses Python files/folders (AST, nothing is imported or run) for
  lazy_load_in_async, query_in_loop, relationship_without_lazy, joinedload_collection_without_unique,
  session_shared_across_tasks, values_list_bulk_insert, queuepool_on_async_engine,
  legacy_declarative_base, commit_after_yield, text_with_fstring, unbounded_list_query.
  `# optimize-queries: ignore[rule]` on a line suppresses that finding there.

options:
  --threshold N   repetitions that make an N+1 / repeated query (default 5, min 2)
  --slow-ms MS    report executions slower than MS milliseconds (default 500; 0 = off)
  --explain       index checks also for UPDATE/DELETE (default: SELECTs only). Index checks read the
                  catalog and one EXPLAIN per statement shape, in the command's own connection,
                  never ANALYZE; PostgreSQL: SET LOCAL enable_seqscan = off in a rolled-back SAVEPOINT
  --no-explain    no catalog reads, no EXPLAIN: no index findings
  --include-test-tables  also report index findings on tables whose models are defined only for
                  tests (a tests/ folder, conftest.py, test_*.py); by default they are only counted
  --report FILE   also write the runtime report as JSON: {{"statements": int, "findings": [...], ...}}
  --static PATH   static mode over .py files / folders (several allowed)
  --json          static: one JSON object on stdout; runtime: the report as one JSON line on stderr
                  (stdout belongs to COMMAND; use --report FILE to get a file)
  -h, --help      this text

Findings (sorted by severity error > warning > info) carry rule, severity, file, line (runtime:
the user's call site), message, fix. Parameter values are never printed; passwords are masked.

exit codes: 0 no findings; 1 findings, or (static) a file that could not be parsed; 2 bad usage
(unknown option, missing path, command not found); 3 environment problem (runtime: instrumentation
could not load in COMMAND; static: files need a newer Python, named in "needs_python"); when
COMMAND itself fails, its own exit status. A skipped file is never a clean result: "ok" is false,
"skipped_count" and "skipped_by_reason" count them all.

example:
  bash scripts/{PROG} --report /tmp/oq.json -- python -m pytest -q tests/test_api.py
  bash scripts/{PROG} --static app/ --json
"""


def build_parser() -> scriptlib.ArgumentParser:
    p = scriptlib.ArgumentParser(prog=PROG, add_help=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--threshold", type=int, default=5)
    p.add_argument("--slow-ms", type=float, default=500.0)
    p.add_argument("--explain", action="store_true")
    p.add_argument("--no-explain", action="store_true")
    p.add_argument("--include-test-tables", action="store_true")
    p.add_argument("--report")
    p.add_argument("--static", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true")
    return p


def sort_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(findings, key=lambda f: (RANK.get(f["severity"], 9), f["file"], f["line"], f["rule"]))


def human_lines(findings: list[dict[str, Any]], header: str) -> list[str]:
    shown, more = scriptlib.bounded(findings, HUMAN_LIMIT)
    lines = [header]
    for f in shown:
        lines.append(f"{f['severity']:<7} {f['rule']:<36} {f['file']}:{f['line']}")
        lines.append(f"        {f['message']}")
        if f.get("called_from"):
            lines.append(f"        called from: {' <- '.join(f['called_from'])}")
        lines.append(f"        fix: {f['fix']}")
    if more:
        lines.append(f"... and {more} more findings (use --json / --report for all, up to {JSON_LIMIT})")
    return lines


def summary(findings: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for f in findings:
        out[f["rule"]] = out.get(f["rule"], 0) + 1
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- static


def run_static(paths: list[str], as_json: bool) -> int:
    import static_rules

    _, missing = static_rules.iter_python_files(paths)
    if missing:
        raise UsageError("no such file or directory: " + ", ".join(repr(m) for m in missing[:5]))
    result = static_rules.check_paths(paths)
    findings = sort_findings(result.findings)
    skipped = result.skipped
    needs = result.needs_python
    shown_skips, more_skips = scriptlib.bounded(skipped, SKIPPED_LIMIT)
    for s in shown_skips:
        scriptlib.info(f"skipped {s['file']}: {s['reason']}")
    if more_skips:
        scriptlib.info(f"... and {more_skips} more skipped file(s) (--json lists up to {SKIPPED_LIMIT})")
    limited, more = scriptlib.bounded(findings, JSON_LIMIT)
    payload = {
        "ok": not findings and not skipped,
        "mode": "static",
        "files": result.files,
        "findings": limited,
        "omitted": more,
        "summary": summary(findings),
        "skipped_count": len(skipped),
        "skipped_by_reason": result.skipped_by_reason(),
        "needs_python": needs,
        "python": ".".join(map(str, sys.version_info[:3])),
        "skipped": shown_skips,
        "skipped_omitted": more_skips,
    }
    header = f"optimize-queries --static: {result.files} file(s), {len(findings)} finding(s)" + (
        f" {summary(findings)}" if findings else ""
    )
    human = human_lines(findings, header)
    if skipped:
        human.append(
            f"INCOMPLETE: {len(skipped)} file(s) not checked {result.skipped_by_reason()}"
            + (f"; rerun with Python >= {needs} (running {sys.version_info[0]}.{sys.version_info[1]})" if needs else "")
            + " (listed on stderr)"
        )
    scriptlib.emit(payload, as_json=as_json, human=human)
    if needs:
        return EXIT_ENV  # the result is incomplete until a newer interpreter reads those files
    return EXIT_PROBLEMS if findings or skipped else EXIT_OK


# --------------------------------------------------------------------------- runtime


def explain_kinds(args: argparse.Namespace) -> str:
    if args.no_explain:
        return "0"
    return "SELECT,UPDATE,DELETE" if args.explain else "SELECT"


def run_runtime(args: argparse.Namespace, command: list[str], as_json: bool) -> int:
    import runtime_rules

    report_path: Path | None = None
    if args.report:
        report_path = Path(args.report).expanduser()
        if not report_path.parent.is_dir():
            raise UsageError(f"--report: directory {str(report_path.parent)!r} does not exist")
    if shutil.which(command[0]) is None and not Path(command[0]).exists():
        raise UsageError(f"command not found: {command[0]!r}")
    record_dir = Path(tempfile.mkdtemp(prefix="optimize-queries-"))
    env = dict(os.environ)
    site_dir = str(PROBE / "site")
    env["PYTHONPATH"] = site_dir + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["OPTIMIZE_QUERIES_DIR"] = str(record_dir)
    env["OPTIMIZE_QUERIES_EXPLAIN"] = explain_kinds(args)
    slow_ms = args.slow_ms if args.slow_ms and args.slow_ms > 0 else None
    if slow_ms is not None:
        env["OPTIMIZE_QUERIES_SLOW_MS"] = repr(slow_ms)
    else:
        env.pop("OPTIMIZE_QUERIES_SLOW_MS", None)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the command; we wait for it
    try:
        try:
            proc = subprocess.run(command, env=env)
        except (FileNotFoundError, PermissionError) as exc:
            raise UsageError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
        finally:
            signal.signal(signal.SIGINT, previous)
        code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
        records, problems = runtime_rules.load_records(record_dir)
    finally:
        shutil.rmtree(record_dir, ignore_errors=True)
    analysis = runtime_rules.analyse(
        records, threshold=args.threshold, slow_ms=slow_ms, cwd=Path.cwd(), include_test_tables=args.include_test_tables
    )
    findings = sort_findings(analysis["findings"])
    limited, more = scriptlib.bounded(findings, JSON_LIMIT)
    errors = runtime_rules.record_errors(records)
    instrumented = any(r.get("sqlalchemy") for r in records)
    report = {
        "ok": not findings and code == 0 and bool(records),
        "mode": "runtime",
        "statements": analysis["statements"],
        "findings": limited,
        "omitted": more,
        "summary": summary(findings),
        "processes": analysis["processes"],
        "explain": explain_kinds(args),
        "explained_shapes": analysis["explained"],
        "test_table_findings": analysis["test_table_findings"],
        "threshold": args.threshold,
        "command_exit_code": code,
        "instrumentation_errors": dict(list(errors.items())[:20]),
    }
    notes: list[str] = list(problems)
    if not records:
        notes.append(
            "no instrumented Python process reported (COMMAND is not Python, ran with -I/-S, or replaced PYTHONPATH)"
        )
    elif not instrumented:
        notes.append("the command's Python processes never imported SQLAlchemy: nothing to analyse")
    if analysis["test_table_findings"]:
        notes.append(
            f"{analysis['test_table_findings']} index finding(s) on tables defined only for tests not shown (--include-test-tables)"
        )
    for k, v in list(errors.items())[:5]:
        notes.append(f"instrumentation: {k} x{v}")
    report["notes"] = notes
    if report_path is not None:
        try:
            report_path.write_text(scriptlib.mask(json.dumps(report, default=str, indent=1)) + "\n", encoding="utf-8")
        except OSError as exc:
            notes.append(f"could not write --report {str(report_path)!r}: {exc.strerror}")
    if as_json:
        sys.stderr.write(scriptlib.mask(json.dumps(report, default=str)) + "\n")
    else:
        header = (
            f"optimize-queries: {analysis['statements']} statement(s) in {analysis['processes']} process(es), {len(findings)} finding(s)"
            + (f" {summary(findings)}" if findings else "")
        )
        for line in human_lines(findings, header) + [f"note: {n}" for n in notes]:
            sys.stderr.write(scriptlib.mask(line) + "\n")
    sys.stderr.flush()
    if code != 0:
        return code
    if not records:
        return EXIT_ENV
    return EXIT_PROBLEMS if findings else EXIT_OK


def main(argv: list[str]) -> int:
    if "--" in argv:
        cut = argv.index("--")
        opts, command = argv[:cut], argv[cut + 1 :]
    else:
        opts, command = argv, []
    as_json = "--json" in opts
    try:
        args = build_parser().parse_args(opts)
        if args.help:
            sys.stdout.write(USAGE)
            return EXIT_OK
        if args.threshold < 2:
            raise UsageError("--threshold must be at least 2")
        if args.slow_ms is not None and args.slow_ms < 0:
            raise UsageError("--slow-ms must be >= 0")
        if args.explain and args.no_explain:
            raise UsageError("--explain and --no-explain contradict each other")
        if args.static:
            if command:
                raise UsageError("--static takes paths, not a command after --")
            return run_static(args.static, as_json)
        if not command:
            raise UsageError("nothing to do: give a command after -- (runtime mode) or --static PATH...")
        scriptlib.check_env_url()  # the command's DATABASE_URL: its password masked; malformed -> exit 2
        return run_runtime(args, command, as_json)
    except UsageError as exc:
        print(f"usage: {PROG} [options] -- COMMAND [ARGS...] | {PROG} --static PATH... (see --help)", file=sys.stderr)
        scriptlib.fail(EXIT_USAGE, str(exc), as_json=as_json and not command)
    except scriptlib.EnvironmentProblem as exc:
        scriptlib.fail(EXIT_ENV, str(exc), as_json=as_json and not command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

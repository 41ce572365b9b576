"""scripts/optimize-queries.sh: the corpus (tests/corpus/*.py) in both modes on every backend, and
the script contract (exit codes, untouched command output, no secrets, subprocesses, paths).

Corpus labels: a header ``# expect-runtime: rule, rule`` / ``# expect-static: ...`` (optionally
``# expect-runtime[mysql]: ...`` for one backend), and on the line each finding must point at, a
comment ``# runtime: rule ...  static: rule ...``. The reported rule set must equal the header's
(so clean apps, with empty headers, must get no finding), and every marked line must be reported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "optimize-queries.sh"
CORPUS = ROOT / "tests" / "corpus"
APPS = sorted(p for p in CORPUS.glob("*.py") if not p.name.startswith((".", "_")))
STATIC_CASES = sorted((CORPUS / "static").glob("*.py"))  # read by static mode only, never run
TIMEOUT = 180

sys.path.insert(0, str(ROOT / "scripts" / "sqlprobe"))
from runtime_rules import RUNTIME_RULES, analyse
from static_rules import STATIC_RULES

HEADER = re.compile(r"^# expect-(runtime|static)(?:\[(\w+)\])?:(.*)$")
MARK = re.compile(r"\b(runtime|static):\s*([\w, ]+?)(?=\s+(?:runtime|static):|\s*$)")


def rules_of(text: str) -> set[str]:
    return {r.strip() for r in text.split(",") if r.strip()}


def expectations(path: Path) -> dict[str, Any]:
    """{"runtime": {backend|None: set}, "static": set, "lines": {(mode, rule): {line, ...}}}"""
    out: dict[str, Any] = {"runtime": {}, "static": set(), "lines": {}}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = HEADER.match(line)
        if m:
            mode, backend, rules = m.groups()
            if mode == "runtime":
                out["runtime"][backend] = rules_of(rules)
            else:
                out["static"] = rules_of(rules)
            continue
        if "#" in line and not line.lstrip().startswith("#"):
            for mode, rules in MARK.findall(line[line.index("#") :]):
                for rule in rules_of(rules):
                    out["lines"].setdefault((mode, rule), set()).add(number)
    return out


def expected_runtime(exp: dict[str, Any], backend: str) -> set[str]:
    return exp["runtime"].get(backend, exp["runtime"].get(None, set()))


def run_tool(
    args: list[str],
    *,
    url: str | None = None,
    cwd: Path = ROOT,
    env_extra: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run optimize-queries. A runtime run gets ``--slow-ms 0`` unless it sets ``--slow-ms`` or runs
    the slow_query app: on a loaded machine any statement can take 500 ms, and a slow_query finding
    must not change what a test about other rules sees."""
    if "--" in args and "--slow-ms" not in args and not any("slow_query" in a for a in args):
        args = ["--slow-ms", "0", *args]
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    env["PYTHON"] = sys.executable
    if url:
        env["DATABASE_URL"] = url
    env.update(env_extra or {})
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def last_json(stderr: str) -> dict[str, Any]:
    line = [ln for ln in stderr.strip().splitlines() if ln.startswith("{")][-1]
    return json.loads(line)


def url_for(backend: str, server_url: str) -> str | None:
    return None if backend == "sqlite" else server_url


# --------------------------------------------------------------------------- corpus


def test_corpus_inventory() -> None:
    """>= 10 apps with known problems, >= 4 clean ones, and every rule is exercised by some app."""
    exps = {p.stem: expectations(p) for p in APPS}
    bad = [n for n, e in exps.items() if e["static"] or any(e["runtime"].values())]
    clean = [n for n, e in exps.items() if n not in bad]
    assert len(bad) >= 10, bad
    assert len(clean) >= 4, clean
    runtime_covered = set().union(*(e["runtime"].get(None, set()) for e in exps.values()))
    static_covered = set().union(*(e["static"] for e in exps.values()))
    assert runtime_covered == set(RUNTIME_RULES), set(RUNTIME_RULES) - runtime_covered
    assert static_covered == set(STATIC_RULES), set(STATIC_RULES) - static_covered
    for name, e in exps.items():
        for (mode, rule), lines in e["lines"].items():
            declared = e["static"] if mode == "static" else e["runtime"].get(None, set())
            assert rule in declared, f"{name}: line {sorted(lines)} marks {mode} {rule}, not in its header"


@pytest.mark.parametrize("app", APPS, ids=[p.stem for p in APPS])
def test_corpus_runtime(app: Path, backend: str, server_url: str, tmp_path: Path) -> None:
    exp = expectations(app)
    report_file = tmp_path / "report.json"
    proc = run_tool(
        ["--explain", "--report", str(report_file), "--", sys.executable, str(app)], url=url_for(backend, server_url)
    )
    assert f"{app.stem}: ok" in proc.stdout, f"the app itself failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    report = json.loads(report_file.read_text())
    assert report["statements"] > 0 and report["processes"] == 1
    assert report["instrumentation_errors"] == {}, report["instrumentation_errors"]
    found = {f["rule"] for f in report["findings"]}
    wanted = expected_runtime(exp, backend)
    assert found == wanted, (
        f"{app.stem} on {backend}: expected {sorted(wanted)}, got {json.dumps(report['findings'], indent=1)}"
    )
    assert proc.returncode == (1 if wanted else 0), proc.stderr[-3000:]
    for (mode, rule), lines in exp["lines"].items():
        if mode == "runtime" and rule in wanted:
            reported = {
                f["line"] for f in report["findings"] if f["rule"] == rule and f["file"] == f"tests/corpus/{app.name}"
            }
            assert lines <= reported, f"{rule}: expected at lines {sorted(lines)}, reported at {sorted(reported)}"
    for f in report["findings"]:
        assert set(f) >= {"rule", "severity", "file", "line", "message", "fix"}
        assert f["severity"] in ("error", "warning", "info") and f["fix"]
    if wanted & {"missing_index", "unindexed_foreign_key"}:
        assert report["explained_shapes"] > 0


@pytest.mark.parametrize("app", APPS, ids=[p.stem for p in APPS])
def test_corpus_static(app: Path) -> None:
    exp = expectations(app)
    proc = run_tool(["--static", str(app.relative_to(ROOT)), "--json"])
    result = json.loads(proc.stdout)
    found = {f["rule"] for f in result["findings"]}
    assert found == exp["static"], json.dumps(result["findings"], indent=1)
    assert proc.returncode == (1 if exp["static"] else 0)
    for (mode, rule), lines in exp["lines"].items():
        if mode == "static":
            reported = {f["line"] for f in result["findings"] if f["rule"] == rule}
            assert lines <= reported, f"{rule}: expected at lines {sorted(lines)}, reported at {sorted(reported)}"


@pytest.mark.parametrize("case", STATIC_CASES, ids=[p.stem for p in STATIC_CASES])
def test_static_regression_cases(case: Path) -> None:
    """Real-world-shaped true and false positives: exactly the marked lines are reported."""
    exp = expectations(case)
    proc = run_tool(["--static", str(case.relative_to(ROOT)), "--json"])
    result = json.loads(proc.stdout)
    got = sorted((f["rule"], f["line"]) for f in result["findings"])
    want = sorted((rule, line) for (mode, rule), lines in exp["lines"].items() if mode == "static" for line in lines)
    assert got == want, json.dumps(result["findings"], indent=1)
    assert {r for r, _ in want} == exp["static"]


def test_static_regression_cases_cover_every_rule() -> None:
    covered = set().union(*(expectations(p)["static"] for p in STATIC_CASES))
    assert covered == set(STATIC_RULES), set(STATIC_RULES) - covered
    for p in [*APPS, *STATIC_CASES]:
        first = p.read_text(encoding="utf-8").splitlines()[0]
        assert re.match(
            r"# (DELIBERATELY WRONG|CLEAN) example for the optimize-queries checker's tests.*never copy", first
        ), p


def test_static_whole_corpus_matches_per_file() -> None:
    """One run over the folder reports exactly what the per-file runs report, sorted by severity."""
    proc = run_tool(["--static", "tests/corpus", "--json"])
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["files"] == len(APPS) + len(STATIC_CASES)
    got = sorted((f["file"], f["rule"]) for f in result["findings"] if f["file"].count("/") == 2)
    want = sorted((f"tests/corpus/{p.name}", r) for p in APPS for r in expectations(p)["static"])
    assert got == want
    ranks = [{"error": 0, "warning": 1, "info": 2}[f["severity"]] for f in result["findings"]]
    assert ranks == sorted(ranks)


def test_index_checks_on_by_default_and_no_explain(backend: str, server_url: str) -> None:
    """Index checks are on by default for SELECTs; with --no-explain no EXPLAIN/catalog query runs:
    missing_index is not reported, N+1 still is."""
    app = str(CORPUS / "missing_index_filter.py")
    default = last_json(run_tool(["--json", "--", sys.executable, app], url=url_for(backend, server_url)).stderr)
    assert [f["rule"] for f in default["findings"]] == ["missing_index"] and default["explain"] == "SELECT"
    proc = run_tool(["--no-explain", "--json", "--", sys.executable, app], url=url_for(backend, server_url))
    report = last_json(proc.stderr)
    assert proc.returncode == 0 and report["findings"] == [] and report["explained_shapes"] == 0
    proc = run_tool(
        ["--no-explain", "--json", "--", sys.executable, str(CORPUS / "nplus1_query_in_loop.py")],
        url=url_for(backend, server_url),
    )
    assert proc.returncode == 1 and {f["rule"] for f in last_json(proc.stderr)["findings"]} == {"n_plus_one"}


def test_threshold_option(backend: str, server_url: str) -> None:
    """The N+1 app repeats its query 6 times: --threshold 7 is quiet, the default 5 is not."""
    app = str(CORPUS / "nplus1_query_in_loop.py")
    quiet = run_tool(["--threshold", "7", "--json", "--", sys.executable, app], url=url_for(backend, server_url))
    assert quiet.returncode == 0 and last_json(quiet.stderr)["findings"] == []


# --------------------------------------------------------------------------- contract


def test_help_and_usage_errors() -> None:
    helped = run_tool(["--help"])
    assert helped.returncode == 0 and "exit codes" in helped.stdout and "example" in helped.stdout
    for args in (
        [],
        ["--bogus"],
        ["--threshold", "1", "--", "true"],
        ["--static"],
        ["--static", "no/such/dir"],
        ["--", "no-such-command-xyz"],
    ):
        proc = run_tool([*args, "--json"] if "--" not in args else args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "error:" in proc.stderr
    bad = run_tool(["--static", "no/such/dir", "--json"])
    payload = json.loads(bad.stdout)
    assert payload["ok"] is False and payload["exit_code"] == 2 and len(bad.stdout.strip().splitlines()) == 1


def test_command_output_and_exit_status_untouched(tmp_path: Path) -> None:
    script = tmp_path / "prog.py"
    script.write_text(
        "import sys\nsys.stdout.write('out \\u00e9 1\\nno newline')\nsys.stderr.write('err line\\n')\nsys.exit(7)\n"
    )
    plain = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    wrapped = run_tool(["--", sys.executable, str(script)])
    assert wrapped.returncode == 7 == plain.returncode
    assert wrapped.stdout == plain.stdout
    assert wrapped.stderr.startswith(plain.stderr)
    app = CORPUS / "nplus1_lazy_load.py"
    plain_app = subprocess.run(
        [sys.executable, str(app)],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    wrapped_app = run_tool(["--", sys.executable, str(app)])
    assert wrapped_app.stdout == plain_app.stdout and wrapped_app.returncode == 1


def test_no_instrumented_process_is_an_environment_problem() -> None:
    proc = run_tool(["--", "bash", "-c", "echo hi"])
    assert proc.returncode == 3 and proc.stdout == "hi\n" and "no instrumented Python process" in proc.stderr


WORKLOAD = textwrap.dedent(
    """
    import asyncio, os, subprocess, sys
    sys.path.insert(0, {root!r})
    from sqlalchemy import text
    from templates.scratch import scratch_engine

    SECRET = "tok-" + "Zq81xx"  # built at run time: appears in parameters, never in the report

    async def main(n):
        async with scratch_engine() as engine:
            async with engine.connect() as conn:
                await conn.execute(text("CREATE TABLE sec_items (id INTEGER PRIMARY KEY, token VARCHAR(40))"))
                await conn.execute(text("INSERT INTO sec_items (id, token) VALUES (1, :t)"), {{"t": SECRET}})
                found = await conn.scalar(text("SELECT id FROM sec_items WHERE token = :t"), {{"t": SECRET}})
                assert found == 1
                for i in range(n):
                    await conn.execute(text("SELECT id FROM sec_items WHERE token = :a OR id = :b"), {{"a": SECRET + str(i), "b": i}})
                for i in range(n):
                    await conn.execute(text(f"SELECT '{{SECRET}}-{{i}}' AS c"))
        print("workload ok", os.getpid())

    if __name__ == "__main__":
        asyncio.run(main(6))
        if len(sys.argv) > 1 and sys.argv[1] == "spawn":
            for _ in range(2):
                subprocess.run([sys.executable, __file__], check=True)
    """
)


def test_secrets_never_reported_and_subprocesses_counted(tmp_path: Path, backend: str, server_url: str) -> None:
    """Parameter values (bound, inlined, or shown by a PostgreSQL custom plan) never reach the
    report; each Python subprocess reports; paths with spaces, relative to another cwd."""
    folder = tmp_path / "dir with space"
    folder.mkdir()
    (folder / "work load.py").write_text(WORKLOAD.format(root=str(ROOT)))
    report = folder / "report file.json"
    proc = run_tool(
        ["--explain", "--report", str(report), "--", sys.executable, "dir with space/work load.py", "spawn"],
        cwd=tmp_path,
        url=url_for(backend, server_url),
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.count("workload ok") == 3
    data = json.loads(report.read_text())
    assert data["processes"] == 3
    findings = [f for f in data["findings"] if f["rule"] == "n_plus_one"]
    assert len(findings) == 6 and {f["file"] for f in findings} == {"dir with space/work load.py"}
    assert [f["table"] for f in data["findings"] if f["rule"] == "missing_index"] == [
        "sec_items"
    ]  # one per (table, column)
    everything = proc.stdout + proc.stderr + report.read_text()
    assert "Zq81xx" not in everything


def test_existing_sitecustomize_still_runs(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    marker = tmp_path / "marker.txt"
    (theirs / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    proc = run_tool(["--", sys.executable, str(CORPUS / "nplus1_lazy_load.py")], env_extra={"PYTHONPATH": str(theirs)})
    assert marker.read_text() == "ran"
    assert proc.returncode == 1 and "n_plus_one" in proc.stderr


def test_pytest_as_the_command(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_app.py").write_text(
        textwrap.dedent(
            f"""
            import asyncio, runpy, sys
            sys.path.insert(0, {str(ROOT)!r})

            def test_app():
                module = runpy.run_path({str(CORPUS / "nplus1_query_in_loop.py")!r})
                asyncio.run(module["main"]())
            """
        )
    )
    proc = run_tool(
        ["--json", "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_app.py"], cwd=tmp_path
    )
    assert "1 passed" in proc.stdout
    report = last_json(proc.stderr)
    assert proc.returncode == 1 and [f["rule"] for f in report["findings"]] == ["n_plus_one"]


AUTOCOMMIT_APP = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    from sqlalchemy import text
    from templates.scratch import scratch_engine

    async def main():
        async with scratch_engine() as engine:
            async with engine.begin() as conn:
                await conn.execute(text("CREATE TABLE ac_items (id INTEGER PRIMARY KEY, tag VARCHAR(10))"))
                await conn.execute(text("INSERT INTO ac_items (id, tag) VALUES (1, 'x'), (2, 'y')"))
            auto = await engine.connect()
            await auto.execution_options(isolation_level="AUTOCOMMIT")
            got = await auto.scalar(text("SELECT id FROM ac_items WHERE tag = :t"), {{"t": "y"}})
            await auto.close()
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO ac_items (id, tag) VALUES (3, 'z')"))
                seen = await conn.scalar(text("SELECT count(*) FROM ac_items WHERE tag = :t"), {{"t": "z"}})
                await conn.rollback()
            async with engine.connect() as conn:
                left = await conn.scalar(text("SELECT count(*) FROM ac_items"))
            assert (got, seen, left) == (2, 1, 2), (got, seen, left)
        print("autocommit ok")

    asyncio.run(main())
    """
)


def test_explain_leaves_transactions_alone(tmp_path: Path, backend: str, server_url: str) -> None:
    """EXPLAIN runs inside the user's connection: a rolled-back transaction stays rolled back, an
    AUTOCOMMIT connection keeps working (PostgreSQL skips the plan there instead of failing)."""
    app = tmp_path / "autocommit_app.py"
    app.write_text(AUTOCOMMIT_APP.format(root=str(ROOT)))
    proc = run_tool(["--explain", "--json", "--", sys.executable, str(app)], url=url_for(backend, server_url))
    assert "autocommit ok" in proc.stdout, proc.stderr[-3000:]
    report = last_json(proc.stderr)
    assert {f["rule"] for f in report["findings"]} == {"missing_index"}
    assert proc.returncode == 1


def test_static_suppression_and_clean_exit(tmp_path: Path) -> None:
    src = tmp_path / "svc.py"
    src.write_text(
        textwrap.dedent(
            """
            async def load(session, ids):
                out = []
                for i in ids:
                    out.append(await session.get(object, i))  # optimize-queries: ignore[query_in_loop]
                for i in ids:
                    out.append(await session.get(object, i))  # optimize-queries: ignore[text_with_fstring]
                for i in ids:
                    out.append(await session.get(object, i))
                return out
            """
        )
    )
    result = json.loads(run_tool(["--static", str(src), "--json"]).stdout)
    assert [(f["rule"], f["line"]) for f in result["findings"]] == [("query_in_loop", 7), ("query_in_loop", 9)]
    clean = run_tool(["--static", str(CORPUS / "clean_eager_loading.py")])
    assert clean.returncode == 0 and "0 finding(s)" in clean.stdout


def test_static_leaves_correct_patterns_alone(tmp_path: Path) -> None:
    """Batched loops, executemany, DDL identifiers and write-only relationships are not findings."""
    src = tmp_path / "fine.py"
    src.write_text(
        textwrap.dedent(
            """
            from sqlalchemy import ForeignKey, insert, select, text
            from sqlalchemy.ext.asyncio import AsyncSession
            from sqlalchemy.orm import Mapped, WriteOnlyMapped, mapped_column, relationship

            class Box(Base):
                __tablename__ = "boxes"
                id: Mapped[int] = mapped_column(primary_key=True)
                events: WriteOnlyMapped["Ev"] = relationship()
                items: Mapped[list["Item"]] = relationship(lazy="raise")

            async def work(session: AsyncSession, keys: list[int], rows: list[dict], name: str) -> None:
                for start in range(0, len(keys), 500):
                    await session.scalars(select(Box).where(Box.id == keys[start]))
                for batch in chunks(keys):
                    await session.execute(select(Box).where(Box.id.in_(batch)))
                for group in groups:
                    await session.execute(insert(Box), rows)
                await session.execute(text(f'CREATE SCHEMA "{name}"'))
                await session.execute(text(f"DROP TABLE {name}"))
                boxes = (await session.scalars(select(Box))).all()
                for box in boxes:
                    box.items = []
            """
        )
    )
    result = json.loads(run_tool(["--static", str(src), "--json"]).stdout)
    assert result["findings"] == [], result["findings"]


LAYERED_APP = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {corpus!r})
    from nplus1_query_in_loop import Base, CpbTask
    from sqlalchemy import select
    from templates.scratch import scratch_engine
    from templates.database import create_sessionmaker

    async def tasks_of(session, project_id):
        return (await session.scalars(select(CpbTask).where(CpbTask.project_id == project_id))).all()

    async def service(session, ids):
        out = []
        for project_id in ids:
            out.append(await tasks_of(session, project_id))
        return out

    async def main():
        async with scratch_engine() as engine:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with create_sessionmaker(engine)() as session:
                await service(session, range(6))

    asyncio.run(main())
    """
)


def test_n_plus_one_names_the_callers(tmp_path: Path) -> None:
    """The call site is the repository function; called_from leads to the loop that calls it."""
    app = tmp_path / "layered.py"
    app.write_text(LAYERED_APP.format(root=str(ROOT), corpus=str(CORPUS)))
    proc = run_tool(["--json", "--", sys.executable, "layered.py"], cwd=tmp_path)
    (finding,) = last_json(proc.stderr)["findings"]
    assert (finding["rule"], finding["file"], finding["line"], finding["function"]) == (
        "n_plus_one",
        "layered.py",
        11,
        "tasks_of",
    )
    assert finding["called_from"][:2] == ["layered.py:16 in service", "layered.py:24 in main"]
    assert "selectinload(CpbProject.tasks)" in finding["fix"] and "CpbTask.project_id.in_(keys)" in finding["fix"]


def test_static_reports_unparseable_files(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("def f(:\n")
    (tmp_path / "loop.py").write_text(
        "async def f(session, ids):\n    for i in ids:\n        await session.get(object, i)\n"
    )
    proc = run_tool(["--static", str(tmp_path), "--json"])
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["files"] == 1 and result["ok"] is False
    assert [s["file"].endswith("broken.py") for s in result["skipped"]] == [True]
    assert result["skipped_count"] == 1 and result["skipped_by_reason"] == {"syntax_error": 1}
    assert "skipped" in proc.stderr and [f["rule"] for f in result["findings"]] == ["query_in_loop"]


def test_unreadable_files_are_never_a_clean_result(tmp_path: Path) -> None:
    """No finding but a file that could not be parsed: ok false and exit 1, never "ok": true / 0;
    the count is complete even when the list is cut."""
    for i in range(60):
        (tmp_path / f"broken_{i:02d}.py").write_text("def f(:\n")
    (tmp_path / "fine.py").write_text("x = 1\n")
    proc = run_tool(["--static", str(tmp_path), "--json"])
    result = json.loads(proc.stdout)
    assert proc.returncode == 1 and result["ok"] is False and result["findings"] == []
    assert result["skipped_count"] == 60 and len(result["skipped"]) == 50 and result["skipped_omitted"] == 10
    human = run_tool(["--static", str(tmp_path)])
    assert human.returncode == 1 and "INCOMPLETE: 60 file(s) not checked" in human.stdout


NEWER = [  # (version, source) for syntax this interpreter may not read
    ((3, 12), "type Pair = tuple[int, int]\n"),
    ((3, 14), "try:\n    pass\nexcept ValueError, TypeError:\n    pass\n"),
]


@pytest.mark.skipif(sys.version_info >= (3, 14), reason="this interpreter parses every syntax the test writes")
def test_files_newer_than_the_interpreter_name_the_version(tmp_path: Path) -> None:
    """Files using syntax newer than the running Python: exit 3 (environment), ok false, and the
    Python version that would read them."""
    newest = None
    for version, source in NEWER:
        if version > sys.version_info[:2]:
            (tmp_path / f"py{version[0]}{version[1]}.py").write_text(source)
            newest = version
    proc = run_tool(["--static", str(tmp_path), "--json"])
    result = json.loads(proc.stdout)
    assert proc.returncode == 3 and result["ok"] is False
    assert result["needs_python"] == "{}.{}".format(*newest)
    assert set(result["skipped_by_reason"]) == {"needs_newer_python"}
    assert all("needs Python >=" in s["reason"] for s in result["skipped"])


def test_sync_engines_are_instrumented_too(tmp_path: Path) -> None:
    app = tmp_path / "sync_app.py"
    app.write_text(
        textwrap.dedent(
            """
            from sqlalchemy import create_engine, text
            engine = create_engine("sqlite://")
            with engine.connect() as conn:
                conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"))
                conn.execute(text("INSERT INTO t (id, v) VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)"))
                for i in range(1, 6):
                    conn.execute(text("SELECT v FROM t WHERE v = :v"), {"v": i})
            engine.dispose()
            """
        )
    )
    proc = run_tool(["--explain", "--json", "--", sys.executable, str(app)])
    report = last_json(proc.stderr)
    assert proc.returncode == 1 and sorted(f["rule"] for f in report["findings"]) == ["missing_index", "n_plus_one"]


# --------------------------------------------------------------------------- index findings on real-shaped apps


def line_of(path: Path, marker: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if marker in line)


INDEX_APP = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {here!r})
    from sqlalchemy import Boolean, ForeignKey, String, delete, func, select
    from sqlalchemy.orm import Mapped, mapped_column
    from templates.base_model import Base
    from templates.scratch import scratch_engine
    from templates.database import create_sessionmaker
    from tests.fixture_models import IxFixtureOnly

    class IxAccount(Base):
        __tablename__ = "ix_accounts"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(80), index=True)
        city: Mapped[str] = mapped_column(String(40))
        plan: Mapped[str] = mapped_column(String(20))
        active: Mapped[bool] = mapped_column(Boolean, default=True)
        kind: Mapped[str] = mapped_column(String(20))
        __mapper_args__ = {{"polymorphic_on": "kind", "polymorphic_identity": "account"}}

    class IxProduct(Base):
        __tablename__ = "ix_products"
        id: Mapped[int] = mapped_column(primary_key=True)

    class IxTag(Base):
        __tablename__ = "ix_tags"
        id: Mapped[int] = mapped_column(primary_key=True)

    class IxProductTag(Base):  # composite primary key: (product_id, tag_id); tag_id leads no index
        __tablename__ = "ix_product_tags"
        product_id: Mapped[int] = mapped_column(ForeignKey("ix_products.id"), primary_key=True)
        tag_id: Mapped[int] = mapped_column(ForeignKey("ix_tags.id"), primary_key=True)

    async def run(session, stmt):  # the app's generic execute helper
        return (await session.execute(stmt)).all()

    async def by_city_and_plan(session):
        return await run(session, select(IxAccount.id).where(IxAccount.city == "Oslo", IxAccount.plan == "pro"))  # composite

    async def main():
        async with scratch_engine() as engine:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with create_sessionmaker(engine)() as session, session.begin():
                session.add_all([IxProduct(id=1), IxTag(id=1), IxTag(id=2), IxAccount(email="a@x", city="Oslo", plan="pro")])
                await session.flush()
                session.add_all([IxProductTag(product_id=1, tag_id=1), IxProductTag(product_id=1, tag_id=2), IxFixtureOnly(id=1, label="x")])
            async with create_sessionmaker(engine)() as session, session.begin():
                await by_city_and_plan(session)
                await run(session, select(IxAccount.id).where(IxAccount.active.is_(True)))  # boolean: not flagged
                await run(session, select(IxAccount.id).where(IxAccount.kind == "account"))  # discriminator
                await run(session, select(IxAccount.id).where(func.lower(IxAccount.email) == "a@x"))  # expression
                await run(session, select(IxProductTag.tag_id).where(IxProductTag.product_id == 1, IxProductTag.tag_id == 2))
                await session.execute(delete(IxProductTag).where(IxProductTag.product_id == 1, IxProductTag.tag_id == 2))
                await run(session, select(IxProductTag.product_id).where(IxProductTag.tag_id == 2))  # FK, no index
                await run(session, select(IxFixtureOnly.id).where(IxFixtureOnly.label == "x"))  # test-only table
        print("index app ok")

    asyncio.run(main())
    """
)
FIXTURE_MODELS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from sqlalchemy import String
    from sqlalchemy.orm import Mapped, mapped_column
    from templates.base_model import Base

    class IxFixtureOnly(Base):  # a model that exists only for the test suite
        __tablename__ = "ix_fixture_only"
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column(String(20))
    """
)


def test_index_findings_read_the_plan(tmp_path: Path, backend: str, server_url: str) -> None:
    """One finding per statement (composite), an expression index for lower(email), a composite
    primary key serving its FK filter, booleans/discriminators left out, test-only tables counted
    apart, and the call site plus its callers in the user's code."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "fixture_models.py").write_text(FIXTURE_MODELS.format(root=str(ROOT)))
    (tmp_path / "app.py").write_text(INDEX_APP.format(root=str(ROOT), here=str(tmp_path)))
    proc = run_tool(
        ["--explain", "--json", "--", sys.executable, "app.py"],
        cwd=tmp_path,
        url=url_for(backend, server_url),
    )
    assert "index app ok" in proc.stdout, proc.stderr[-3000:]
    report = last_json(proc.stderr)
    assert report["instrumentation_errors"] == {}
    got = sorted((f["rule"], f["table"], tuple(f["columns"])) for f in report["findings"])
    want = [("missing_index", "ix_accounts", ("city", "plan")), ("missing_index", "ix_accounts", ("lower(email)",))]
    if backend != "mysql":  # InnoDB indexes every foreign key by itself
        want.append(("unindexed_foreign_key", "ix_product_tags", ("tag_id",)))
    assert got == sorted(want), json.dumps(report["findings"], indent=1)
    composite = next(f for f in report["findings"] if f["columns"] == ["city", "plan"])
    assert 'Index("ix_ix_accounts_city_plan", "city", "plan")' in composite["fix"]
    caller = line_of(tmp_path / "app.py", '"pro"))  # composite')
    assert (composite["file"], composite["function"]) == ("app.py", "run") and composite["called_from"][
        0
    ] == f"app.py:{caller} in by_city_and_plan"
    expression = next(f for f in report["findings"] if f["columns"] == ["lower(email)"])
    assert "func.lower(IxAccount.email)" in expression["fix"]
    assert report["test_table_findings"] == 1 and any("--include-test-tables" in n for n in report["notes"])
    shown = last_json(
        run_tool(
            ["--include-test-tables", "--json", "--", sys.executable, "app.py"],
            cwd=tmp_path,
            url=url_for(backend, server_url),
        ).stderr
    )
    assert [f["test_table"] for f in shown["findings"] if f["table"] == "ix_fixture_only"] == [True]


SEQUENTIAL_APP = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {corpus!r})
    from nplus1_query_in_loop import Base, CpbTask
    from sqlalchemy import select
    from templates.scratch import scratch_engine
    from templates.database import create_sessionmaker

    async def tasks_of(session, project_id):
        return (await session.scalars(select(CpbTask).where(CpbTask.project_id == project_id))).all()

    async def main():
        async with scratch_engine() as engine:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with create_sessionmaker(engine)() as session:
                await tasks_of(session, 1)  # three sequential calls with different parameters: not N+1
                await tasks_of(session, 2)
                await tasks_of(session, 3)
                if len(sys.argv) > 1:
                    for project_id in range(3):
                        await tasks_of(session, project_id)

    asyncio.run(main())
    """
)


def test_sequential_calls_are_not_n_plus_one(tmp_path: Path) -> None:
    app = tmp_path / "sequential.py"
    app.write_text(SEQUENTIAL_APP.format(root=str(ROOT), corpus=str(CORPUS)))
    quiet = run_tool(["--threshold", "3", "--json", "--", sys.executable, "sequential.py"], cwd=tmp_path)
    assert quiet.returncode == 0 and last_json(quiet.stderr)["findings"] == []
    loop = run_tool(["--threshold", "3", "--json", "--", sys.executable, "sequential.py", "loop"], cwd=tmp_path)
    (finding,) = last_json(loop.stderr)["findings"]
    assert (
        finding["rule"] == "n_plus_one"
        and finding["called_from"][0] == f"sequential.py:{line_of(app, 'await tasks_of(session, project_id)')} in main"
    )


BROKEN_REGISTRY_APP = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {root!r})
    sys.path.insert(0, {corpus!r})
    from sqlalchemy import ForeignKey, select
    from sqlalchemy.exc import InvalidRequestError
    from sqlalchemy.orm import DeclarativeBase, Mapped, configure_mappers, mapped_column, relationship
    from nplus1_query_in_loop import Base, CpbTask
    from templates.scratch import scratch_engine
    from templates.database import create_sessionmaker

    class Broken(DeclarativeBase):
        pass

    class BrokenParent(Broken):  # a test suite's deliberately invalid model: its registry never configures
        __tablename__ = "broken_parents"
        id: Mapped[int] = mapped_column(primary_key=True)
        children: Mapped[list["NoSuchModel"]] = relationship()

    try:
        configure_mappers()
    except InvalidRequestError:
        pass

    async def main():
        async with scratch_engine() as engine:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            async with create_sessionmaker(engine)() as session:
                for project_id in range(6):
                    await session.scalars(select(CpbTask).where(CpbTask.project_id == project_id))
        print("broken registry ok")

    asyncio.run(main())
    """
)


def test_a_broken_mapper_registry_is_not_an_instrumentation_error(tmp_path: Path) -> None:
    """The cause of "instrumentation: relationship lookup: InvalidRequestError": looking up
    relationships configured every registry, re-raising a test suite's deliberately broken mapper.
    The lookup now reads configured mappers only."""
    app = tmp_path / "broken.py"
    app.write_text(BROKEN_REGISTRY_APP.format(root=str(ROOT), corpus=str(CORPUS)))
    proc = run_tool(["--json", "--", sys.executable, str(app)])
    assert "broken registry ok" in proc.stdout, proc.stderr[-2000:]
    report = last_json(proc.stderr)
    assert report["instrumentation_errors"] == {} and not any("instrumentation" in n for n in report["notes"])
    assert [f["rule"] for f in report["findings"]] == ["n_plus_one"]


SEED_APP = textwrap.dedent(
    """
    import sys
    from sqlalchemy import create_engine, event, text
    engine = create_engine("sqlite://")

    @event.listens_for(engine, "connect")
    def slow_functions(dbapi_connection, record):
        import time
        dbapi_connection.create_function("pause", 1, lambda ms: time.sleep(ms / 1000) or 0)

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE seed (id INTEGER PRIMARY KEY, v INTEGER)"))
        conn.execute(text("INSERT INTO seed (id, v) SELECT 1, pause(60)"))  # a slow set-up write
        conn.execute(text("UPDATE seed SET v = pause(60)"))  # no WHERE: a bulk set-up write
        conn.execute(text("SELECT v, pause(60) FROM seed WHERE id = 1")).all()  # a slow read
    engine.dispose()
    """
)


def test_slow_query_is_about_reads(tmp_path: Path) -> None:
    app = tmp_path / "seed.py"
    app.write_text(SEED_APP)
    report = last_json(run_tool(["--slow-ms", "30", "--json", "--", sys.executable, str(app)]).stderr)
    slow = [f for f in report["findings"] if f["rule"] == "slow_query"]
    assert len(slow) == 1 and slow[0]["line"] == line_of(app, "# a slow read"), json.dumps(report["findings"], indent=1)


def test_multiline_fstring_field_needs_312(tmp_path: Path) -> None:
    """A replacement field spread over lines (PEP 701) is Python 3.12 syntax, not a broken file."""
    if sys.version_info >= (3, 12):
        pytest.skip("this interpreter parses PEP 701 f-strings")
    (tmp_path / "view.py").write_text('label = f"-{\n    amount\n}"\n')
    result = json.loads(run_tool(["--static", str(tmp_path), "--json"]).stdout)
    assert result["needs_python"] == "3.12" and result["skipped_by_reason"] == {"needs_newer_python": 1}


def test_catalog_reads_are_never_an_n_plus_one(tmp_path: Path) -> None:
    """SQLAlchemy 2.0's create_all asks pg_catalog once per table (has_table): five identical
    catalog queries with different parameters are reflection, not the app's N+1; the same
    aggregate on an app table is."""

    def record(shape: str) -> dict[str, Any]:
        site = [str(tmp_path / "app.py"), 12, "main"]
        return {
            "statements": 5,
            "aggregates": [{"kind": "SELECT", "shape": shape, "site": site, "count": 5, "max_span_distinct": 5}],
        }

    catalog = "SELECT pg_catalog.pg_class.relname FROM pg_catalog.pg_class WHERE pg_catalog.pg_class.relname = ?"
    for shape in (catalog, "SELECT name FROM sqlite_master WHERE name = ?"):
        assert analyse([record(shape)], threshold=5, slow_ms=None, cwd=tmp_path)["findings"] == []
    app = analyse(
        [record("SELECT posts.id FROM posts WHERE posts.author_id = ?")], threshold=5, slow_ms=None, cwd=tmp_path
    )
    assert [f["rule"] for f in app["findings"]] == ["n_plus_one"]

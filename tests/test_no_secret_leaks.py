"""No script or example ever prints the database password, whether it succeeds or fails.

Every ``scripts/*.sh`` and every ``examples/*.py`` (found by glob: new ones are covered without
editing this file) runs with a distinctive password in its database URL, in representative
successful invocations and in failing ones (a database that does not exist, a port nobody listens
on). The password, its URL-encoded form and fragments of it must not appear in stdout or stderr.
Examples run successfully on each server and fail against a closed port (PostgreSQL and MySQL
URLs); scripts run successfully and fail on a missing database and on a closed port.

- PostgreSQL: user ``postgres`` with the password (the test server trusts loopback, so the URL
  still connects: what is checked is what the programs print);
- MySQL/MariaDB: a user created for the test with that password (dropped afterwards);
- the ``sqlite`` run of this module needs no server: it runs the "closed port" invocations with
  PostgreSQL and MySQL URLs.

Scripts without a plan below get a default one (no arguments, then ``--json``).
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_examples import discover
from sample_project.harness import METADATA, SCRIPTS, environment, make_project

sys.path.insert(0, str(SCRIPTS))
from scratch_db import scratch_database

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Zx9-LEAK-CANARY-7731%"  # '%' makes the URL form differ (…7731%25)
MARKERS = (PASSWORD, quote(PASSWORD, safe=""), "LEAK-CANARY", "CANARY-7731")
EXAMPLES = discover()
SCRIPT_PATHS = sorted(p for p in SCRIPTS.glob("*.sh") if not p.name.startswith((".", "_")))
TIMEOUT = 120
WORKERS = 3

pytestmark = pytest.mark.slow


@dataclass
class Run:
    label: str
    argv: list[str]
    code: int
    out: str
    err: str
    expect: frozenset[int] | None  # None: any exit code

    def leaks(self) -> list[str]:
        return [m for m in MARKERS if m in self.out or m in self.err]

    def describe(self) -> str:
        return f"[{self.label}] exit {self.code}\nstdout: {self.out[-1500:]}\nstderr: {self.err[-2500:]}"


@dataclass
class Invocation:
    label: str
    argv: list[str]
    url: str | None  # DATABASE_URL for the process
    cwd: Path
    expect: frozenset[int] | None = frozenset({0})
    nonzero: bool = False  # the run must fail (exit code other than 0)


def execute(inv: Invocation) -> Run:
    env = environment(inv.url)
    try:
        proc = subprocess.run(inv.argv, cwd=inv.cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = -999, str(exc.stdout or ""), f"timed out after {TIMEOUT}s {exc.stderr or ''}"
    return Run(inv.label, inv.argv, code, out, err, inv.expect)


def run_all(invocations: list[Invocation]) -> list[Run]:
    """Run (in parallel where independent) and check: no marker anywhere, exit codes as planned."""
    with ThreadPoolExecutor(WORKERS) as pool:
        runs = list(pool.map(execute, invocations))
    problems = []
    for inv, run in zip(invocations, runs, strict=True):
        if run.leaks():
            problems.append(f"PASSWORD LEAKED ({run.leaks()}) {run.describe()}")
        elif inv.nonzero and run.code == 0:
            problems.append(f"expected a failure {run.describe()}")
        elif inv.expect is not None and not inv.nonzero and run.code not in inv.expect:
            problems.append(f"expected exit {sorted(inv.expect)} {run.describe()}")
    assert not problems, "\n\n".join(problems[:5])
    return runs


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def as_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


# --- the URLs with the password ---------------------------------------------------------------


@pytest.fixture(scope="module")
async def leaky_url(backend: str, server_url: str) -> AsyncIterator[URL | None]:
    """The server URL as a user with PASSWORD (None for sqlite: SQLite URLs carry no password)."""
    if backend == "sqlite":
        yield None
        return
    base = make_url(server_url)
    if backend == "postgresql":
        yield base.set(password=PASSWORD)
        return
    user = f"asp_leak_{secrets.token_hex(3)}"
    admin = create_async_engine(base, poolclass=NullPool)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(f"CREATE USER '{user}'@'%' IDENTIFIED BY :pw"), {"pw": PASSWORD})
            await conn.execute(text(f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%'"))
        try:
            yield base.set(username=user, password=PASSWORD)
        finally:
            async with admin.begin() as conn:
                await conn.execute(text(f"DROP USER IF EXISTS '{user}'@'%'"))
    finally:
        await admin.dispose()


@pytest.fixture
def own_database(leaky_url: URL | None) -> Iterator[URL | None]:
    """An empty database of the test's own (for generate-migration), reached with PASSWORD."""
    if leaky_url is None:
        yield None
        return
    with scratch_database(leaky_url) as url:
        yield url


def bash(script: Path, *args: str) -> list[str]:
    return ["bash", str(script), *args]


def script_plans(script: Path, *, url: str, own_db: str, bad_db: str, project: Path) -> list[Invocation]:
    """Representative successful and failing invocations of one script (server available)."""
    name = script.stem
    example = str(ROOT / "examples" / "query_patterns.py")
    if name == "test-connection":
        slack = ("--timeout", "120")  # a loaded machine must not turn these into timeouts (the default is 5 s)
        return [
            Invocation(f"{name} URL", bash(script, url, *slack), None, project),
            Invocation(f"{name} --json (DATABASE_URL)", bash(script, "--json", *slack), url, project),
            Invocation(
                f"{name} --url --json --workers",
                bash(
                    script, "--url", url, "--json", "--workers", "4", "--pool-size", "5", "--max-overflow", "10", *slack
                ),
                None,
                project,
            ),
            Invocation(f"{name} missing database", bash(script, bad_db), None, project, nonzero=True),
            Invocation(f"{name} missing database --json", bash(script, "--json"), bad_db, project, nonzero=True),
        ]
    if name == "setup-alembic":
        return [
            Invocation(
                f"{name} --dry-run",
                bash(script, "--metadata", METADATA, "--dry-run", "--json"),
                url,
                project,
                frozenset({0, 1}),
            )
        ]
    if name == "generate-migration":
        return [
            # 0, or 1 when the roundtrip fails (on MySQL the sample's autogenerated downgrade drops an
            # index a foreign key needs: error 1553); either way the password must stay out.
            Invocation(
                f"{name} --roundtrip --json",
                bash(script, "init", "--roundtrip", "--json", "--url", own_db),
                None,
                project,
                frozenset({0, 1}),
            ),
            # the revision is not applied: "database not at head" -> 1
            Invocation(f"{name} not at head", bash(script, "again"), own_db, project, nonzero=True),
            Invocation(f"{name} missing database", bash(script, "x", "--url", bad_db), None, project, nonzero=True),
            Invocation(f"{name} missing database --json", bash(script, "x", "--json"), bad_db, project, nonzero=True),
        ]
    if name == "optimize-queries":
        return [
            Invocation(
                f"{name} --explain -- python example",
                bash(script, "--explain", "--", sys.executable, example),
                url,
                project,
                frozenset({0, 1}),
            ),
            Invocation(
                f"{name} --static --json",
                bash(script, "--static", str(ROOT / "examples"), "--json"),
                url,
                project,
                frozenset({0, 1}),
            ),
            Invocation(
                f"{name} -- failing program", bash(script, "--", sys.executable, example), bad_db, project, nonzero=True
            ),
        ]
    return [  # a script this test does not know yet: it must still not print the password
        Invocation(f"{name} (no arguments)", bash(script), url, project, None),
        Invocation(f"{name} --json", bash(script, "--json"), url, project, None),
    ]


def offline_plans(script: Path, *, url: str, project: Path) -> list[Invocation]:
    """Invocations against a port nobody listens on: every one must fail, quietly about the password."""
    name = script.stem
    if name == "test-connection":
        return [
            Invocation(f"{name} closed port", bash(script, url), None, project, nonzero=True),
            Invocation(
                f"{name} closed port --json", bash(script, "--json", "--timeout", "3"), url, project, nonzero=True
            ),
        ]
    if name == "generate-migration":
        return [
            Invocation(
                f"{name} closed port --json", bash(script, "x", "--json", "--url", url), None, project, nonzero=True
            )
        ]
    if name == "optimize-queries":
        program = str(ROOT / "examples" / "relationships.py")
        return [
            Invocation(f"{name} closed port", bash(script, "--", sys.executable, program), url, project, nonzero=True)
        ]
    if name == "setup-alembic":
        return []  # never connects
    return [Invocation(f"{name} closed port (no arguments)", bash(script), url, project, None)]


# --- tests -----------------------------------------------------------------------------------


def test_everything_is_covered() -> None:
    assert EXAMPLES and SCRIPT_PATHS
    assert {p.stem for p in SCRIPT_PATHS} >= {
        "test-connection",
        "generate-migration",
        "optimize-queries",
        "setup-alembic",
    }


def test_the_check_sees_a_leak() -> None:
    """The detector itself: a program that prints the URL, or only the password, is caught."""
    url = f"postgresql+asyncpg://app:{quote(PASSWORD, safe='')}@127.0.0.1:1/app"
    show_url = "import os; print(os.environ['DATABASE_URL'])"
    printing_url = execute(Invocation("prints URL", [sys.executable, "-c", show_url], url, ROOT))
    printing_password = execute(
        Invocation(
            "prints password",
            [
                sys.executable,
                "-c",
                (
                    "import os, sys; from sqlalchemy.engine import make_url; "
                    "print('pw', make_url(os.environ['DATABASE_URL']).password, file=sys.stderr)"
                ),
            ],
            url,
            ROOT,
        )
    )
    assert printing_url.leaks() and printing_password.leaks()


# SQLite URLs carry no password: the password tests run on the servers (the sqlite parameter is
# deselected); test_nothing_printed_when_the_server_is_unreachable needs no server at all.
@pytest.mark.only_backends("postgresql", "mysql")
def test_examples_never_print_the_password(backend: str, leaky_url: URL | None) -> None:
    assert leaky_url is not None
    # Failing runs of the examples are in test_nothing_printed_when_the_server_is_unreachable.
    url = as_string(leaky_url)
    runs = run_all([Invocation(f"{p.name}", [sys.executable, str(p)], url, ROOT) for p in EXAMPLES])
    print(f"{backend}: {len(runs)} example runs, none printed the password")


@pytest.mark.only_backends("postgresql", "mysql")  # SQLite URLs carry no password
def test_scripts_never_print_the_password(
    backend: str, leaky_url: URL | None, own_database: URL | None, tmp_path: Path
) -> None:
    assert leaky_url is not None and own_database is not None
    project = make_project(tmp_path)  # "…/my project": a path with a space
    url, own_db = as_string(leaky_url), as_string(own_database)
    bad_db = as_string(leaky_url.set(database="asp_no_such_database"))
    setup = [
        Invocation("setup-alembic", bash(SCRIPTS / "setup-alembic.sh", "--metadata", METADATA, "--json"), url, project)
    ]
    runs = run_all(setup)  # first: generate-migration needs the Alembic setup
    plans = [
        inv
        for script in SCRIPT_PATHS
        for inv in script_plans(script, url=url, own_db=own_db, bad_db=bad_db, project=project)
    ]
    # generate-migration's runs depend on each other (revision written, then "not at head"): in order.
    ordered = [inv for inv in plans if inv.label.startswith("generate-migration")]
    runs += run_all(ordered[:1]) + run_all(ordered[1:])
    runs += run_all([inv for inv in plans if not inv.label.startswith("generate-migration")])
    print(f"{backend}: {len(runs)} script runs, none printed the password")


def test_nothing_printed_when_the_server_is_unreachable(tmp_path: Path) -> None:
    """Runs once, with or without servers: every URL points at a closed loopback port."""
    project = make_project(tmp_path)
    port = closed_port()
    urls = [
        f"postgresql+asyncpg://app:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/app",
        f"mysql+aiomysql://app:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/app",
    ]
    plans = [inv for url in urls for script in SCRIPT_PATHS for inv in offline_plans(script, url=url, project=project)]
    plans += [
        Invocation(f"{p.name} closed port", [sys.executable, str(p)], url, ROOT, nonzero=True)
        for url in urls
        for p in EXAMPLES
    ]
    runs = run_all(plans)
    print(f"{len(runs)} runs against a closed port, none printed the password")


# --- passwords that are easy to get wrong, through every script ------------------------------------

PERCENT_PASSWORD = "Sekr3t%Pa55-XYZ"  # '%Pa' is no valid %-escape: taken literally, encoded it is %25
AT_PASSWORD = "Qv8@Lm4@Tz6"  # unencoded in the URL, SQLAlchemy reads password "Qv8" and host "Lm4@Tz6@127.0.0.1"
ODD_MARKERS = ("Sekr3t", "Pa55", "XYZ", "Qv8", "Lm4", "Tz6")


def test_odd_passwords_through_every_script(tmp_path: Path) -> None:
    """A password with '%' or unencoded '@' is never printed, in part or whole, with --json or without:
    an unencoded '@' is a malformed URL (exit 2) in every script that takes a URL, and a synchronous
    driver makes generate-migration and test-connection exit 2 naming the async URL. No server needed."""
    project = make_project(tmp_path)
    assert (
        execute(Invocation("setup", bash(SCRIPTS / "setup-alembic.sh", "--metadata", METADATA), None, project)).code
        == 0
    )
    port = closed_port()
    percent = f"postgresql+asyncpg://app:{PERCENT_PASSWORD}@127.0.0.1:{port}/app"
    at_pg = f"postgresql+asyncpg://app:{AT_PASSWORD}@127.0.0.1:{port}/app"
    at_mysql = f"mysql+aiomysql://app:{AT_PASSWORD}@127.0.0.1:{port}/app"
    sync = f"postgresql+psycopg2://app:{quote(PERCENT_PASSWORD, safe='')}@127.0.0.1:{port}/app"
    async_fix = f"postgresql+asyncpg://app:***@127.0.0.1:{port}/app"
    tc, gm = SCRIPTS / "test-connection.sh", SCRIPTS / "generate-migration.sh"
    oq, sa = SCRIPTS / "optimize-queries.sh", SCRIPTS / "setup-alembic.sh"
    program = [sys.executable, str(ROOT / "examples" / "relationships.py")]
    plans: list[tuple[Invocation, str | None]] = []  # (invocation, text the output must contain)
    for json_flag in ([], ["--json"]):
        mode = " --json" if json_flag else ""
        for label, url, code in (
            ("percent", percent, 1),
            ("@ pg", at_pg, 2),
            ("@ mysql", at_mysql, 2),
            ("sync", sync, 2),
        ):
            must = async_fix if label == "sync" else ("unencoded '@'" if code == 2 else None)
            plans.append(
                (
                    Invocation(
                        f"test-connection {label}{mode}",
                        bash(tc, url, *json_flag, "--timeout", "3"),
                        None,
                        project,
                        frozenset({code}),
                    ),
                    must,
                )
            )
            plans.append(
                (
                    Invocation(
                        f"generate-migration {label}{mode} (DATABASE_URL)",
                        bash(gm, "x", *json_flag),
                        url,
                        project,
                        frozenset({code}),
                    ),
                    must,
                )
            )
        plans.append(
            (
                Invocation(
                    f"generate-migration @ --url{mode}",
                    bash(gm, "x", "--url", at_pg, *json_flag),
                    None,
                    project,
                    frozenset({2}),
                ),
                "unencoded '@'",
            )
        )
        plans.append(
            (
                Invocation(
                    f"optimize-queries @{mode}", bash(oq, *json_flag, "--", *program), at_pg, project, frozenset({2})
                ),
                "unencoded '@'",
            )
        )
        plans.append(
            (
                Invocation(
                    f"optimize-queries percent{mode}",
                    bash(oq, *json_flag, "--", *program),
                    percent,
                    project,
                    nonzero=True,
                ),
                None,
            )
        )
        # setup-alembic takes no URL (env.py reads DATABASE_URL at migration time): it only must not leak it
        plans.append(
            (
                Invocation(
                    f"setup-alembic @{mode}",
                    bash(sa, "--metadata", METADATA, "--dry-run", *json_flag),
                    at_pg,
                    project,
                    frozenset({0}),
                ),
                None,
            )
        )
    with ThreadPoolExecutor(WORKERS) as pool:
        runs = list(pool.map(execute, [inv for inv, _ in plans]))
    problems = []
    for (inv, must), run in zip(plans, runs, strict=True):
        leaked = [m for m in ODD_MARKERS if m in run.out or m in run.err]
        if leaked:
            problems.append(f"PASSWORD LEAKED ({leaked}) {run.describe()}")
        elif inv.nonzero and run.code == 0 or inv.expect and not inv.nonzero and run.code not in inv.expect:
            problems.append(f"expected exit {sorted(inv.expect or [])} {run.describe()}")
        elif must is not None and must not in run.out + run.err:
            problems.append(f"expected {must!r} in the output {run.describe()}")
        elif "--json" in inv.argv and "optimize-queries" not in inv.label:
            assert json.loads(run.out).get("exit_code", run.code) == run.code, run.describe()
    assert not problems, "\n\n".join(problems[:5])

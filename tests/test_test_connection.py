"""scripts/test-connection.sh, run as a subprocess the way an agent runs it.

Covers: good URLs on every backend (exit 0 with server facts), the max_connections comparison,
every failure class (authentication on a scram-sha-256 PostgreSQL started here, refused, a silent
server -> timeout within the limit, missing database, DNS, TLS), URL problems (malformed, unknown
dialect/driver, synchronous drivers with the corrected URL), missing driver packages (exit 3),
usage errors, and that a distinctive password appears in no output. Runs from another working
directory and from a copy of the scripts in a directory whose name contains a space.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test-connection.sh"
SECRET = "Zx9-tc-SECRET-q7"  # distinctive: must never appear in any output
SPECIAL_SECRET = "p@ss:w/rd#Zx9tc"  # needs URL-encoding; neither form may appear
SA21 = sqlalchemy.__version__.startswith("2.1")
# Same switch as tests/conftest.py: a missing tool (PostgreSQL binaries, openssl) skips the tests that
# need it on a user's machine, and fails them under REQUIRE_ALL_BACKENDS=1 (CI).
REQUIRE_ALL = os.environ.get("REQUIRE_ALL_BACKENDS", "").strip() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> None:
    if REQUIRE_ALL:
        pytest.fail(f"REQUIRE_ALL_BACKENDS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class Run:
    def __init__(self, proc: subprocess.CompletedProcess[str], wall: float, as_json: bool) -> None:
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.wall = wall
        self.data: dict[str, Any] = {}
        if as_json:
            lines = [line for line in self.out.splitlines() if line.strip()]
            assert len(lines) == 1, f"--json must print exactly one line of JSON, got: {self.out!r} / {self.err!r}"
            self.data = json.loads(lines[0])
            assert isinstance(self.data["ok"], bool)
            assert self.data["exit_code"] == self.rc

    def __repr__(self) -> str:
        return f"rc={self.rc}\nstdout:\n{self.out}\nstderr:\n{self.err}"


def run(
    *args: str,
    script: Path = SCRIPT,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    secrets: tuple[str, ...] = (SECRET, SPECIAL_SECRET, quote(SPECIAL_SECRET, safe="")),
) -> Run:
    """Run the wrapper with bash from ``cwd`` (default: a directory outside the skill).

    Without an explicit ``--timeout`` the run gets 120 s instead of the 5 s default: a check
    that should succeed must not fail because a loaded machine is slow (the tests about the
    deadline pass their own ``--timeout``)."""
    if "--timeout" not in args and "--help" not in args and "-h" not in args:
        args = (*args, "--timeout", "120")
    full_env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    full_env["PYTHON"] = sys.executable
    full_env.update(env or {})
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(script), *args],
        cwd=str(cwd or tempfile.gettempdir()),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    result = Run(proc, time.monotonic() - t0, "--json" in args)
    for secret in secrets:
        assert secret not in proc.stdout and secret not in proc.stderr, f"password leaked: {result!r}"
    assert "Traceback" not in proc.stderr, result
    assert len(proc.stdout) < 8000 and len(proc.stderr) < 8000, "output must stay bounded"
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_password(url: str, password: str) -> str:
    return sqlalchemy.engine.make_url(url).set(password=password).render_as_string(hide_password=False)


# --- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spaced_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the skill's scripts/ in a directory whose name contains a space."""
    base = tmp_path_factory.mktemp("tc") / "my skill copy"
    shutil.copytree(ROOT / "scripts", base / "scripts", ignore=shutil.ignore_patterns("__pycache__"))
    return base / "scripts" / "test-connection.sh"


@pytest.fixture()
def silent_server() -> Iterator[int]:
    """A loopback port that accepts TCP connections and never sends a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


@pytest.fixture()
def blocked_modules(tmp_path: Path) -> Iterator[Any]:
    """env for a Python that cannot import the given modules (as if they were not installed)."""

    def env_for(*modules: str) -> dict[str, str]:
        (tmp_path / "sitecustomize.py").write_text(
            "import sys\n"
            f"BLOCKED = {set(modules)!r}\n"
            "class Blocker:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in BLOCKED:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "        return None\n"
            "sys.meta_path.insert(0, Blocker())\n"
        )
        return {"PYTHONPATH": str(tmp_path)}

    yield env_for


def pg_bin() -> Path | None:
    candidates = [os.environ.get("PG_BIN", "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "pg_ctl").exists() and (Path(c) / "initdb").exists():
            return Path(c)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class OwnPostgres:
    """A throw-away PostgreSQL server with scram-sha-256 auth (and TLS, when openssl exists)."""

    def __init__(self) -> None:
        bindir = pg_bin()
        if bindir is None:
            skip_or_fail("no PostgreSQL server binaries (initdb, pg_ctl): set PG_BIN to their directory")
        self.bin = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="asp-tc-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.tls = False

    def cmd(self, *argv: str) -> subprocess.CompletedProcess[str]:
        full = [*(["runuser", "-u", "postgres", "--"] if self.as_postgres else []), *argv]
        return subprocess.run(full, capture_output=True, text=True, timeout=120, check=True)

    def start(self) -> None:
        self.cmd(
            str(self.bin / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all tc_trust 127.0.0.1/32 trust\n"  # to show that trust accepts any password
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        conf = [
            "password_encryption = 'scram-sha-256'",
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.dir}'",
            "max_connections = 20",
            "fsync = off",
        ]
        if shutil.which("openssl"):
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-days",
                    "1",
                    "-subj",
                    "/CN=asp-test",
                    "-keyout",
                    str(self.data / "server.key"),
                    "-out",
                    str(self.data / "server.crt"),
                ],
                capture_output=True,
                check=True,
                timeout=60,
            )
            os.chmod(self.data / "server.key", 0o600)
            if self.as_postgres:
                shutil.chown(self.data / "server.key", "postgres", "postgres")
                shutil.chown(self.data / "server.crt", "postgres", "postgres")
            conf.append("ssl = on")
            self.tls = True
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write("\n".join(conf) + "\n")
        self.cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w", "-t", "60", "start")
        self.sql(f"CREATE ROLE tc_app LOGIN PASSWORD '{SECRET}'")
        self.sql("CREATE ROLE tc_special LOGIN PASSWORD '" + SPECIAL_SECRET.replace("'", "''") + "'")
        self.sql("CREATE DATABASE tc_app OWNER tc_app")
        self.sql("CREATE ROLE tc_trust LOGIN PASSWORD 'the-real-one'")

    def sql(self, statement: str) -> None:
        self.cmd(
            str(self.bin / "psql"),
            "-h",
            str(self.dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-qc",
            statement,
        )

    def url(self, user: str = "tc_app", password: str = SECRET, database: str = "tc_app", query: str = "") -> str:
        return f"postgresql+asyncpg://{user}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}{query}"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def own_pg() -> Iterator[OwnPostgres]:
    server = OwnPostgres()
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --- usage and help -----------------------------------------------------------------------


def test_help_lists_usage_options_exit_codes_and_example(spaced_script: Path, tmp_path: Path) -> None:
    link = tmp_path / "bin dir" / "tc"
    link.parent.mkdir()
    link.symlink_to(spaced_script)
    skill = spaced_script.parents[1]
    # absolute path with a space, relative path with a space (from the skill's parent), via a symlink
    for script, cwd in (
        (spaced_script, None),
        (Path(skill.name) / "scripts" / "test-connection.sh", skill.parent),
        (link, None),
    ):
        r = run("--help", script=script, cwd=cwd)
        assert r.rc == 0, r
        for needle in (
            "usage: test-connection.sh",
            "--timeout",
            "--json",
            "--pool-size",
            "--max-overflow",
            "--workers",
            "DATABASE_URL",
            "exit codes",
            "example:",
            "error_kind",
        ):
            assert needle in r.out, needle


@pytest.mark.parametrize(
    "args",
    [
        ("--timeout", "abc", "sqlite+aiosqlite://"),
        ("--timeout", "0", "sqlite+aiosqlite://"),
        ("--workers", "0", "sqlite+aiosqlite://"),
        ("--pool-size", "x", "sqlite+aiosqlite://"),
        ("--no-such-option", "sqlite+aiosqlite://"),
        ("a://x", "b://y"),
    ],
)
def test_bad_usage_exits_2_with_one_json_object(args: tuple[str, ...]) -> None:
    r = run(*args, "--json")
    assert r.rc == 2, r
    assert r.data["ok"] is False and r.data["error"], r


def test_no_url_anywhere_is_bad_usage() -> None:
    r = run("--json")
    assert r.rc == 2 and r.data["error_kind"] == "bad_url" and "DATABASE_URL" in r.data["error"], r


# --- good URLs on every backend ------------------------------------------------------------


def test_good_url_reports_server_facts(server_url: str, backend: str, spaced_script: Path) -> None:
    # from a directory with a space in its name, URL from DATABASE_URL
    r = run("--json", script=spaced_script, cwd=spaced_script.parent, env={"DATABASE_URL": server_url})
    assert r.rc == 0, r
    d = r.data
    assert d["ok"] is True and d["error_kind"] is None
    expected = {"sqlite": "SQLite ", "postgresql": "PostgreSQL ", "mysql": ("MySQL ", "MariaDB ")}[backend]
    assert d["server_version"].startswith(expected), d
    assert d["driver"] == sqlalchemy.engine.make_url(server_url).get_driver_name()
    assert d["connect_ms"] > 0 and d["first_connect_ms"] > 0 and d["select1_ms"] >= 0
    if backend == "sqlite":
        assert d["tls"] is None and d["max_connections"] is None
    else:
        url = sqlalchemy.engine.make_url(server_url)
        assert d["database"] == url.database
        assert d["user"].split("@")[0] == url.username
        assert isinstance(d["tls"], bool)
        assert d["max_connections"] > 0
        assert d["resolved"]
    human = run(server_url, script=spaced_script)
    assert human.rc == 0 and human.out.rstrip().endswith("ok: connected"), human
    assert "latency" in human.out and "SELECT 1" in human.out


def test_existing_sqlite_file_is_opened_read_only(tmp_path: Path, spaced_script: Path) -> None:
    folder = tmp_path / "dir with space"
    folder.mkdir()
    db = folder / "app data.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    before = (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(p.name for p in folder.iterdir()))
    # relative path (three slashes), resolved against the working directory
    r = run("sqlite+aiosqlite:///app data.db", "--json", script=spaced_script, cwd=folder)
    assert r.rc == 0, r
    assert r.data["database"] == str(db.resolve()) and r.data["server_version"].startswith("SQLite")
    after = (hashlib.sha256(db.read_bytes()).hexdigest(), sorted(p.name for p in folder.iterdir()))
    assert after == before, "the check must not modify the database or create files next to it"


def test_sqlite_path_that_is_no_database(tmp_path: Path) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("not a database, " * 200)
    r = run(f"sqlite+aiosqlite:///{junk}", "--json")
    assert r.rc == 1 and r.data["error_kind"] == "not_a_database", r
    assert junk.read_text() == "not a database, " * 200


def test_missing_sqlite_file_is_reported_and_not_created(tmp_path: Path) -> None:
    target = tmp_path / "missing.db"
    r = run(f"sqlite+aiosqlite:///{target}", "--json")
    assert r.rc == 1 and r.data["error_kind"] == "database_missing", r
    assert not target.exists()


# --- max_connections ----------------------------------------------------------------------


def test_pool_larger_than_max_connections_warns(server_url: str, backend: str) -> None:
    if backend == "sqlite":
        r = run(server_url, "--json", "--workers", "4")
        assert r.rc == 0 and r.data["capacity"]["app_max_connections"] == 60, r
        assert r.data["capacity"]["server_max_connections"] is None
        return
    r = run(server_url, "--json", "--workers", "1000", "--pool-size", "20", "--max-overflow", "10")
    assert r.rc == 0, r
    cap = r.data["capacity"]
    assert cap["app_max_connections"] == 30000
    assert cap["server_max_connections"] == r.data["max_connections"] > 0
    assert cap["exceeds"] is True
    assert any("30000" in w and "max_connections" in w for w in r.data["warnings"]), r.data["warnings"]
    human = run(server_url, "--workers", "1000", "--pool-size", "20", "--max-overflow", "10")
    assert human.rc == 0 and "warning:" in human.out and "exceeds" in human.out, human


@pytest.mark.only_backends("postgresql", "mysql")  # SQLite has no connection limit
def test_pool_within_max_connections_does_not_warn(server_url: str, backend: str) -> None:
    r = run(server_url, "--json", "--workers", "1", "--pool-size", "1", "--max-overflow", "0")
    assert r.rc == 0, r
    cap = r.data["capacity"]
    assert cap["app_max_connections"] == 1
    assert cap["available_to_app"] == cap["server_max_connections"] - (cap["reserved_connections"] or 0)
    # other clients (e.g. parallel test sessions) count too; with 1 connection that only matters when full
    assert cap["exceeds"] is (1 + (cap["in_use_now"] or 0) > cap["available_to_app"])
    assert not any("exceeds" in w for w in r.data["warnings"])


@pytest.mark.only_backends("postgresql", "mysql")  # SQLite has no connection limit
def test_unbounded_pool_warns(server_url: str, backend: str) -> None:
    r = run(server_url, "--json", "--max-overflow", "-1")
    assert r.rc == 0 and r.data["capacity"]["app_max_connections"] is None and r.data["capacity"]["exceeds"], r


# --- failures against real servers --------------------------------------------------------


@pytest.mark.only_backends("postgresql", "mysql")  # SQLite: test_missing_sqlite_file_is_reported_and_not_created
def test_missing_database(server_url: str, backend: str) -> None:
    url = sqlalchemy.engine.make_url(server_url).set(database="tc_no_such_db_7q")
    r = run(url.render_as_string(hide_password=False), "--json")
    assert r.rc == 1 and r.data["error_kind"] == "database_missing", r
    assert "tc_no_such_db_7q" in r.data["hint"]


@pytest.mark.only_backends("mysql")  # the PostgreSQL case uses its own scram server (TestOwnScramServer)
def test_wrong_password_on_mysql(server_url: str, backend: str) -> None:
    bad = with_password(server_url, SECRET)
    for args in ((bad, "--json"), (bad,)):
        r = run(*args)
        assert r.rc == 1, r
        if r.data:
            assert r.data["error_kind"] == "authentication", r
        else:
            assert "FAILED (authentication)" in r.out


@pytest.mark.only_backends("postgresql")  # asyncpg's ?ssl=require
def test_tls_required_but_not_offered(server_url: str, backend: str) -> None:
    """asyncpg ``?ssl=require``: a server without TLS is an ``ssl`` failure; a server that offers TLS
    (asyncpg's default ``prefer`` already used it) connects encrypted. Whichever the shared server
    is, one of the two is asserted (the TLS-on case is also TestOwnScramServer.test_tls_is_reported)."""
    url = sqlalchemy.engine.make_url(server_url).set(drivername="postgresql+asyncpg")
    plain = run(url.render_as_string(hide_password=False), "--json")
    assert plain.rc == 0 and isinstance(plain.data["tls"], bool), plain
    required = url.update_query_dict({"ssl": "require"}).render_as_string(hide_password=False)
    r = run(required, "--json")
    if plain.data["tls"]:
        assert r.rc == 0 and r.data["tls"] is True, r
    else:
        assert r.rc == 1 and r.data["error_kind"] == "ssl", r


class TestOwnScramServer:
    def test_right_password_connects(self, own_pg: OwnPostgres) -> None:
        r = run(own_pg.url(), "--json")
        assert r.rc == 0, r
        assert r.data["user"] == "tc_app" and r.data["database"] == "tc_app" and r.data["max_connections"] == 20

    def test_wrong_password_is_authentication(self, own_pg: OwnPostgres) -> None:
        wrong = own_pg.url(password=SECRET + "-wrong")
        r = run(wrong, "--json", secrets=(SECRET,))
        assert r.rc == 1 and r.data["error_kind"] == "authentication", r
        assert "tc_app" in r.data["hint"]
        human = run(wrong, secrets=(SECRET,))
        assert human.rc == 1 and "FAILED (authentication)" in human.out, human

    def test_trust_rule_accepts_any_password(self, own_pg: OwnPostgres) -> None:
        """Why the authentication test needs a scram server: under ``trust`` a wrong password passes."""
        r = run(own_pg.url(user="tc_trust", password=SECRET, database="postgres"), "--json")
        assert r.rc == 0 and r.data["user"] == "tc_trust", r

    def test_special_character_password_is_masked_in_every_form(self, own_pg: OwnPostgres) -> None:
        good = own_pg.url(user="tc_special", password=SPECIAL_SECRET, database="postgres")
        assert run(good, "--json").rc == 0
        wrong = own_pg.url(user="tc_special", password=SPECIAL_SECRET[::-1], database="postgres")
        for args in ((wrong, "--json"), (wrong,)):
            r = run(*args, secrets=(SPECIAL_SECRET, SPECIAL_SECRET[::-1], quote(SPECIAL_SECRET[::-1], safe="")))
            assert r.rc == 1, r

    def test_missing_database_on_scram_server(self, own_pg: OwnPostgres) -> None:
        r = run(own_pg.url(database="tc_nope"), "--json")
        assert r.rc == 1 and r.data["error_kind"] == "database_missing", r

    def test_capacity_against_small_max_connections(self, own_pg: OwnPostgres) -> None:
        r = run(own_pg.url(), "--json", "--workers", "2", "--pool-size", "5", "--max-overflow", "5")
        assert r.rc == 0, r
        cap = r.data["capacity"]
        # tc_app is no superuser: superuser_reserved_connections (default 3) are not for it
        assert cap["server_max_connections"] == 20 and cap["reserved_connections"] == 3
        assert cap["available_to_app"] == 17 and cap["app_max_connections"] == 20 and cap["exceeds"] is True

    def test_tls_is_reported(self, own_pg: OwnPostgres) -> None:
        if not own_pg.tls:
            skip_or_fail("openssl not available to make a certificate")
        r = run(own_pg.url(query="?ssl=require"), "--json")
        assert r.rc == 0 and r.data["tls"] is True and r.data["tls_version"].startswith("TLS"), r
        # verify-full against a self-signed certificate: the verification fails
        r = run(own_pg.url(query="?ssl=verify-full"), "--json")
        assert r.rc == 1 and r.data["error_kind"] == "ssl", r


# --- failures without a server ------------------------------------------------------------

ASYNC_SCHEMES = ["postgresql+asyncpg", "postgresql+psycopg", "mysql+aiomysql"]


@pytest.mark.parametrize("scheme", ASYNC_SCHEMES)
def test_closed_port_is_refused(scheme: str) -> None:
    r = run(f"{scheme}://u:{SECRET}@127.0.0.1:{free_port()}/db", "--json")
    assert r.rc == 1 and r.data["error_kind"] == "refused", r


def assert_within_budget(r: Run, timeout: float) -> None:
    """The contract: the script gives up at --timeout instead of waiting for the hang (30 s here).

    Its own clock starts before its imports (``elapsed_ms``). What it spends after the deadline
    (joining the check's thread, building and printing the report) is CPU work that a loaded
    machine stretches, so the bound is generous and still far below the 30 s hang being cut off;
    the figure on a quiet machine is printed by ``make bench`` (tests/bench/test_bench_connection.py)."""
    assert r.data["elapsed_ms"] <= timeout * 1000 + 8000, r.data["elapsed_ms"]
    assert r.wall < timeout + 20, r.wall


@pytest.mark.parametrize("scheme", ASYNC_SCHEMES)
def test_silent_server_times_out_within_the_limit(scheme: str, silent_server: int) -> None:
    timeout = 2.0
    r = run(f"{scheme}://u:{SECRET}@127.0.0.1:{silent_server}/db", "--json", "--timeout", str(timeout))
    assert r.rc == 1 and r.data["error_kind"] == "timeout", r
    assert_within_budget(r, timeout)
    human = run(f"{scheme}://u:{SECRET}@127.0.0.1:{silent_server}/db", "--timeout", "1")
    assert human.rc == 1 and "FAILED (timeout)" in human.out, human


def test_hanging_dns_lookup_still_returns_within_the_limit(tmp_path: Path) -> None:
    """A resolver that never answers blocks getaddrinfo() in a worker thread; the script must not wait."""
    (tmp_path / "sitecustomize.py").write_text(
        "import socket, time\n"
        "real = socket.getaddrinfo\n"
        "def slow(host, *a, **k):\n"
        "    if host == 'hangs.invalid':\n"
        "        time.sleep(30)\n"
        "    return real(host, *a, **k)\n"
        "socket.getaddrinfo = slow\n"
    )
    r = run(
        f"postgresql+asyncpg://u:{SECRET}@hangs.invalid/db",
        "--json",
        "--timeout",
        "2",
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert r.rc == 1 and r.data["error_kind"] == "timeout" and "resolving" in r.data["error"], r
    assert_within_budget(r, 2)


def test_blocked_event_loop_is_cut_off_by_the_watchdog(tmp_path: Path) -> None:
    """A driver that blocks the event loop (no await) defeats asyncio timeouts; the watchdog answers."""
    (tmp_path / "sitecustomize.py").write_text(
        "import time\n"
        "import asyncpg\n"
        "async def stuck(*args, **kwargs):\n"
        "    time.sleep(30)  # blocks the whole event loop\n"
        "asyncpg.connect = stuck\n"
    )
    r = run(
        f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:{free_port()}/db",
        "--json",
        "--timeout",
        "2",
        env={"PYTHONPATH": str(tmp_path)},
    )
    assert r.rc == 1 and r.data["error_kind"] == "timeout", r
    assert_within_budget(r, 2)


@pytest.mark.parametrize("scheme", ASYNC_SCHEMES)
def test_unresolvable_host_is_dns(scheme: str) -> None:
    r = run(f"{scheme}://u:{SECRET}@nonexistent.invalid:5432/db", "--json")
    assert r.rc == 1 and r.data["error_kind"] == "dns", r
    assert "nonexistent.invalid" in r.data["hint"]


@pytest.mark.parametrize(
    "url",
    [
        "not a url " + SECRET,
        f"postgresql+asyncpg://u:{SECRET}@host:notaport/db",
        f"postgresql+asyncpg://u:{SECRET}@with@at/db",  # unencoded '@' in the password
        f"postgresql+asyncpg:/u:{SECRET}@host/db",  # one slash: the password is not even in URL position
        f"postgresql+asyncpg://u:{SECRET}@host:99999/db",  # port out of range
    ],
)
def test_malformed_url_exits_2(url: str) -> None:
    r = run(url, "--json")
    assert r.rc == 2 and r.data["error_kind"] == "bad_url", r
    assert run(url).rc == 2


@pytest.mark.parametrize("url", [f"nosuchdb://u:{SECRET}@h/db", f"postgresql+nosuchdriver://u:{SECRET}@h/db"])
def test_unknown_dialect_or_driver_exits_2(url: str) -> None:
    r = run(url, "--json")
    assert r.rc == 2 and r.data["error_kind"] == "bad_url" and "unknown" in r.data["error"], r


@pytest.mark.parametrize(
    ("url", "fixed"),
    [
        (
            f"postgresql+psycopg2://u:{SECRET}@db.example:5432/app?sslmode=require",
            "postgresql+asyncpg://u:***@db.example:5432/app?ssl=require",
        ),
        (f"mysql+pymysql://u:{SECRET}@db.example/app", "mysql+aiomysql://u:***@db.example/app"),
        (f"mysql://u:{SECRET}@db.example/app", "mysql+aiomysql://u:***@db.example/app"),
        ("sqlite:///app.db", "sqlite+aiosqlite:///app.db"),
    ],
)
def test_sync_driver_is_flagged_with_the_async_url(url: str, fixed: str) -> None:
    r = run(url, "--json")
    assert r.rc == 2 and r.data["error_kind"] == "bad_url", r
    assert r.data["sync_driver"] and r.data["corrected_url"] == fixed, r.data
    human = run(url)
    assert human.rc == 2 and fixed in human.out and "synchronous" in human.out, human


@pytest.mark.parametrize("option", ["sslmode=require", "connect_timeout=10"])
def test_libpq_option_on_asyncpg_is_flagged_with_the_fix(option: str) -> None:
    # asyncpg.connect() rejects libpq's names before any network I/O
    r = run(f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:{free_port()}/db?{option}", "--json")
    assert r.rc == 2 and r.data["error_kind"] == "bad_url", r
    fixed = {"sslmode=require": "ssl=require", "connect_timeout=10": "timeout=10"}[option]
    assert r.data["corrected_url"].endswith(f"/db?{fixed}") and "***" in r.data["corrected_url"], r


def test_password_in_query_string_is_masked() -> None:
    r = run(f"postgresql+asyncpg://u@127.0.0.1:{free_port()}/db?password={SECRET}", "--json")
    assert r.rc == 1 and r.data["error_kind"] == "refused" and "password=***" in r.data["url"], r


def test_postgresql_url_without_driver(tmp_path: Path) -> None:
    """``postgresql://`` means psycopg2 (sync) on SQLAlchemy 2.0 and psycopg (async-capable) on 2.1."""
    r = run(f"postgresql://u:{SECRET}@127.0.0.1:{free_port()}/db", "--json")
    assert r.data["corrected_url"].startswith("postgresql+asyncpg://u:***@"), r
    if SA21:
        assert r.rc == 1 and r.data["error_kind"] == "refused" and r.data["driver"] == "psycopg", r
        assert any("names no driver" in w for w in r.data["warnings"])
    else:
        assert r.rc == 2 and r.data["sync_driver"] == "psycopg2", r


def test_uninstalled_driver_exits_3_naming_the_package(blocked_modules: Any) -> None:
    # asyncmy is not a dependency; it is hidden as well, in case it is installed here
    env = blocked_modules("asyncmy")
    r = run(f"mysql+asyncmy://u:{SECRET}@127.0.0.1/db", "--json", env=env)
    assert r.rc == 3 and r.data["error_kind"] == "driver_missing" and r.data["pip_package"] == "asyncmy", r
    human = run(f"mysql+asyncmy://u:{SECRET}@127.0.0.1/db", env=env)
    assert human.rc == 3 and "pip install 'asyncmy'" in human.out, human


@pytest.mark.parametrize(
    ("module", "url", "package"),
    [
        ("asyncpg", f"postgresql+asyncpg://u:{SECRET}@127.0.0.1/db", "asyncpg"),
        ("aiosqlite", "sqlite+aiosqlite://", "aiosqlite"),
        ("pymysql", f"mysql+aiomysql://u:{SECRET}@127.0.0.1/db", "PyMySQL"),
        ("greenlet", f"postgresql+asyncpg://u:{SECRET}@127.0.0.1/db", "sqlalchemy[asyncio]"),
        ("sqlalchemy", f"postgresql+asyncpg://u:{SECRET}@127.0.0.1/db", "sqlalchemy[asyncio]"),
    ],
)
def test_hidden_package_exits_3(module: str, url: str, package: str, blocked_modules: Any) -> None:
    r = run(url, "--json", env=blocked_modules(module))
    assert r.rc == 3 and r.data["error_kind"] == "driver_missing" and r.data["pip_package"] == package, r

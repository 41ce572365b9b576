#!/usr/bin/env python3
"""test-connection: can an async SQLAlchemy app reach this database, and how well?

Connects with the async driver the URL names, runs a round trip and reports backend, server
version, driver, database, user, connect and ``SELECT 1`` latency and whether TLS is in use.
Flags synchronous drivers (``postgresql+psycopg2://``, ``mysql+pymysql://``, ``sqlite://``) and
prints the URL an async app should use. With ``--workers/--pool-size/--max-overflow`` it compares
the connections the app may open with the server's ``max_connections``. A failure is classified
(``error_kind``) with a hint. The whole run stays within ``--timeout`` seconds, also when a server
accepts the TCP connection and then never answers. Passwords never appear in any output.

Run through ``scripts/test-connection.sh``; ``--help`` lists options and exit codes.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the --timeout budget counts from here (imports included)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import errno  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scriptlib as sl  # noqa: E402

DEFAULT_TIMEOUT = 5.0
DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
# The async driver to suggest when a URL names a synchronous one (or none).
ASYNC_DRIVER_FOR = {"postgresql": "asyncpg", "mysql": "aiomysql", "mariadb": "aiomysql", "sqlite": "aiosqlite"}
# Python module -> the package pip installs it from.
PIP_PACKAGE = {
    "asyncpg": "asyncpg",
    "aiomysql": "aiomysql",
    "pymysql": "PyMySQL",
    "asyncmy": "asyncmy",
    "aiosqlite": "aiosqlite",
    "psycopg": "psycopg[binary]",
    "psycopg_pool": "psycopg-pool",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "MySQLdb": "mysqlclient",
    "mysql": "mysql-connector-python",
    "mariadb": "mariadb",
    "greenlet": "sqlalchemy[asyncio]",
    "sqlalchemy": "sqlalchemy[asyncio]",
    "oracledb": "oracledb",
    "aioodbc": "aioodbc",
    "pyodbc": "pyodbc",
}
MAX_MESSAGE = 400  # characters of a driver's error message that are shown
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}

HELP_EPILOG = """\
exit codes:
  0  connected and SELECT 1 answered (warnings, e.g. about max_connections, may be present)
  1  could not connect; error_kind says why (dns, refused, timeout, authentication,
     database_missing, ssl; also too_many_connections, server_unavailable, unreachable,
     not_a_database (SQLite), other)
  2  bad usage (error_kind usage) or a bad URL (error_kind bad_url): malformed, unknown
     dialect/driver, a synchronous driver, or a query option the driver rejects (asyncpg
     takes ?ssl=, not ?sslmode=); corrected_url gives the URL to use when one can be derived
  3  the driver package (or SQLAlchemy/greenlet) is not installed (error_kind driver_missing;
     pip_package names what to install)

--json prints exactly one JSON object on stdout: ok, exit_code, error_kind, error, hint,
url (password masked), backend, driver, server_version, database, user, tls, connect_ms,
select1_ms, capacity, corrected_url, warnings. Diagnostics go to stderr.

example:
  scripts/test-connection.sh 'postgresql+asyncpg://app:secret@db:5432/app' --workers 4 --pool-size 5 --max-overflow 10
"""


# --- result -------------------------------------------------------------------------------

def new_result() -> dict[str, Any]:
    return {
        "ok": False,
        "exit_code": sl.EXIT_PROBLEMS,
        "error_kind": None,
        "error": None,
        "hint": None,
        "url": None,
        "backend": None,
        "driver": None,
        "host": None,
        "port": None,
        "resolved": None,
        "server_version": None,
        "database": None,
        "user": None,
        "tls": None,
        "tls_version": None,
        "tls_cipher": None,
        "dns_ms": None,
        "first_connect_ms": None,
        "connect_ms": None,
        "select1_ms": None,
        "max_connections": None,
        "capacity": None,
        "sync_driver": None,
        "corrected_url": None,
        "pip_package": None,
        "timeout_s": None,
        "elapsed_ms": None,
        "warnings": [],
    }


_emit_lock = threading.Lock()
_emitted = False


def finish(result: dict[str, Any], as_json: bool) -> None:
    """Print the one result (JSON or human), flush, and leave the process at once.

    ``os._exit`` rather than ``sys.exit``: a DNS lookup or driver thread abandoned at the timeout
    would otherwise keep the interpreter alive at shutdown (the default executor is joined).
    """
    global _emitted
    with _emit_lock:
        if _emitted:
            return
        _emitted = True
        for key in [k for k in result if k.startswith("_")]:
            del result[key]  # internal values of the capacity check
        result["elapsed_ms"] = round((time.monotonic() - STARTED) * 1000, 1)
        result["warnings"], more = sl.bounded(result["warnings"], 20)
        if more:
            result["warnings"].append(f"... and {more} more warnings")
        code = int(result["exit_code"])
        try:
            sl.emit(result, as_json=as_json, human=human_lines(result))
            if code != sl.EXIT_OK and result.get("error"):
                print(f"error: {sl.mask(result['error'])}", file=sys.stderr)
            sys.stderr.flush()
        finally:
            os._exit(code)


def human_lines(r: dict[str, Any]) -> list[str]:
    lines = [f"test-connection: {r['url'] or '(no URL)'}"]
    if r["backend"]:
        lines.append(f"  backend      {r['backend']} (driver {r['driver'] or '?'})")
    if r["server_version"]:
        lines.append(f"  server       {r['server_version']}")
    if r["database"] is not None:
        lines.append(f"  database     {r['database']}" + (f"   user {r['user']}" if r["user"] is not None else ""))
    if r["resolved"]:
        lines.append(f"  resolved     {r['host']} -> {', '.join(r['resolved'])} ({r['dns_ms']} ms)")
    if r["tls"] is not None:
        lines.append(
            "  TLS          " + (f"in use ({r['tls_version']}, {r['tls_cipher']})" if r["tls"] else "not in use")
        )
    if r["connect_ms"] is not None:
        lines.append(
            f"  latency      connect {r['connect_ms']} ms (first connect incl. dialect setup "
            f"{r['first_connect_ms']} ms), SELECT 1 {r['select1_ms']} ms"
        )
    cap = r["capacity"]
    if cap:
        app = cap["app_max_connections"]
        lines.append(
            f"  capacity     app may open {app if app is not None else 'unlimited'} "
            f"({cap['workers']} workers x (pool_size {cap['pool_size']} + max_overflow {cap['max_overflow']}))"
            + (
                f"; server allows {cap['available_to_app']} (max_connections {cap['server_max_connections']}"
                f", {cap['reserved_connections']} reserved), {cap['in_use_now']} open now"
                if cap.get("server_max_connections") is not None
                else ""
            )
        )
    elif r["max_connections"] is not None:
        lines.append(f"  max_connections {r['max_connections']}")
    if r["corrected_url"]:
        lines.append(f"  use instead  {r['corrected_url']}")
    for w in r["warnings"]:
        lines.append(f"  warning: {w}")
    if r["ok"]:
        lines.append("ok: connected")
    else:
        lines.append(f"FAILED ({r['error_kind']}): {r['error']}")
        if r["hint"]:
            lines.append(f"  try: {r['hint']}")
    return lines


def failed(result: dict[str, Any], code: int, kind: str, message: str, hint: str | None = None) -> dict[str, Any]:
    result.update(ok=False, exit_code=code, error_kind=kind, error=short(message), hint=hint)
    return result


def short(message: Any) -> str:
    text = sl.mask(message)
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text).strip()
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


# --- arguments ----------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would print and exit 2 without JSON
        raise sl.UsageError(message)


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not (0 < number <= 3600):
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 3600 seconds, got {value}")
    return number


def int_at_least(minimum: int):  # type: ignore[no-untyped-def]
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {number}")
        return number

    return parse


def build_parser() -> Parser:
    p = Parser(
        prog="test-connection.sh",
        description=(
            "Check that an async SQLAlchemy app can reach its database: connect with the URL's async "
            "driver, run SELECT 1, report server, latency and TLS, flag synchronous drivers, compare the "
            "app's pool with max_connections, and classify failures. URL from the argument or DATABASE_URL."
        ),
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", nargs="?", metavar="URL", help="database URL (default: $DATABASE_URL)")
    p.add_argument("--url", dest="url_opt", metavar="URL", help="same as the positional URL")
    p.add_argument(
        "--timeout", type=positive_float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
        help=f"give up after this many seconds in total (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--pool-size", type=int_at_least(0), metavar="N",
                   help="the app's pool_size per process (0 = no limit; default 5 when another pool flag is given)")
    p.add_argument("--max-overflow", type=int_at_least(-1), metavar="M",
                   help="the app's max_overflow per process (-1 = no limit; default 10)")
    p.add_argument("--workers", type=int_at_least(1), metavar="W",
                   help="processes sharing the database: workers x replicas (default 1)")
    return p


# --- URL checks ---------------------------------------------------------------------------

def register_query_secrets(url: Any) -> None:
    for key, value in url.query.items():
        if "pass" in key.lower() or "secret" in key.lower() or "token" in key.lower():
            for v in value if isinstance(value, tuple) else (value,):
                sl.register_secret(v)


def resolve_dialect(url: Any, result: dict[str, Any]) -> Any:
    """The async dialect class for ``url``; fills result and returns None on a URL problem."""
    from sqlalchemy.exc import NoSuchModuleError

    backend, driver_named = url.get_backend_name(), url.drivername.partition("+")[2]
    try:
        dialect_cls = url.get_dialect(_is_async=True)
    except NoSuchModuleError:
        try:
            url.set(drivername=backend).get_dialect()
        except NoSuchModuleError:
            failed(result, sl.EXIT_USAGE, "bad_url", f"unknown dialect {backend!r} in the URL scheme",
                   "the scheme is DIALECT+DRIVER, e.g. postgresql+asyncpg, mysql+aiomysql, sqlite+aiosqlite")
            return None
        suggestion = ASYNC_DRIVER_FOR.get(backend)
        failed(result, sl.EXIT_USAGE, "bad_url", f"unknown driver {driver_named!r} for {backend}",
               f"use {backend}+{suggestion}://..." if suggestion else "check the driver name in the URL scheme")
        if suggestion:
            result["corrected_url"] = sl.masked_url(url.set(drivername=f"{backend}+{suggestion}"))
        return None
    result["driver"] = dialect_cls.driver
    implicit = not driver_named
    if getattr(dialect_cls, "is_async", False):
        if implicit and backend in ASYNC_DRIVER_FOR:
            fixed = corrected_url(url)
            result["corrected_url"] = sl.masked_url(fixed)
            result["warnings"].append(
                f"the URL names no driver: this SQLAlchemy picks {dialect_cls.driver!r} (async), but other "
                f"versions pick a synchronous one; name it explicitly, e.g. {sl.masked_url(fixed)}"
            )
        return dialect_cls
    # A synchronous DBAPI: create_async_engine() refuses it ("requires an async driver").
    result["sync_driver"] = dialect_cls.driver
    if backend in ASYNC_DRIVER_FOR:
        fixed = corrected_url(url)
        result["corrected_url"] = sl.masked_url(fixed)
        where = " (your password in place of ***)" if url.password else ""
        hint = f"use {sl.masked_url(fixed)}{where}, then re-run this check with it"
    else:
        hint = f"use an async driver for {backend} (see the SQLAlchemy dialect docs)"
    why = "names no driver, so SQLAlchemy uses" if implicit else "names"
    failed(result, sl.EXIT_USAGE, "bad_url",
           f"the URL {why} the synchronous driver {dialect_cls.driver!r}; an async app "
           f"(create_async_engine) needs an async driver", hint)
    return None


def corrected_url(url: Any) -> Any:
    """``url`` with the backend's async driver; libpq-only query options translated for asyncpg."""
    backend = url.get_backend_name()
    fixed = url.set(drivername=f"{backend}+{ASYNC_DRIVER_FOR[backend]}")
    if backend == "postgresql":
        query = dict(fixed.query)
        if "sslmode" in query:  # asyncpg takes ssl=, not libpq's sslmode=
            query["ssl"] = query.pop("sslmode")
        if "connect_timeout" in query:
            query["timeout"] = query.pop("connect_timeout")
        fixed = fixed.set(query=query)
    return fixed


def driver_installed(dialect_cls: Any, result: dict[str, Any]) -> bool:
    try:
        dialect_cls.import_dbapi()
    except ImportError as exc:
        module = (exc.name or "").split(".")[0] or str(dialect_cls.driver)
        package = PIP_PACKAGE.get(module, module)
        result["pip_package"] = package
        failed(result, sl.EXIT_ENV, "driver_missing",
               f"the {dialect_cls.driver} driver needs the Python package {package!r} (module {module!r} "
               f"is not importable by {sys.executable})",
               f"pip install '{package}' in the environment that runs the app (or set PYTHON=/path/to/venv/bin/python)")
        return False
    return True


# --- connecting ---------------------------------------------------------------------------

def sqlite_target(url: Any, result: dict[str, Any]) -> Any:
    """A read-only URL for an existing SQLite file (never creates one); None when it is missing."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:") or url.query.get("uri"):
        if not database or "memory" in database:
            result["warnings"].append("in-memory SQLite: every connection sees its own empty database "
                                      "unless the engine uses one shared connection (StaticPool)")
        return url
    path = Path(database).expanduser().resolve()
    result["database"] = str(path)
    if not path.is_file():
        failed(result, sl.EXIT_PROBLEMS, "database_missing", f"SQLite file {str(path)!r} does not exist",
               "check the path (three slashes = relative to the working directory, four = absolute: "
               "sqlite+aiosqlite:////abs/path.db); run migrations to create it")
        return None
    return url.set(database=f"file:{quote(str(path))}?mode=ro", query={**url.query, "uri": "true"})


async def resolve_host(url: Any, result: dict[str, Any]) -> None:
    host = url.host
    if not host or host.startswith("/"):
        return
    port = url.port or DEFAULT_PORTS.get(url.get_backend_name(), 0)
    t0 = time.perf_counter()
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    result["dns_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    addresses = sorted({info[4][0] for info in infos})
    result["resolved"], _ = sl.bounded(addresses, 5)


async def run_check(url: Any, target: Any, args: argparse.Namespace, result: dict[str, Any]) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    await resolve_host(url, result)
    engine = create_async_engine(target, poolclass=NullPool)
    try:
        t0 = time.perf_counter()
        async with engine.connect() as conn:  # first connect also runs the dialect's setup queries
            result["first_connect_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        t0 = time.perf_counter()
        async with engine.connect() as conn:
            result["connect_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            timings = []
            for _ in range(3):
                t0 = time.perf_counter()
                value = (await conn.execute(text("SELECT 1"))).scalar()
                timings.append((time.perf_counter() - t0) * 1000)
                if value != 1:
                    raise RuntimeError(f"SELECT 1 returned {value!r}")
            result["select1_ms"] = round(statistics.median(timings), 2)
            await server_facts(conn, result)
    finally:
        await asyncio.wait_for(engine.dispose(), 2)
    result.update(ok=True, exit_code=sl.EXIT_OK)
    capacity_check(args, result)


async def optional_row(conn: Any, sql: str) -> Any:
    """One row, or None when the server lacks the view/setting (older versions, no privilege)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        return (await conn.execute(text(sql))).first()
    except DBAPIError:
        return None


async def server_facts(conn: Any, result: dict[str, Any]) -> None:
    from sqlalchemy import text

    name = conn.dialect.name
    if name == "postgresql":
        row = (await conn.execute(text(
            "SELECT current_setting('server_version'), current_database(), current_user, "
            "current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int, "
            "coalesce(current_setting('reserved_connections', true), '0')::int, "
            "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
        ))).one()
        result.update(server_version=f"PostgreSQL {row[0]}", database=row[1], user=row[2], max_connections=row[3])
        # superusers may use the reserved slots; everyone else gets max - reserved
        reserved = 0 if row[6] else row[4] + row[5]
        result["_reserved"] = reserved
        tls = await optional_row(conn, "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        if tls is not None:
            result.update(tls=bool(tls[0]), tls_version=tls[1], tls_cipher=tls[2])
        busy = await optional_row(
            conn, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        result["_in_use"] = int(busy[0]) - 1 if busy is not None else None  # minus this connection
    elif name in ("mysql", "mariadb"):
        row = (await conn.execute(text(
            "SELECT VERSION(), DATABASE(), CURRENT_USER(), @@max_connections, @@max_user_connections"
        ))).one()
        version = str(row[0])
        product = "MariaDB" if "mariadb" in version.lower() else "MySQL"
        result.update(server_version=f"{product} {version}", database=row[1], user=row[2], max_connections=int(row[3]))
        result["_max_user_connections"] = int(row[4]) or None
        # MySQL and MariaDB keep one extra connection for an admin (SUPER/CONNECTION ADMIN) beyond max
        result["_reserved"] = 0
        cipher = await optional_row(conn, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        version_row = await optional_row(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")
        if cipher is not None:
            result.update(tls=bool(cipher[1]), tls_cipher=cipher[1] or None,
                          tls_version=(version_row[1] or None) if version_row is not None else None)
        busy = await optional_row(conn, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        result["_in_use"] = int(busy[1]) - 1 if busy is not None else None
    elif name == "sqlite":
        row = (await conn.execute(text("SELECT sqlite_version()"))).one()
        result["server_version"] = f"SQLite {row[0]}"
        # SELECT 1 never reads the file; reading the schema proves it is an SQLite database
        await conn.execute(text("SELECT count(*) FROM sqlite_master"))
    else:
        result["server_version"] = str(getattr(conn.dialect, "server_version_info", "") or "") or None
    host = result["host"]
    if result["tls"] is False and host and not host.startswith("/") and host not in LOCAL_HOSTS:
        result["warnings"].append(f"the connection to {host} is not encrypted (TLS not in use); "
                                  "require it in production (asyncpg: ?ssl=require, aiomysql: ssl connect_args)")


def capacity_check(args: argparse.Namespace, result: dict[str, Any]) -> None:
    reserved = result.pop("_reserved", None)
    in_use = result.pop("_in_use", None)
    max_user = result.pop("_max_user_connections", None)
    if args.pool_size is None and args.max_overflow is None and args.workers is None:
        return
    pool_size = 5 if args.pool_size is None else args.pool_size  # SQLAlchemy's QueuePool defaults
    max_overflow = 10 if args.max_overflow is None else args.max_overflow
    workers = 1 if args.workers is None else args.workers
    unlimited = pool_size == 0 or max_overflow < 0
    per_process = None if unlimited else pool_size + max_overflow
    app = None if per_process is None else workers * per_process
    cap: dict[str, Any] = {
        "workers": workers, "pool_size": pool_size, "max_overflow": max_overflow,
        "per_process": per_process, "app_max_connections": app,
        "server_max_connections": result["max_connections"], "reserved_connections": reserved,
        "available_to_app": None, "in_use_now": in_use, "max_user_connections": max_user, "exceeds": False,
    }
    result["capacity"] = cap
    if result["max_connections"] is None:
        result["warnings"].append(f"{result['backend']} has no server connection limit to compare the pool with")
        return
    available = result["max_connections"] - (reserved or 0)
    cap["available_to_app"] = available
    limit_name = f"max_connections {result['max_connections']}" + (f" - {reserved} reserved" if reserved else "")
    if unlimited:
        cap["exceeds"] = True
        result["warnings"].append(
            f"the pool has no upper bound (pool_size={pool_size}, max_overflow={max_overflow}): under load the "
            f"app can open more than the {available} connections the server allows ({limit_name})")
        return
    formula = f"{workers} workers x (pool_size {pool_size} + max_overflow {max_overflow}) = {app}"
    if app > available:
        cap["exceeds"] = True
        result["warnings"].append(
            f"{formula} exceeds the {available} connections the server allows ({limit_name}): under load "
            "connects fail with 'too many connections'; lower pool_size/max_overflow or workers, raise "
            "max_connections, or put a pooler (PgBouncer/ProxySQL) in front")
    elif in_use is not None and app + in_use > available:
        cap["exceeds"] = True
        result["warnings"].append(
            f"{formula} fits {limit_name}, but {in_use} other connections are open now, leaving "
            f"{max(available - in_use, 0)}: the app could exhaust the server together with the other clients")
    if max_user is not None and app > max_user:
        cap["exceeds"] = True
        result["warnings"].append(
            f"{formula} exceeds max_user_connections {max_user} for this account")


# --- failure classification ---------------------------------------------------------------

MYSQL_CODES = {
    1044: "authentication", 1045: "authentication", 1130: "authentication", 1251: "authentication",
    1698: "authentication", 2059: "authentication", 1049: "database_missing", 1040: "too_many_connections",
    1203: "too_many_connections", 2026: "ssl", 3159: "ssl", 2005: "dns", 1129: "refused",
}
PG_SQLSTATES = {
    "28P01": "authentication", "28000": "authentication", "3D000": "database_missing",
    "53300": "too_many_connections", "57P03": "server_unavailable", "08004": "refused",
}
MESSAGE_PATTERNS = [  # for drivers whose connect errors carry no code (psycopg, libpq text)
    (r"password authentication failed|authentication failed|access denied|role \S+ does not exist|"
     r"no pg_hba\.conf entry|permission denied for database", "authentication"),
    (r"database \S+ does not exist|unknown database", "database_missing"),
    (r"could not translate host name|name or service not known|nodename nor servname|"
     r"temporary failure in name resolution|getaddrinfo failed|unknown mysql server host", "dns"),
    (r"connection refused|connect call failed", "refused"),
    (r"too many (connections|clients)|remaining connection slots", "too_many_connections"),
    (r"timeout expired|timed out", "timeout"),
    (r"\bssl\b|\btls\b|certificate|secure transport", "ssl"),
    (r"the database system is (starting up|shutting down|in recovery)", "server_unavailable"),
    (r"file is not a database|database disk image is malformed", "not_a_database"),
]


def exception_chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend([getattr(e, "orig", None), e.__cause__, e.__context__])
        todo.extend(x for x in getattr(e, "exceptions", ()) if isinstance(x, BaseException))  # ExceptionGroup
    return seen


def classify(exc: BaseException) -> str:
    chain = exception_chain(exc)
    for e in chain:
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
            return "timeout"
        if isinstance(e, socket.gaierror):
            return "dns"
        if isinstance(e, ssl.SSLError):
            return "ssl"
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        if isinstance(e, OSError) and e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "unreachable"
        if isinstance(e, OSError) and e.errno == errno.ETIMEDOUT:
            return "timeout"
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(code, str) and code in PG_SQLSTATES:
            return PG_SQLSTATES[code]
        args = getattr(e, "args", ())
        if args and isinstance(args[0], int) and args[0] in MYSQL_CODES and "mysql" in type(e).__module__.lower():
            return MYSQL_CODES[args[0]]
    for e in chain:
        message = str(e).lower()
        for pattern, kind in MESSAGE_PATTERNS:
            if re.search(pattern, message):
                return kind
    return "other"


def hint_for(kind: str, url: Any, timeout: float) -> str:
    backend = url.get_backend_name()
    host = url.host or "(local socket)"
    port = url.port or DEFAULT_PORTS.get(backend, "?")
    user = url.username or "(none)"
    hints = {
        "dns": f"host {host!r} does not resolve: check its spelling; in Docker Compose use the service name; "
               "from inside a container 'localhost' is the container itself",
        "refused": f"nothing accepts connections on {host}:{port}: is the server running, on this port, listening "
                   "on this interface (listen_addresses / bind-address), with the container port published?",
        "timeout": f"no answer within {timeout:g} s from {host}:{port}: a firewall/security group dropping packets, "
                   "a wrong port where something else listens, or an overloaded server; raise --timeout on slow links",
        "authentication": f"the server rejected user {user!r}: check user and password (URL-encode special "
                          "characters in the password: @ -> %40, : -> %3A, / -> %2F, # -> %23), and that the "
                          "server lets this user connect from this host (pg_hba.conf / MySQL 'user'@'host' grants)",
        "database_missing": f"database {url.database!r} does not exist on the server: create it "
                            "(CREATE DATABASE ...) or fix the name after the last '/' in the URL",
        "ssl": "TLS negotiation failed: the URL asks for TLS the server does not offer (asyncpg ?ssl=require), or "
               "the certificate did not verify; match the server's TLS setup",
        "too_many_connections": "the server has no free connection slots: close idle clients, lower the apps' "
                                "pool sizes (see --workers/--pool-size/--max-overflow) or raise max_connections",
        "server_unavailable": "the server is starting up, shutting down or in recovery: retry shortly",
        "unreachable": f"no network route to {host}: check the address, VPN and network setup",
        "not_a_database": f"{url.database!r} exists but is not an SQLite database (or is damaged): check the path",
        "other": "see the error message; re-run with --json for the details",
    }
    return hints.get(kind, hints["other"])


def unknown_option(exc: BaseException) -> str | None:
    """The URL query option the driver's connect() rejected (``?sslmode=`` on asyncpg), if that was it."""
    for e in exception_chain(exc):
        if isinstance(e, TypeError):
            m = re.search(r"unexpected keyword argument '([^']+)'", str(e))
            if m:
                return m.group(1)
    return None


def bad_query_option(url: Any, option: str, result: dict[str, Any]) -> dict[str, Any]:
    driver = result["driver"]
    hint = f"remove ?{option}= or pass the {driver} equivalent (see the driver's connect() parameters)"
    if url.get_backend_name() == "postgresql" and driver == "asyncpg" and option in ("sslmode", "connect_timeout"):
        fixed = corrected_url(url)
        result["corrected_url"] = sl.masked_url(fixed)
        hint = f"asyncpg takes ssl= (and timeout=), not libpq's {option}=: use {sl.masked_url(fixed)}"
    return failed(result, sl.EXIT_USAGE, "bad_url",
                  f"the {driver} driver does not accept the URL query option {option!r}", hint)


# --- main ---------------------------------------------------------------------------------

def main(argv: list[str]) -> None:
    as_json = sl.wants_json(argv)
    result = new_result()
    try:
        args = build_parser().parse_args(argv)
    except sl.UsageError as exc:
        finish(failed(result, sl.EXIT_USAGE, "bad_url" if "URL" in str(exc) else "usage", str(exc),
                      "see test-connection.sh --help"), as_json)
        return
    result["timeout_s"] = args.timeout
    raw = args.url or args.url_opt or os.environ.get("DATABASE_URL")
    if args.url and args.url_opt:
        finish(failed(result, sl.EXIT_USAGE, "usage", "give the URL once (positional or --url)"), as_json)
    if not raw:
        finish(failed(result, sl.EXIT_USAGE, "bad_url", "no database URL: pass it as the first argument or set DATABASE_URL",
                      "e.g. test-connection.sh 'postgresql+asyncpg://user:pass@host:5432/db'"), as_json)
    sl.register_password_from_raw(raw)

    for module in ("sqlalchemy", "greenlet"):
        try:
            __import__(module)
        except ImportError:
            result["pip_package"] = "sqlalchemy[asyncio]"
            finish(failed(result, sl.EXIT_ENV, "driver_missing",
                          f"Python module {module!r} is not importable by {sys.executable}",
                          "pip install 'sqlalchemy[asyncio]' in the app's environment "
                          "(or set PYTHON=/path/to/venv/bin/python)"), as_json)

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        scheme = raw.split("://", 1)[0] if "://" in raw else None
        detail = "invalid port" if isinstance(exc, ValueError) else "cannot parse it"
        # the raw text is never echoed: with an unencoded '@' in the password, masking could miss a part
        finish(failed(result, sl.EXIT_USAGE, "bad_url",
                      f"malformed database URL ({detail}; scheme {scheme!r})" if scheme else
                      f"malformed database URL ({detail}; expected DIALECT+DRIVER://USER:PASSWORD@HOST:PORT/DATABASE)",
                      "format: postgresql+asyncpg://user:password@host:5432/dbname (URL-encode special characters "
                      "in the password)"), as_json)
        return
    if isinstance(url.password, str):
        sl.register_secret(url.password)
    register_query_secrets(url)
    if url.port is not None and not 0 < url.port < 65536:
        result["url"] = sl.masked_url(url)
        finish(failed(result, sl.EXIT_USAGE, "bad_url", f"port {url.port} is out of range (1-65535)",
                      "fix the port after the host (PostgreSQL 5432, MySQL/MariaDB 3306)"), as_json)
    if url.host and "@" in url.host:
        # "user:p@ss@host": the part after the first '@' became the host and may hold part of the password
        result["url"] = sl.masked_url(url.set(host="***"))
        finish(failed(result, sl.EXIT_USAGE, "bad_url",
                      "the host part of the URL contains '@': the password probably contains an unencoded '@'",
                      "URL-encode the password (@ -> %40, e.g. urllib.parse.quote_plus(password))"), as_json)
    result.update(url=sl.masked_url(url), backend=url.get_backend_name(), host=url.host,
                  port=url.port or DEFAULT_PORTS.get(url.get_backend_name()),
                  database=url.database, user=url.username)
    if result["backend"] == "sqlite":
        result["host"] = result["port"] = None

    dialect_cls = resolve_dialect(url, result)
    if dialect_cls is None or not driver_installed(dialect_cls, result):
        finish(result, as_json)
        return
    target = sqlite_target(url, result) if result["backend"] == "sqlite" else url
    if target is None:
        finish(result, as_json)
        return

    budget = max(0.05, args.timeout - (time.monotonic() - STARTED) - 0.25)
    # Last resort if the event loop itself gets stuck: answer and leave just before the deadline
    # (the first of the two to finish() wins; finish() emits once).
    watchdog = threading.Timer(budget + 0.2, lambda: finish(
        failed(result, sl.EXIT_PROBLEMS, "timeout", f"no result within {args.timeout:g} s (stuck)",
               hint_for("timeout", url, args.timeout)), as_json))
    watchdog.daemon = True
    watchdog.start()

    async def bounded_check() -> None:
        await asyncio.wait_for(run_check(url, target, args, result), budget)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(bounded_check())
    except (asyncio.TimeoutError, TimeoutError):
        stage = "while connecting" if result["connect_ms"] is None else "while querying"
        if result["dns_ms"] is None and url.host and not url.host.startswith("/"):
            stage = f"resolving {url.host!r}"
        failed(result, sl.EXIT_PROBLEMS, "timeout", f"no answer within {args.timeout:g} s ({stage})",
               hint_for("timeout", url, args.timeout))
    except Exception as exc:  # noqa: BLE001 - every failure is reported, classified, never as a traceback
        option = unknown_option(exc)
        if option is not None:
            finish(bad_query_option(url, option, result), as_json)
        kind = classify(exc)
        # the driver's own exception says it best (SQLAlchemy's wrapper repeats it with noise)
        root = next((e for e in exception_chain(exc) if not type(e).__module__.startswith("sqlalchemy")), exc)
        failed(result, sl.EXIT_PROBLEMS, kind, f"{type(root).__name__}: {root}", hint_for(kind, url, args.timeout))
    finish(result, as_json)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - a bug here must not print a traceback holding a password
        r = new_result()
        finish(failed(r, sl.EXIT_PROBLEMS, "other", f"internal error {type(exc).__name__}: {exc}"),
               sl.wants_json(sys.argv[1:]))

"""Can an async SQLAlchemy app reach this database, and how well? (the logic of test-connection)

``check_connection(url, timeout=..., workers=..., pool_size=..., max_overflow=...)`` returns a
``ConnectionReport``: it checks the URL (``scriptlib.check_url``: malformed, synchronous driver,
rejected query options), that the driver imports, resolves the host, connects twice, runs
``SELECT 1``, reads the server's facts (version, user, TLS, ``max_connections``), compares the
app's pool with them, and classifies a failure (``connection_errors``). It never raises for a
database problem, never prints, and returns within ``timeout`` seconds, also when a driver blocks
the event loop: the check then runs on in an abandoned daemon thread and the report says so
(``threads_abandoned``), for the caller to leave with ``os._exit``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import scriptlib as sl
from connection_errors import classify, hint_for, rejected_keyword, root_cause

DEFAULT_TIMEOUT = 5.0
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
MAX_WARNINGS = 20
EMIT_MARGIN_S = 0.25  # of the --timeout budget, kept for printing the answer


@dataclass
class Capacity:
    """The app's connection budget (``workers x (pool_size + max_overflow)``) against the server's."""

    workers: int
    pool_size: int
    max_overflow: int
    per_process: int | None  # None: no upper bound (pool_size 0 or max_overflow -1)
    app_max_connections: int | None
    server_max_connections: int | None
    reserved_connections: int | None  # slots this user may not use (PostgreSQL superuser_reserved_connections)
    available_to_app: int | None = None
    in_use_now: int | None = None  # connections other clients hold now
    max_user_connections: int | None = None  # MySQL/MariaDB per-account limit
    exceeds: bool = False


@dataclass
class ServerLimits:
    """What the server says about its connection slots (feeds ``Capacity``)."""

    reserved: int | None = None
    in_use: int | None = None
    max_user_connections: int | None = None


@dataclass
class ConnectionReport:
    """The one result; ``to_dict()`` is the ``--json`` object (keys documented in references/diagnostics.md)."""

    ok: bool = False
    exit_code: int = sl.EXIT_PROBLEMS
    error_kind: str | None = None
    error: str | None = None
    hint: str | None = None
    url: str | None = None  # password masked
    backend: str | None = None
    driver: str | None = None
    host: str | None = None
    port: int | None = None
    resolved: list[str] | None = None
    server_version: str | None = None
    database: str | None = None
    user: str | None = None
    tls: bool | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    dns_ms: float | None = None
    first_connect_ms: float | None = None
    connect_ms: float | None = None
    select1_ms: float | None = None
    max_connections: int | None = None
    capacity: Capacity | None = None
    sync_driver: str | None = None
    corrected_url: str | None = None  # password masked
    pip_package: str | None = None
    timeout_s: float | None = None
    elapsed_ms: float | None = None
    warnings: list[str] = field(default_factory=list)
    # not reported: a thread is still stuck in the driver (or the resolver); leave with os._exit
    threads_abandoned: bool = field(default=False, metadata={"reported": False})

    def fail(self, code: int, kind: str, message: Any, hint: str | None = None) -> ConnectionReport:
        self.ok, self.exit_code, self.error_kind = False, code, kind
        self.error, self.hint = sl.shorten(strip_background(str(message))), sl.mask(hint) if hint else None
        return self

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("reported", True)}
        out["capacity"] = dataclasses.asdict(self.capacity) if self.capacity else None
        return out

    def lines(self) -> list[str]:
        """The human-readable report."""
        lines = [f"test-connection: {self.url or '(no URL)'}"]
        if self.backend:
            lines.append(f"  backend      {self.backend} (driver {self.driver or '?'})")
        if self.server_version:
            lines.append(f"  server       {self.server_version}")
        if self.database is not None:
            lines.append(f"  database     {self.database}" + (f"   user {self.user}" if self.user is not None else ""))
        if self.resolved:
            lines.append(f"  resolved     {self.host} -> {', '.join(self.resolved)} ({self.dns_ms} ms)")
        if self.tls is not None:
            tls = f"in use ({self.tls_version}, {self.tls_cipher})" if self.tls else "not in use"
            lines.append(f"  TLS          {tls}")
        if self.connect_ms is not None:
            lines.append(
                f"  latency      connect {self.connect_ms} ms (first connect incl. dialect setup "
                f"{self.first_connect_ms} ms), SELECT 1 {self.select1_ms} ms"
            )
        cap = self.capacity
        if cap:
            app = cap.app_max_connections
            lines.append(
                f"  capacity     app may open {app if app is not None else 'unlimited'} "
                f"({cap.workers} workers x (pool_size {cap.pool_size} + max_overflow {cap.max_overflow}))"
                + (
                    f"; server allows {cap.available_to_app} (max_connections {cap.server_max_connections}"
                    f", {cap.reserved_connections} reserved), {cap.in_use_now} open now"
                    if cap.server_max_connections is not None
                    else ""
                )
            )
        elif self.max_connections is not None:
            lines.append(f"  max_connections {self.max_connections}")
        if self.corrected_url:
            lines.append(f"  use instead  {self.corrected_url}")
        lines += [f"  warning: {w}" for w in self.warnings]
        if self.ok:
            lines.append("ok: connected")
        else:
            lines.append(f"FAILED ({self.error_kind}): {self.error}")
            if self.hint:
                lines.append(f"  try: {self.hint}")
        return lines


def strip_background(text: str) -> str:
    """SQLAlchemy's "(Background on this error at: ...)" link says nothing about this failure."""
    cut = text.find("(Background on this error at:")
    return text[:cut].strip() if cut >= 0 else text


# --- the check ----------------------------------------------------------------------------------


def check_connection(
    url: str | None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
    pool_size: int | None = None,
    max_overflow: int | None = None,
    started: float | None = None,
    how: str = "pass it as the first argument",
) -> ConnectionReport:
    """Check ``url`` (else ``$DATABASE_URL``) as an async app would use it; see the module docstring.

    ``workers``/``pool_size``/``max_overflow``: the app's pool, compared with the server's limit when
    any is given (the others default to 1 worker, SQLAlchemy's 5 and 10). ``started``: the
    ``time.monotonic()`` the ``timeout`` budget counts from (default: now).
    """
    started = time.monotonic() if started is None else started
    report = ConnectionReport(timeout_s=timeout)
    pool = (workers, pool_size, max_overflow)
    try:
        report = run_checks(report, url, timeout=timeout, pool=pool, started=started, how=how)
    except Exception as exc:
        report.fail(sl.EXIT_PROBLEMS, "other", f"internal error {type(exc).__name__}: {exc}")
    report.elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    report.warnings, more = sl.bounded(report.warnings, MAX_WARNINGS)
    if more:
        report.warnings.append(f"... and {more} more warnings")
    return report


def run_checks(
    report: ConnectionReport, raw: str | None, *, timeout: float, pool: tuple[int | None, ...], started: float, how: str
) -> ConnectionReport:
    """The steps in order; each failure fills ``report`` and ends the check."""
    sl.register_url_secrets(raw)
    for module in ("sqlalchemy", "greenlet"):
        try:
            __import__(module)
        except ImportError:
            report.pip_package = "sqlalchemy[asyncio]"
            report.fail(
                sl.EXIT_ENV,
                "driver_missing",
                f"Python module {module!r} is not importable by {sys.executable}",
                "pip install 'sqlalchemy[asyncio]' in the app's environment (or set PYTHON=/path/to/venv/bin/python)",
            )
            return report
    try:
        checked = sl.check_url(raw, how=how)
    except sl.BadURL as exc:
        if exc.parsed is not None:
            describe_url(report, exc.parsed)
        report.url, report.corrected_url, report.sync_driver = exc.url or report.url, exc.corrected_url, exc.sync_driver
        return report.fail(sl.EXIT_USAGE, "bad_url", exc.message, exc.hint or sl.URL_FORMAT_HINT)
    url = checked.url
    describe_url(report, url)
    report.driver, report.corrected_url = checked.driver, checked.corrected_url
    report.warnings += checked.warnings
    try:
        sl.require_driver(checked.dialect)
    except sl.EnvironmentProblem as exc:
        report.pip_package = exc.pip_package
        return report.fail(sl.EXIT_ENV, "driver_missing", str(exc), exc.hint)
    target = sqlite_target(url, report) if report.backend == "sqlite" else url
    if target is None:
        return report
    budget = max(0.05, timeout - (time.monotonic() - started) - EMIT_MARGIN_S)
    outcome = run_bounded(probe(url, target, report, pool), budget)
    if outcome is STUCK:
        # the event loop did not come back (a driver that blocks it, or a machine too loaded to run it in
        # time): answer just before the deadline from a copy the thread cannot change any more, and leave
        # that thread behind
        stuck = dataclasses.replace(report, warnings=list(report.warnings), threads_abandoned=True)
        return stuck.fail(
            sl.EXIT_PROBLEMS,
            "timeout",
            f"no result within {timeout:g} s (stuck {stage(report, url)})",
            hint_for("timeout", url, timeout),
        )
    if isinstance(outcome, (asyncio.TimeoutError, TimeoutError)):
        report.threads_abandoned = True  # e.g. a getaddrinfo() thread of the loop's default executor
        return report.fail(
            sl.EXIT_PROBLEMS,
            "timeout",
            f"no answer within {timeout:g} s ({stage(report, url)})",
            hint_for("timeout", url, timeout),
        )
    if isinstance(outcome, BaseException):
        option = rejected_keyword(outcome)
        if option is not None:
            bad = sl.rejected_option(url, option, str(report.driver))
            report.corrected_url = bad.corrected_url or report.corrected_url
            return report.fail(sl.EXIT_USAGE, "bad_url", bad.message, bad.hint)
        kind = classify(outcome)
        root = root_cause(outcome)
        report.fail(sl.EXIT_PROBLEMS, kind, f"{type(root).__name__}: {root}", hint_for(kind, url, timeout))
    return report


def stage(report: ConnectionReport, url: Any) -> str:
    """Where a check that ran out of time was: resolving the host, connecting, or querying."""
    if report.dns_ms is None and url.host and not url.host.startswith("/"):
        return f"resolving {url.host!r}"
    return "while connecting" if report.connect_ms is None else "while querying"


def describe_url(report: ConnectionReport, url: Any) -> None:
    report.url = sl.masked_url(url)
    if url.host and "@" in url.host:
        return  # part of the password
    report.backend = url.get_backend_name()
    report.database, report.user = url.database, url.username
    if report.backend != "sqlite":
        report.host, report.port = url.host, url.port or sl.DEFAULT_PORTS.get(report.backend)


STUCK = object()


def run_bounded(coro: Any, budget: float) -> Any:
    """Run ``coro`` on a new event loop in a daemon thread; its exception, None, or STUCK when the
    loop did not come back within ``budget`` (+0.2 s) although ``wait_for`` should have cut it."""
    outcome: list[Any] = []

    def runner() -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(asyncio.wait_for(coro, budget))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=runner, name="test-connection-check", daemon=True)
    thread.start()
    thread.join(budget + 0.2)
    return outcome[0] if outcome else STUCK


def sqlite_target(url: Any, report: ConnectionReport) -> Any:
    """A read-only URL for an existing SQLite file (never creates one); None when it is missing."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory:") or url.query.get("uri"):
        if not database or "memory" in database:
            report.warnings.append(
                "in-memory SQLite: every connection sees its own empty database "
                "unless the engine uses one shared connection (StaticPool)"
            )
        return url
    path = Path(database).expanduser().resolve()
    report.database = str(path)
    if not path.is_file():
        report.fail(
            sl.EXIT_PROBLEMS,
            "database_missing",
            f"SQLite file {str(path)!r} does not exist",
            "check the path (three slashes = relative to the working directory, four = absolute: "
            "sqlite+aiosqlite:////abs/path.db); run migrations to create it",
        )
        return None
    return url.set(database=f"file:{quote(str(path))}?mode=ro", query={**url.query, "uri": "true"})


async def resolve_host(url: Any, report: ConnectionReport) -> None:
    host = url.host
    if not host or host.startswith("/"):
        return
    port = url.port or sl.DEFAULT_PORTS.get(url.get_backend_name(), 0)
    t0 = time.perf_counter()
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    report.dns_ms = round((time.perf_counter() - t0) * 1000, 2)
    report.resolved, _ = sl.bounded(sorted({info[4][0] for info in infos}), 5)


async def probe(url: Any, target: Any, report: ConnectionReport, pool: tuple[int | None, ...]) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    await resolve_host(url, report)
    engine = create_async_engine(target, poolclass=NullPool)
    try:
        t0 = time.perf_counter()
        async with engine.connect() as conn:  # first connect also runs the dialect's setup queries
            report.first_connect_ms = round((time.perf_counter() - t0) * 1000, 2)
        t0 = time.perf_counter()
        async with engine.connect() as conn:
            report.connect_ms = round((time.perf_counter() - t0) * 1000, 2)
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            timings = []
            for _ in range(3):
                t0 = time.perf_counter()
                value = (await conn.execute(text("SELECT 1"))).scalar()
                timings.append((time.perf_counter() - t0) * 1000)
                if value != 1:
                    raise RuntimeError(f"SELECT 1 returned {value!r}")
            report.select1_ms = round(statistics.median(timings), 2)
            limits = await server_facts(conn, report)
    finally:
        await asyncio.wait_for(engine.dispose(), 2)
    report.ok, report.exit_code = True, sl.EXIT_OK
    workers, pool_size, max_overflow = pool
    if workers is not None or pool_size is not None or max_overflow is not None:
        check_capacity(report, limits, workers=workers, pool_size=pool_size, max_overflow=max_overflow)


async def optional_row(conn: Any, sql: str) -> Any:
    """One row, or None when the server lacks the view/setting (older versions, no privilege)."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        return (await conn.execute(text(sql))).first()
    except DBAPIError:
        return None


async def server_facts(conn: Any, report: ConnectionReport) -> ServerLimits:
    from sqlalchemy import text

    limits = ServerLimits()
    name = conn.dialect.name
    if name == "postgresql":
        row = (
            await conn.execute(
                text(
                    "SELECT current_setting('server_version'), current_database(), current_user, "
                    "current_setting('max_connections')::int, current_setting('superuser_reserved_connections')::int, "
                    "coalesce(current_setting('reserved_connections', true), '0')::int, "
                    "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
                )
            )
        ).one()
        report.server_version, report.database, report.user = f"PostgreSQL {row[0]}", row[1], row[2]
        report.max_connections = row[3]
        limits.reserved = 0 if row[6] else row[4] + row[5]  # superusers may use the reserved slots
        tls = await optional_row(conn, "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        if tls is not None:
            report.tls, report.tls_version, report.tls_cipher = bool(tls[0]), tls[1], tls[2]
        busy = await optional_row(conn, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        limits.in_use = int(busy[0]) - 1 if busy is not None else None  # minus this connection
    elif name in ("mysql", "mariadb"):
        row = (
            await conn.execute(
                text("SELECT VERSION(), DATABASE(), CURRENT_USER(), @@max_connections, @@max_user_connections")
            )
        ).one()
        version = str(row[0])
        product = "MariaDB" if "mariadb" in version.lower() else "MySQL"
        report.server_version, report.database, report.user = f"{product} {version}", row[1], row[2]
        report.max_connections = int(row[3])
        limits.max_user_connections = int(row[4]) or None
        limits.reserved = 0  # MySQL/MariaDB keep one extra connection for an admin beyond max_connections
        cipher = await optional_row(conn, "SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        version_row = await optional_row(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")
        if cipher is not None:
            report.tls, report.tls_cipher = bool(cipher[1]), cipher[1] or None
            report.tls_version = (version_row[1] or None) if version_row is not None else None
        busy = await optional_row(conn, "SHOW GLOBAL STATUS LIKE 'Threads_connected'")
        limits.in_use = int(busy[1]) - 1 if busy is not None else None
    elif name == "sqlite":
        row = (await conn.execute(text("SELECT sqlite_version()"))).one()
        report.server_version = f"SQLite {row[0]}"
        # SELECT 1 never reads the file; reading the schema proves it is an SQLite database
        await conn.execute(text("SELECT count(*) FROM sqlite_master"))
    else:
        report.server_version = str(getattr(conn.dialect, "server_version_info", "") or "") or None
    host = report.host
    if report.tls is False and host and not host.startswith("/") and host not in LOCAL_HOSTS:
        report.warnings.append(
            f"the connection to {host} is not encrypted (TLS not in use); "
            "require it in production (asyncpg: ?ssl=require, aiomysql: ssl connect_args)"
        )
    return limits


def check_capacity(
    report: ConnectionReport,
    limits: ServerLimits,
    *,
    workers: int | None,
    pool_size: int | None,
    max_overflow: int | None,
) -> None:
    """Fill ``report.capacity`` and warn when the app's pools can exceed what the server allows."""
    pool_size = 5 if pool_size is None else pool_size  # SQLAlchemy's QueuePool defaults
    max_overflow = 10 if max_overflow is None else max_overflow
    workers = 1 if workers is None else workers
    unlimited = pool_size == 0 or max_overflow < 0
    per_process = None if unlimited else pool_size + max_overflow
    app = None if per_process is None else workers * per_process
    cap = Capacity(
        workers=workers,
        pool_size=pool_size,
        max_overflow=max_overflow,
        per_process=per_process,
        app_max_connections=app,
        server_max_connections=report.max_connections,
        reserved_connections=limits.reserved,
        in_use_now=limits.in_use,
        max_user_connections=limits.max_user_connections,
    )
    report.capacity = cap
    if report.max_connections is None:
        report.warnings.append(f"{report.backend} has no server connection limit to compare the pool with")
        return
    reserved, in_use = limits.reserved, limits.in_use
    available = report.max_connections - (reserved or 0)
    cap.available_to_app = available
    limit_name = f"max_connections {report.max_connections}" + (f" - {reserved} reserved" if reserved else "")
    if app is None:
        cap.exceeds = True
        report.warnings.append(
            f"the pool has no upper bound (pool_size={pool_size}, max_overflow={max_overflow}): under load the "
            f"app can open more than the {available} connections the server allows ({limit_name})"
        )
        return
    formula = f"{workers} workers x (pool_size {pool_size} + max_overflow {max_overflow}) = {app}"
    if app > available:
        cap.exceeds = True
        report.warnings.append(
            f"{formula} exceeds the {available} connections the server allows ({limit_name}): under load "
            "connects fail with 'too many connections'; lower pool_size/max_overflow or workers, raise "
            "max_connections, or put a pooler (PgBouncer/ProxySQL) in front"
        )
    elif in_use is not None and app + in_use > available:
        cap.exceeds = True
        report.warnings.append(
            f"{formula} fits {limit_name}, but {in_use} other connections are open now, leaving "
            f"{max(available - in_use, 0)}: the app could exhaust the server together with the other clients"
        )
    if limits.max_user_connections is not None and app > limits.max_user_connections:
        cap.exceeds = True
        report.warnings.append(f"{formula} exceeds max_user_connections {limits.max_user_connections} for this account")

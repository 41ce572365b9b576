"""Why a connection attempt failed: exception -> ``error_kind``, and ``error_kind`` -> a hint.

The tables map what drivers raise to one vocabulary (``references/diagnostics.md`` lists it):
PostgreSQL SQLSTATEs (asyncpg ``sqlstate``, psycopg ``pgcode``), MySQL/MariaDB error numbers
(``args[0]`` of aiomysql/asyncmy/PyMySQL errors), OS errno values, and message patterns for
drivers whose connect errors carry no code. Used by ``connection_check`` (test-connection).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
from typing import Any

from scriptlib import DEFAULT_PORTS

# MySQL / MariaDB server and client error numbers
MYSQL_ERRORS = {
    1044: "authentication",  # ER_DBACCESS_DENIED_ERROR
    1045: "authentication",  # ER_ACCESS_DENIED_ERROR
    1130: "authentication",  # ER_HOST_NOT_PRIVILEGED
    1251: "authentication",  # ER_NOT_SUPPORTED_AUTH_MODE
    1698: "authentication",  # ER_ACCESS_DENIED_NO_PASSWORD_ERROR
    2059: "authentication",  # CR_AUTH_PLUGIN_CANNOT_LOAD
    1049: "database_missing",  # ER_BAD_DB_ERROR
    1040: "too_many_connections",  # ER_CON_COUNT_ERROR
    1203: "too_many_connections",  # ER_TOO_MANY_USER_CONNECTIONS
    2026: "ssl",  # CR_SSL_CONNECTION_ERROR
    3159: "ssl",  # ER_SECURE_TRANSPORT_REQUIRED
    2005: "dns",  # CR_UNKNOWN_HOST
    1129: "refused",  # ER_HOST_IS_BLOCKED
}
# PostgreSQL SQLSTATEs
PG_SQLSTATES = {
    "28P01": "authentication",  # invalid_password
    "28000": "authentication",  # invalid_authorization_specification
    "3D000": "database_missing",  # invalid_catalog_name
    "53300": "too_many_connections",  # too_many_connections
    "57P03": "server_unavailable",  # cannot_connect_now
    "08004": "refused",  # sqlclient_unable_to_establish_sqlconnection
}
# OS errno values of a failed socket connect
ERRNOS = {
    errno.ECONNREFUSED: "refused",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTUNREACH: "unreachable",
    errno.ETIMEDOUT: "timeout",
}
# for drivers whose connect errors carry no code (psycopg, libpq text); first match wins
MESSAGE_PATTERNS = [
    (
        (
            r"password authentication failed|authentication failed|access denied|role \S+ does not exist|"
            r"no pg_hba\.conf entry|permission denied for database"
        ),
        "authentication",
    ),
    (r"database \S+ does not exist|unknown database", "database_missing"),
    (
        (
            r"could not translate host name|name or service not known|nodename nor servname|"
            r"temporary failure in name resolution|getaddrinfo failed|unknown mysql server host"
        ),
        "dns",
    ),
    (r"connection refused|connect call failed", "refused"),
    (r"too many (connections|clients)|remaining connection slots", "too_many_connections"),
    (r"timeout expired|timed out", "timeout"),
    (r"\bssl\b|\btls\b|certificate|secure transport", "ssl"),
    (r"the database system is (starting up|shutting down|in recovery)", "server_unavailable"),
    (r"file is not a database|database disk image is malformed", "not_a_database"),
]
ERROR_KINDS = (
    "dns",
    "refused",
    "timeout",
    "authentication",
    "database_missing",
    "ssl",
    "too_many_connections",
    "server_unavailable",
    "unreachable",
    "not_a_database",
    "other",
)


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: SQLAlchemy's ``.orig``, causes, contexts, exception-group members."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 20:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend([getattr(e, "orig", None), e.__cause__, e.__context__])
        todo.extend(x for x in getattr(e, "exceptions", ()) if isinstance(x, BaseException))
    return seen


def classify(exc: BaseException) -> str:
    """The ``error_kind`` of a failed connection attempt (codes first, then message patterns)."""
    chain = exception_chain(exc)
    for e in chain:
        if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
            return "timeout"
        if isinstance(e, socket.gaierror):
            return "dns"
        if isinstance(e, ssl.SSLError):
            return "ssl"
        if isinstance(e, OSError) and e.errno in ERRNOS:
            return ERRNOS[e.errno]
        if isinstance(e, ConnectionRefusedError):
            return "refused"
        code = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(code, str) and code in PG_SQLSTATES:
            return PG_SQLSTATES[code]
        args = getattr(e, "args", ())
        if args and isinstance(args[0], int) and args[0] in MYSQL_ERRORS and "mysql" in type(e).__module__.lower():
            return MYSQL_ERRORS[args[0]]
    for e in chain:
        message = str(e).lower()
        for pattern, kind in MESSAGE_PATTERNS:
            if re.search(pattern, message):
                return kind
    return "other"


def root_cause(exc: BaseException) -> BaseException:
    """The driver's own exception (SQLAlchemy's wrapper repeats it with noise)."""
    return next((e for e in exception_chain(exc) if not type(e).__module__.startswith("sqlalchemy")), exc)


def rejected_keyword(exc: BaseException) -> str | None:
    """The URL query option the driver's connect() rejected (``unexpected keyword argument``), if that was it."""
    for e in exception_chain(exc):
        if isinstance(e, TypeError):
            m = re.search(r"unexpected keyword argument '([^']+)'", str(e))
            if m:
                return m.group(1)
    return None


def hint_for(kind: str, url: Any, timeout: float) -> str:
    """What to try for ``kind``, naming the URL's host, port, user and database."""
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

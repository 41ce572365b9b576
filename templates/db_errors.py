"""What a database error means, whichever driver raised it: conflict, unavailable, retryable.

Copy beside ``database.py``. Framework-free: the FastAPI error handlers
(``fastapi_integration.py``) and the retry helper (``retry.py``) are built on it.

- ``db_error_codes(exc)``: ``(SQLSTATE, MySQL error number)`` - the one place that reads them.
- ``is_conflict(exc)``: duplicate key or foreign-key violation (existing data; HTTP 409).
- ``is_database_unavailable(exc)``: unreachable, restarting, lost connection, pool timeout (503).
- ``is_retryable(exc)``: serialization failure, deadlock, lock wait timeout, SQLite busy.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Unique and foreign-key violations: PostgreSQL SQLSTATE, MySQL/MariaDB error numbers, SQLite text.
CONFLICT_SQLSTATES = frozenset({"23505", "23503"})
CONFLICT_MYSQL_ERRORS = frozenset({1062, 1451, 1452, 1586})
CONFLICT_SQLITE_TEXT = ("UNIQUE constraint failed", "FOREIGN KEY constraint failed")

# "Not reachable right now" from the server: SQLSTATE class 08 (connection exception), 57P01
# admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now ("the database system is
# starting up / shutting down"); see "PostgreSQL Error Codes".
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# MySQL/MariaDB: 1040 too many connections, 1053 server shutdown in progress, 2002/2003 can't
# connect, 2006 server has gone away, 2013 lost connection during query.
UNAVAILABLE_MYSQL_ERRORS = frozenset({1040, 1053, 2002, 2003, 2006, 2013})

# PostgreSQL: serialization_failure, deadlock_detected (Appendix A, "PostgreSQL Error Codes").
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# MySQL/MariaDB: ER_LOCK_DEADLOCK, ER_LOCK_WAIT_TIMEOUT. After 1213 InnoDB has rolled the whole
# transaction back; after 1205 only the statement - retry the whole transaction either way.
RETRYABLE_MYSQL_ERRORS = frozenset({1213, 1205})


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception: ``exc.orig`` for a SQLAlchemy ``DBAPIError``, else ``exc``."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return exc.orig
    return exc


def db_error_codes(exc: BaseException) -> tuple[str | None, int | None]:
    """``(SQLSTATE, MySQL error number)`` behind ``exc``, whichever driver raised it.

    asyncpg (through SQLAlchemy's adapter) and psycopg 3 expose the SQLSTATE as ``sqlstate``,
    psycopg2 as ``pgcode``; aiomysql, asyncmy and PyMySQL put the MySQL error number in
    ``args[0]``. Check the number on MySQL/MariaDB: 1205 (lock wait timeout) comes with the
    catch-all SQLSTATE HY000 and the driver's ``sqlstate`` is a generic 23000 for every
    integrity error.
    """
    orig = driver_error(exc)
    if isinstance(orig, OSError):  # ConnectionRefusedError(111, ...): an OS errno, not a server code
        return None, None
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    args = getattr(orig, "args", ())
    errno = args[0] if args and isinstance(args[0], int) else None
    return (sqlstate if isinstance(sqlstate, str) else None), errno


def is_conflict(exc: BaseException) -> bool:
    """True for an ``IntegrityError`` caused by existing data (duplicate key, foreign key)."""
    sqlstate, errno = db_error_codes(exc)
    if errno is not None:
        return errno in CONFLICT_MYSQL_ERRORS
    if sqlstate is not None:
        return sqlstate in CONFLICT_SQLSTATES
    return any(text_ in str(driver_error(exc)) for text_ in CONFLICT_SQLITE_TEXT)


def is_database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached or dropped the connection.

    Covers what a server restart produces: asyncpg raises a refused or lost connection unwrapped
    (``ConnectionRefusedError``, ``ConnectionError: unexpected connection_lost() call``),
    SQLAlchemy 2.0 also lets asyncpg's ``CannotConnectNowError`` through; the others arrive as
    ``DBAPIError`` whose ``connection_invalidated`` is often False for a failed connect.
    """
    if isinstance(exc, PoolTimeoutError | ConnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = driver_error(exc)
    if isinstance(orig, ConnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.orig is None:
        return False
    sqlstate, errno = db_error_codes(exc)
    if errno is not None:
        return errno in UNAVAILABLE_MYSQL_ERRORS
    if sqlstate is not None:
        return sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    # psycopg: a failed connection attempt ("connection failed: ... Connection refused") has no SQLSTATE.
    return type(orig).__module__.startswith("psycopg") and type(orig).__name__ == "OperationalError"


def is_sqlite_busy(exc: BaseException | None) -> bool:
    """SQLITE_BUSY and its extended codes (BUSY_SNAPSHOT 517 ...): "database is locked"."""
    orig = driver_error(exc) if exc is not None else None
    if not isinstance(orig, sqlite3.Error):
        return False
    code = getattr(orig, "sqlite_errorcode", None)  # Python 3.11+
    return (code & 0xFF) == 5 if isinstance(code, int) else "database is locked" in str(orig)


def is_retryable(exc: BaseException) -> bool:
    """True when the database aborted the transaction because of a concurrent one: serialization
    failure or deadlock (PostgreSQL 40001/40P01, MySQL 1213/1205), SQLite busy.

    A lost connection is not retried: whether its COMMIT happened is unknown.
    """
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    sqlstate, errno = db_error_codes(exc)
    return sqlstate in RETRYABLE_SQLSTATES or errno in RETRYABLE_MYSQL_ERRORS or is_sqlite_busy(exc)

"""Database outages answer 503 with Retry-After instead of 500.

What reaches the app while the database restarts depends on the driver: a refused or lost
connection arrives as ``DBAPIError`` (aiomysql: MySQL error 2002/2003/2006/2013), but asyncpg's
``ConnectionRefusedError`` / ``ConnectionError`` on connect and some of its ``PostgresError``s
("the database system is starting up / shutting down", SQLSTATE 57P03) are not wrapped by
SQLAlchemy at all.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

RETRY_AFTER_SECONDS = 5
# SQLSTATE class 08 (connection exception), 57P01-57P03 (admin / crash shutdown, cannot connect now)
UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03")
# MySQL/MariaDB: too many connections, shutdown in progress, can't connect, gone away, lost connection
UNAVAILABLE_MYSQL_ERRORS = frozenset({1040, 1053, 2002, 2003, 2006, 2013})


def is_database_unavailable(exc: BaseException) -> bool:
    """True when ``exc`` means the database could not be reached or dropped the connection."""
    if isinstance(exc, PoolTimeoutError | ConnectionError):
        return True
    orig: BaseException | None = exc
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
    if orig is None:
        return False
    if isinstance(orig, ConnectionError):
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):  # MySQL drivers: (errno, message)
        return args[0] in UNAVAILABLE_MYSQL_ERRORS
    sqlstate = getattr(orig, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES)


def unavailable_response() -> JSONResponse:
    return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def install_database_error_handlers(app: FastAPI) -> None:
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            return unavailable_response()
        raise exc  # anything else is a bug: keep the 500

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeoutError, database_error)
    app.add_exception_handler(ConnectionError, database_error)  # asyncpg: refused / lost, unwrapped
    try:
        from asyncpg import PostgresError
    except ImportError:
        pass
    else:  # asyncpg errors SQLAlchemy does not wrap, e.g. 57P03 while the server starts
        app.add_exception_handler(PostgresError, database_error)

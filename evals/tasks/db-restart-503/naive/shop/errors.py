# DELIBERATELY WRONG example for the evals (naive/ of db-restart-503): never copy it.
"""Database outages answer 503 with Retry-After instead of 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

RETRY_AFTER_SECONDS = 5


def unavailable_response() -> JSONResponse:
    return JSONResponse({"detail": "database unavailable, retry later"}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def install_database_error_handlers(app: FastAPI) -> None:
    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        # OperationalError / InterfaceError: refused, lost or invalidated connections
        if isinstance(exc, PoolTimeoutError) or (isinstance(exc, DBAPIError) and (
                exc.connection_invalidated or type(exc).__name__ in ("OperationalError", "InterfaceError"))):
            return unavailable_response()
        raise exc

    app.add_exception_handler(DBAPIError, database_error)
    app.add_exception_handler(PoolTimeoutError, database_error)

"""FastAPI wiring for the framework-free ``database.py``: lifespan, session dependency, error
handlers and ``/health``. The only template that imports ``fastapi``.

Copy beside ``database.py`` and ``db_errors.py`` (e.g. ``app/db/fastapi_integration.py``):

- ``lifespan`` / ``create_lifespan(settings)``: creates the engine at startup, disposes it at shutdown.
- ``SessionDep``: a request-scoped ``AsyncSession`` that commits **before** the response is sent
  (``Depends(..., scope="function")``), so a failed commit becomes an HTTP error, not a lost write.
- ``install_error_handlers(app)``: unique / foreign-key violation -> 409; pool timeout,
  unreachable/restarting server or lost connection -> 503 with Retry-After.
- ``health_router``: ``GET /health`` runs ``SELECT 1`` (bounded to 3 s).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from .database import DatabaseSettings, commit_or_rollback, create_db_engine, create_sessionmaker
from .db_errors import is_conflict, is_database_unavailable


def create_lifespan(
    settings: DatabaseSettings | Callable[[], DatabaseSettings] = DatabaseSettings.from_env,
    *,
    on_startup: Callable[[AsyncEngine], Awaitable[None]] | None = None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that owns one engine per process: ``FastAPI(lifespan=create_lifespan(settings))``.

    ``settings`` is a ``DatabaseSettings`` or a callable returning one, called at startup (the
    default reads the environment then, not at import). ``on_startup(engine)`` runs after the
    engine exists, e.g. to create tables in a demo. The engine is disposed at shutdown.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(settings() if callable(settings) else settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        try:
            if on_startup is not None:
                await on_startup(engine)
            yield
        finally:
            await engine.dispose()

    return lifespan


# Create the engine once per process from DATABASE_URL; dispose it at shutdown.
lifespan = create_lifespan()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request; commit if the endpoint returned normally, else roll back.

    Use it through ``SessionDep`` (``scope="function"``): the code after ``yield`` then runs
    when the endpoint returns and **before** the response is sent, so an IntegrityError at
    commit reaches the error handlers (-> 409) instead of being raised after a 2xx went out.
    """
    async with commit_or_rollback(request.app.state.sessionmaker) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


def install_error_handlers(app: FastAPI, *, retry_after_seconds: int = 1) -> None:
    """Map database errors to HTTP answers instead of a 500 with a traceback.

    Unique / foreign-key violations -> 409 (``is_conflict``); pool timeout, unreachable or restarting server, lost connection -> 503
    with ``Retry-After`` (``is_database_unavailable``); other database errors stay 500.
    """

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        if not is_conflict(exc):
            raise exc  # NOT NULL / CHECK violations are bugs in the app, not the client's fault: 500
        return JSONResponse({"detail": "conflict with existing data"}, status_code=409)

    async def unavailable(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            {"detail": "database unavailable, retry later"},
            status_code=503,
            headers={"Retry-After": str(retry_after_seconds)},
        )

    async def database_error(request: Request, exc: Exception) -> JSONResponse:
        if is_database_unavailable(exc):
            return await unavailable(request, exc)
        raise exc

    app.add_exception_handler(IntegrityError, conflict)
    app.add_exception_handler(PoolTimeoutError, unavailable)
    app.add_exception_handler(DBAPIError, database_error)
    # asyncpg's refused / lost connections are not wrapped by SQLAlchemy (2.0 and 2.1).
    app.add_exception_handler(ConnectionError, unavailable)
    try:  # imported by name: asyncpg ships no type information, and not every app uses it
        asyncpg = importlib.import_module("asyncpg")
    except ImportError:  # not using asyncpg
        pass
    else:  # SQLAlchemy 2.0 raises some asyncpg connect errors unwrapped (57P03 while restarting)
        app.add_exception_handler(asyncpg.PostgresError, database_error)


HEALTH_TIMEOUT_SECONDS = 3.0  # well below a load balancer's probe timeout; pool_timeout is 30 s
health_router = APIRouter()


@health_router.get("/health")
async def health(request: Request) -> JSONResponse:
    """200 when ``SELECT 1`` succeeds; 503 when the database is unreachable or the probe times out
    (without leaking connection details). Anything else is a bug: a 500 with its traceback logged."""
    engine: AsyncEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:  # lifespan did not run (e.g. a test client without it)
        return JSONResponse({"status": "unavailable"}, status_code=503)
    try:
        await asyncio.wait_for(select_one(engine), HEALTH_TIMEOUT_SECONDS)
    except (asyncio.TimeoutError, TimeoutError):  # the probe's own deadline: an exhausted pool must not hang it
        return JSONResponse({"status": "unavailable"}, status_code=503)
    except Exception as exc:
        if is_database_unavailable(exc):  # includes PoolTimeoutError and refused connections
            return JSONResponse({"status": "unavailable"}, status_code=503)
        raise
    return JSONResponse({"status": "ok"})


async def select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))

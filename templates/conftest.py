"""Pytest fixtures for YOUR test suite: async SQLAlchemy 2.x + FastAPI, every test rolled back.

Copy to ``tests/conftest.py`` and point the imports under "Your project" at your code (your app,
your ``Base``, and where you copied ``scratch.py``, ``database.py`` and ``fastapi_integration.py``).
Needs pytest-asyncio >= 1.0 and httpx. Run with ``TEST_DATABASE_URL`` set to a server you may
create a schema (PostgreSQL) or database (MySQL/MariaDB) on; unset, an SQLite file is used.

Fixtures:
- ``engine`` (once per test session): works in a scratch namespace of ``TEST_DATABASE_URL``
  (its own schema / database / temp file, made by ``scratch.py`` and dropped at the end), with the
  tables of ``Base.metadata`` created once. Nothing outside that namespace is touched.
- ``connection``: one connection per test inside an outer transaction, rolled back at teardown.
- ``session``: an ``AsyncSession`` on that connection with ``join_transaction_mode=
  "create_savepoint"``: ``session.commit()`` only releases a SAVEPOINT, so the test's data still
  disappears at teardown. (On aiosqlite this relies on the BEGIN hook in ``create_db_engine``.)
- ``client``: ``httpx.AsyncClient`` over ``ASGITransport``; the app's ``get_session`` dependency
  is overridden so each request gets its own session on the test's connection: what the endpoint
  commits, the test sees, and the rollback removes. App exceptions are re-raised in the test.

Not covered: the app's lifespan is not run (ASGITransport does not send lifespan events), and
requests must not run concurrently (they share one connection). Every fixture and test shares the
session-wide event loop, which the engine's pooled connections are bound to.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

# --- Your project ------------------------------------------------------------------------------
from app.main import app as application  # your FastAPI app
from pytest_asyncio import is_async_test
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from templates.base_model import Base  # your declarative Base (all models imported by the app)
from templates.database import DatabaseSettings, commit_or_rollback, create_db_engine
from templates.fastapi_integration import get_session
from templates.scratch import scratch_url

# ------------------------------------------------------------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run every async test in the session-wide loop, like the session-scoped ``engine``."""
    session_loop = pytest.mark.asyncio(loop_scope="session")
    for item in items:
        if is_async_test(item):
            item.add_marker(session_loop, append=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def engine() -> AsyncIterator[AsyncEngine]:
    async with scratch_url(os.environ.get("TEST_DATABASE_URL") or "sqlite+aiosqlite://") as (url, connect_args):
        settings = DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args)
        eng = create_db_engine(settings)
        try:
            async with eng.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            yield eng
        finally:
            await eng.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        try:
            yield conn
        finally:
            if outer.is_active:
                await outer.rollback()


def savepoint_sessions(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions that join the test's transaction; their commit/rollback act on a SAVEPOINT."""
    return async_sessionmaker(bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint")


@pytest_asyncio.fixture(loop_scope="session")
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    async with savepoint_sessions(connection)() as s:
        yield s


@pytest_asyncio.fixture(loop_scope="session")
async def client(connection: AsyncConnection) -> AsyncIterator[httpx.AsyncClient]:
    sessions = savepoint_sessions(connection)

    async def session_for_request() -> AsyncIterator[AsyncSession]:
        # Same contract as get_session: commit when the endpoint returns, roll back on error.
        # The override keeps the scope declared at Depends(..., scope="function").
        async with commit_or_rollback(sessions) as s:
            yield s

    application.dependency_overrides[get_session] = session_for_request
    try:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c
    finally:
        application.dependency_overrides.pop(get_session, None)

"""Backend matrix for the whole suite.

Every test that takes the ``backend`` fixture (directly or through ``db_url`` / ``engine`` /
``server_url``) runs once per database backend:

- ``sqlite``      always (aiosqlite, a file in a temporary directory);
- ``postgresql``  when ``TEST_POSTGRES_URL`` is set, e.g. postgresql+asyncpg://postgres@127.0.0.1/test;
- ``mysql``       when ``TEST_MYSQL_URL`` is set, e.g. mysql+aiomysql://root@127.0.0.1/test.

Without a URL the server backend is skipped with a reason that says how to enable it; with
``REQUIRE_ALL_BACKENDS=1`` a missing URL or an unreachable server fails instead.
Each test session works in its own schema (PostgreSQL) / database (MySQL) / file (SQLite), made by
``templates.scratch`` and removed at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from templates.database import DatabaseSettings, create_db_engine
from templates.scratch import scratch_url

BACKENDS: dict[str, str | None] = {"sqlite": None, "postgresql": "TEST_POSTGRES_URL", "mysql": "TEST_MYSQL_URL"}
EXAMPLE_URLS = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/test",
    "mysql": "mysql+aiomysql://root@127.0.0.1:3306/test",
}
REQUIRE_ALL = os.environ.get("REQUIRE_ALL_BACKENDS", "").strip() not in ("", "0", "false", "no")

_reachable: dict[str, str | None] = {}


def masked(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


async def _probe(url: str) -> None:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), 5)
    finally:
        await engine.dispose()


def unavailable_reason(backend: str) -> str | None:
    """None when the backend can be used, else why not (and how to enable it)."""
    if backend in _reachable:
        return _reachable[backend]
    var = BACKENDS[backend]
    reason: str | None = None
    if var is not None:
        url = os.environ.get(var)
        if not url:
            reason = f"{backend} tests skipped: set {var}={EXAMPLE_URLS[backend]} (your server's URL) to run them"
        else:
            try:
                asyncio.run(asyncio.wait_for(_probe(url), 10))
            except Exception as exc:
                reason = f"{backend} server at {masked(url)} is unreachable: {type(exc).__name__}: {exc}"
    _reachable[backend] = reason
    return reason


def server_url_for(backend: str) -> str:
    var = BACKENDS[backend]
    return os.environ[var] if var else "sqlite+aiosqlite://"


@pytest.fixture(scope="session", params=list(BACKENDS))
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    reason = unavailable_reason(name)
    if reason:
        if REQUIRE_ALL:
            pytest.fail(f"REQUIRE_ALL_BACKENDS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return name


@pytest.fixture(scope="session")
def server_url(backend: str) -> str:
    """The server URL as the user would set DATABASE_URL (for subprocess runs of examples/scripts).

    Programs given this URL must create their own namespace (templates.scratch) and clean up.
    """
    return server_url_for(backend)


@pytest.fixture(scope="session")
async def db_url(server_url: str) -> AsyncIterator[tuple[URL, dict[str, Any]]]:
    """A fresh namespace for this test session: ``(url, connect_args)``; dropped at the end."""
    async with scratch_url(server_url) as namespace:
        yield namespace


@pytest.fixture(scope="session")
async def engine(db_url: tuple[URL, dict[str, Any]]) -> AsyncIterator[AsyncEngine]:
    """One engine per backend for the session, made by the template's ``create_engine``."""
    url, connect_args = db_url
    eng = create_db_engine(DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args))
    yield eng
    await eng.dispose()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "only_backends(*names): run only on these backends (sqlite, postgresql, mysql); the other "
        "backend parameters are deselected at collection, so CI reports no skips for them",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect backend parameters a test declares it does not apply to (``only_backends``)."""
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("only_backends")
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("backend") if callspec is not None else None
        if marker is not None:
            unknown = set(marker.args) - set(BACKENDS)
            if unknown:
                raise pytest.UsageError(f"{item.nodeid}: only_backends names unknown backends {sorted(unknown)}")
        if marker is not None and name is not None and name not in marker.args:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep

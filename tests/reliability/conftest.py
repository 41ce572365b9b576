"""Fixtures for tests/reliability: private PostgreSQL servers and PgBouncer.

Tests that need their own server (stop/restart it, put PgBouncer in front of it) use
``private_pg`` / ``own_pg`` (initdb + pg_ctl), ``replication`` (a primary and a streaming hot
standby made with pg_basebackup -R) or ``own_mariadb`` (mariadb-install-db + mariadbd):
a temporary directory and a free loopback port, never the shared servers. Like the rest of the
suite they run when ``TEST_POSTGRES_URL`` / ``TEST_MYSQL_URL`` is set; without it, or without the
server binaries (or pgbouncer), they are skipped with the reason; with ``REQUIRE_ALL_BACKENDS=1``
they fail instead. Tests on the shared servers use the suite's
``backend`` / ``engine`` fixtures from tests/conftest.py.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from pgserver import (
    PgBouncer,
    PrivateMariaDB,
    PrivatePostgres,
    PrivateStandby,
    missing_mariadb_reason,
    missing_tools_reason,
)

# Same switch as tests/conftest.py (not imported: both files are modules named "conftest").
REQUIRE_ALL = os.environ.get("REQUIRE_ALL_BACKENDS", "").strip() not in ("", "0", "false", "no")


def require_tools(*, need_pgbouncer: bool = False, mariadb: bool = False) -> None:
    """Skip (or fail under REQUIRE_ALL_BACKENDS=1) unless the backend is enabled like in the rest of
    the suite (TEST_POSTGRES_URL / TEST_MYSQL_URL set) and the server binaries are installed."""
    var = "TEST_MYSQL_URL" if mariadb else "TEST_POSTGRES_URL"
    reason: str | None = None
    if not os.environ.get(var):
        reason = (
            f"{'mysql' if mariadb else 'postgresql'} reliability tests skipped: set {var} to enable them "
            "(they also start a private server of their own, which needs the server binaries)"
        )
    else:
        reason = missing_mariadb_reason() if mariadb else missing_tools_reason(need_pgbouncer=need_pgbouncer)
    if reason:
        if REQUIRE_ALL:
            pytest.fail(f"REQUIRE_ALL_BACKENDS=1 but {reason}", pytrace=False)
        pytest.skip(reason)


def running(server: PrivatePostgres | PrivateMariaDB) -> Iterator[Any]:
    """Initialise and start ``server``; remove it (process and directory) afterwards."""
    try:
        server.init()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL shared by the tests that do not stop it (PgBouncer tests)."""
    require_tools()
    yield from running(PrivatePostgres())


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL for one test module, which may stop and restart it."""
    require_tools()
    yield from running(PrivatePostgres())


def replication_pair() -> Iterator[tuple[PrivatePostgres, PrivateStandby]]:
    """A private primary (``synchronous_commit = on``, the production default) and its streaming
    hot standby; both removed afterwards."""
    require_tools()
    primary = PrivatePostgres(settings={"synchronous_commit": "on"})
    standby = PrivateStandby(primary)
    try:
        primary.init()
        standby.init()
        yield primary, standby
    finally:
        try:
            standby.destroy()
        finally:
            primary.destroy()


@pytest.fixture(scope="module")
def replication() -> Iterator[tuple[PrivatePostgres, PrivateStandby]]:
    """A primary + streaming standby for one test module, which may pause replay or stop the standby."""
    yield from replication_pair()


@pytest.fixture
def fresh_replication() -> Iterator[tuple[PrivatePostgres, PrivateStandby]]:
    """A primary + streaming standby for one test, which may stop the primary or promote the standby."""
    yield from replication_pair()


@pytest.fixture(scope="module")
def small_pg() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL with max_connections = 12 and a non-superuser login role ``app`` (for
    which superuser_reserved_connections = 3 leaves 9), for one test module (test_sizing.py)."""
    require_tools()
    for server in running(PrivatePostgres(max_connections=12)):
        server.psql("CREATE ROLE app LOGIN")
        yield server


@pytest.fixture
def pgbouncer_installed() -> None:
    """Skip (or fail under REQUIRE_ALL_BACKENDS=1) without pgbouncer."""
    require_tools(need_pgbouncer=True)


@pytest.fixture(scope="module")
def own_mariadb() -> Iterator[PrivateMariaDB]:
    """A private MariaDB for one test module, which may stop and restart it."""
    require_tools(mariadb=True)
    yield from running(PrivateMariaDB())


@pytest.fixture
def bouncer_factory(private_pg: PrivatePostgres) -> Iterator[Callable[..., PgBouncer]]:
    """``bouncer_factory(pool_mode=..., default_pool_size=...)``: a started PgBouncer in front of
    ``private_pg``; all of them are stopped and removed after the test."""
    require_tools(need_pgbouncer=True)
    started: list[PgBouncer] = []

    def make(**settings: Any) -> PgBouncer:
        proxy = PgBouncer(private_pg, **settings)
        started.append(proxy)
        proxy.start()
        return proxy

    try:
        yield make
    finally:
        for proxy in started:
            proxy.destroy()


@pytest.fixture
def bouncer(bouncer_factory: Callable[..., PgBouncer]) -> PgBouncer:
    """A fresh PgBouncer per test (transaction mode, 2 server connections): no prepared statements
    left on its server connections by an earlier test."""
    return bouncer_factory(pool_mode="transaction", default_pool_size=2)

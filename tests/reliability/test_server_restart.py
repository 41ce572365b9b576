"""Server restart under load: examples/fastapi_app.py on a private PostgreSQL that is stopped
(``pg_ctl stop -m fast``) and started again while 8 clients keep sending requests.

Proven here:
- while the server is down every request is answered at once with 503 + ``Retry-After`` (never a
  500, never a hang), whichever way the failure surfaced (refused connect, terminated session);
- after ``pg_ctl start`` returns, the app answers again within 5 s (measured: the first request
  usually succeeds), then every request succeeds: ``pool_pre_ping`` replaced the dead pooled
  connections without the app doing anything;
- every write answered 201 before the restart is still there afterwards;
- without ``pool_pre_ping`` the pooled connections that died with the server fail their next
  statement: the counter-proof for the template's default.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections import Counter

import httpx
import pytest
from pgserver import PrivateMariaDB, PrivatePostgres
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from examples.fastapi_app import create_app
from templates.database import DatabaseSettings, create_db_engine
from templates.db_errors import is_database_unavailable
from templates.models import User

CLIENTS = 8
REQUEST_TIMEOUT = 10.0  # a request that takes longer counts as a hang
RECOVERY_LIMIT = 5.0


@pytest.fixture(scope="module")
def restart_pg(own_pg: PrivatePostgres) -> PrivatePostgres:
    return own_pg


SERVERS = [("postgresql", "asyncpg"), ("postgresql", "psycopg"), ("mariadb", "aiomysql")]


def server_for(request: pytest.FixtureRequest, kind: str) -> PrivatePostgres | PrivateMariaDB:
    """The module's private server of that kind (started on first use)."""
    return request.getfixturevalue("own_pg" if kind == "postgresql" else "own_mariadb")  # type: ignore[no-any-return]


class Load:
    """CLIENTS loops of POST /users + GET /users/{id}, each response recorded with the phase."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.phase = "before"
        self.results: list[tuple[str, str, int, str]] = []
        self.created: list[str] = []
        self.stop = asyncio.Event()
        self.run = uuid.uuid4().hex[:8]  # unique emails per run: the server keeps earlier runs' users

    async def request(self, method: str, path: str, **kw: object) -> httpx.Response | None:
        phase = self.phase
        try:
            response = await asyncio.wait_for(self.client.request(method, path, **kw), REQUEST_TIMEOUT)  # type: ignore[arg-type]
        except asyncio.TimeoutError:
            self.results.append((phase, method, -1, "hang"))
            return None
        except Exception as exc:  # an exception escaping the app = what a client sees as a 500
            self.results.append((phase, method, 500, f"{type(exc).__module__}.{type(exc).__name__}: {exc}"[:300]))
            return None
        detail = response.headers.get("retry-after", "") if response.status_code == 503 else ""
        self.results.append(
            (self.phase if self.phase == phase else f"{phase}>{self.phase}", method, response.status_code, detail)
        )
        return response

    async def client_loop(self, n: int) -> None:
        i = 0
        while not self.stop.is_set() and i < 2000:
            i += 1
            response = await self.request(
                "POST", "/users", json={"email": f"{self.run}-{n}-{i}@restart.test", "name": "R"}
            )
            if response is not None and response.status_code == 201:
                user_id = response.json()["id"]
                self.created.append(user_id)
                await self.request("GET", f"/users/{user_id}")
            await asyncio.sleep(0.02)

    def statuses(self, phase: str) -> Counter[int]:
        return Counter(status for p, _, status, _ in self.results if p == phase)


@pytest.mark.parametrize(("kind", "driver"), SERVERS)
async def test_app_recovers_within_5s_after_restart_under_load(
    request: pytest.FixtureRequest, kind: str, driver: str
) -> None:
    server = server_for(request, kind)
    app = create_app(DatabaseSettings(url=server.url(driver), pool_size=4, max_overflow=4, pool_timeout=5))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            load = Load(client)
            tasks = [asyncio.create_task(load.client_loop(n)) for n in range(CLIENTS)]
            try:
                deadline = time.monotonic() + 15  # bounded: every client has written once before the stop
                while load.statuses("before")[201] < CLIENTS and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                load.phase = "stopping"
                await asyncio.to_thread(server.stop)  # PostgreSQL: pg_ctl stop -m fast; MariaDB: SIGTERM
                load.phase = "down"
                await asyncio.sleep(1.0)
                load.phase = "starting"
                await asyncio.to_thread(server.start)
                back = time.monotonic()
                load.phase = "up"
                # Bounded poll: the first answer from the database after the server is back.
                recovered_after = None
                for _ in range(100):
                    response = await load.request("GET", "/users?limit=1")
                    if response is not None and response.status_code == 200:
                        recovered_after = time.monotonic() - back
                        break
                    if time.monotonic() - back > RECOVERY_LIMIT:
                        break
                    await asyncio.sleep(0.05)
                load.phase = "recovered"
                # Let every client complete a write after recovery (bounded: a loaded CI machine
                # may need more than a fixed half second).
                deadline = time.monotonic() + 15
                while load.statuses("recovered")[201] < CLIENTS and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
            finally:
                load.stop.set()
                await asyncio.gather(*tasks)

            before, down, recovered = load.statuses("before"), load.statuses("down"), load.statuses("recovered")
            print(
                f"\nbefore {dict(before)} down {dict(down)} up {dict(load.statuses('up'))} "
                f"recovered {dict(recovered)} recovered_after={recovered_after}"
            )
            failures = [r for r in load.results if r[2] in (500, -1)]
            assert not failures, sorted({(p, d) for p, _, _, d in failures})  # no 500, no hang, in any phase
            assert set(before) <= {200, 201} and before[201] >= CLIENTS, before
            assert down and set(down) == {503}, down  # every request while down: 503 ...
            assert all(d == "1" for p, _, s, d in load.results if s == 503), (
                "503 without Retry-After"
            )  # ... + Retry-After
            assert recovered_after is not None and recovered_after <= RECOVERY_LIMIT, recovered_after
            assert set(recovered) <= {200, 201} and recovered[201] >= CLIENTS, recovered  # all good again

            # Nothing acknowledged was lost.
            async with app.state.engine.connect() as conn:
                ids = [uuid.UUID(i) for i in load.created]
                stored = await conn.scalar(select(func.count()).select_from(User).where(User.id.in_(ids)))
            assert stored == len(ids), (stored, len(ids))


async def run_on_pooled_connections(engine, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Run SELECT 1 on n connections held at once (all n pooled ones); return the errors."""
    errors: list[str] = []
    conns = []
    try:
        for _ in range(n):
            conns.append(await engine.connect())
        for conn in conns:
            try:
                await conn.execute(text("SELECT 1"))
            except DBAPIError as exc:
                errors.append(f"{type(exc.orig).__name__}: {str(exc.orig).splitlines()[0]}")
    finally:
        for conn in conns:
            await conn.close()
    return errors


@pytest.mark.parametrize("pre_ping", [True, False])
@pytest.mark.parametrize(("kind", "driver"), [SERVERS[0], SERVERS[2]])
async def test_pool_pre_ping_replaces_connections_that_died_with_the_server(
    request: pytest.FixtureRequest, kind: str, driver: str, pre_ping: bool
) -> None:
    server = server_for(request, kind)
    engine = create_db_engine(
        DatabaseSettings(url=server.url(driver), pool_size=4, max_overflow=0), pool_pre_ping=pre_ping
    )
    try:
        assert await run_on_pooled_connections(engine, 4) == []  # 4 connections now pooled
        await asyncio.to_thread(server.stop)
        await asyncio.to_thread(server.start)
        errors = await run_on_pooled_connections(engine, 4)
        if pre_ping:
            assert errors == []
        else:
            # All 4 were checked out before the first failed: each dead one fails its statement.
            lost = (
                "connection is closed"
                if kind == "postgresql"
                else "(2013, 'Lost connection to MySQL server during query')"
            )
            assert len(errors) == 4 and all(lost in e for e in errors), errors
            print(f"\nwithout pre_ping: {len(errors)} of 4 failed: {errors[0]}")
            assert await run_on_pooled_connections(engine, 4) == []
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:{port}/x",
        "postgresql+psycopg://postgres@127.0.0.1:{port}/x",
        "mysql+aiomysql://root@127.0.0.1:{port}/x",
    ],
)
async def test_refused_connections_are_classified_unavailable_for_every_driver(url: str) -> None:
    from pgserver import free_port

    engine = create_db_engine(DatabaseSettings(url=url.format(port=free_port())))  # nothing listens there
    try:
        with pytest.raises(Exception) as caught:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert is_database_unavailable(caught.value), repr(caught.value)
    finally:
        await engine.dispose()


async def test_ordinary_database_errors_are_not_unavailable(restart_pg: PrivatePostgres) -> None:
    engine = create_db_engine(DatabaseSettings(url=restart_pg.url("asyncpg")))
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as syntax:
                await conn.execute(text("SELEC 1"))
        assert not is_database_unavailable(syntax.value)
    finally:
        await engine.dispose()


def test_private_mariadb_keeps_its_temp_files_to_itself(own_mariadb: PrivateMariaDB) -> None:
    """mariadbd deletes every '#sql*' file in its tmpdir at startup; sharing /tmp with the suite's
    shared server made that server's queries fail ("Error on delete of '/tmp/#sql-temptable-...'")
    whenever a private server started in a parallel test."""
    client = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
    out = subprocess.run(
        [client, "--no-defaults", "-h127.0.0.1", f"-P{own_mariadb.port}", "-uroot", "-N", "-e", "SELECT @@tmpdir"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert out == str(own_mariadb.dir / "tmp"), out

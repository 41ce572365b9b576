"""templates/conftest.py, used verbatim as a user's conftest, isolates every test on every backend.

A small user test suite (``USER_TESTS``) runs in a pytest subprocess against the sample app with
``TEST_DATABASE_URL`` = the backend's server. Its tests write through the API and through the
session and would collide (same email, row counts) if anything leaked from one test to the next.
Afterwards the scratch namespace the suite worked in must be gone.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "conftest.py"

USER_TESTS = """
import os
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from templates.models import User

EMAIL = "same-every-time@example.com"


async def users(session):
    return await session.scalar(select(func.count()).select_from(User))


@pytest.mark.parametrize("attempt", [1, 2, 3])
async def test_api_writes_are_rolled_back_between_tests(client, session, attempt):
    assert await users(session) == 0
    created = await client.post("/users", json={"email": EMAIL, "name": f"attempt {attempt}"})
    assert created.status_code == 201, created.text  # 409 would mean the previous attempt leaked
    # The endpoint's commit is visible to the test: same connection, same outer transaction.
    assert await session.scalar(select(User.name).where(User.email == EMAIL)) == f"attempt {attempt}"


async def test_endpoint_commit_does_not_escape_the_outer_transaction(client, engine):
    created = await client.post("/users", json={"email": "escape@example.com", "name": "x"})
    assert created.status_code == 201
    async with engine.connect() as other:  # a second connection sees only really committed rows
        assert await other.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("attempt", [1, 2])
async def test_session_commit_is_rolled_back_too(session, attempt):
    assert await users(session) == 0
    session.add(User(email=EMAIL, name="direct"))
    await session.commit()  # releases a SAVEPOINT only
    assert await users(session) == 1


async def test_conflict_rolls_back_only_the_request(client, session):
    assert (await client.post("/users", json={"email": EMAIL, "name": "a"})).status_code == 201
    dup = await client.post("/users", json={"email": EMAIL, "name": "b"})
    assert dup.status_code == 409
    # The failed request rolled back its savepoint; the test's transaction is still usable.
    assert (await client.post("/users", json={"email": "other@example.com", "name": "c"})).status_code == 201
    assert await users(session) == 2


async def test_rows_flushed_by_the_test_are_seen_by_the_api(client, session):
    user = User(email="seeded@example.com", name="seeded")
    session.add(user)
    await session.flush()
    fetched = await client.get(f"/users/{user.id}")
    assert fetched.status_code == 200 and fetched.json()["name"] == "seeded"


async def test_namespace_is_scratch(session):
    dialect = session.bind.dialect.name
    if dialect == "postgresql":
        where = await session.scalar(text("SELECT current_schema()"))
    elif dialect in ("mysql", "mariadb"):
        where = await session.scalar(text("SELECT DATABASE()"))
    else:
        where = session.bind.engine.url.database
    assert "scratch_" in where, where
    Path(os.environ["NAMESPACE_RECORD"]).write_text(f"{dialect}\\n{where}")


async def test_nothing_left_at_the_end(session):
    assert await users(session) == 0
"""


async def namespace_exists(server_url: str, dialect: str, name: str) -> bool:
    if dialect == "sqlite":
        return Path(name).exists()
    engine = create_async_engine(server_url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            # PostgreSQL lists schemas here, MySQL/MariaDB databases.
            sql = "SELECT count(*) FROM information_schema.schemata WHERE schema_name = :n"
            return bool((await conn.execute(text(sql), {"n": name})).scalar())
    finally:
        await engine.dispose()


def test_template_has_no_project_specific_code_beyond_its_import_block() -> None:
    """The copy-and-edit contract: project imports sit in one marked block at the top."""
    source = TEMPLATE.read_text()
    _, _, rest = source.partition("# --- Your project ---")
    block, _, body = rest.partition("# -------")
    assert "from app.main import app" in block and "from templates" in block
    assert "examples" not in source  # a template never imports an example
    assert "app.main" not in body and "templates." not in body


def make_user_app(pytester: pytest.Pytester) -> None:
    """The user's project: ``app/main.py`` holds their FastAPI app (here the example's)."""
    (pytester.path / "app").mkdir()
    (pytester.path / "app" / "main.py").write_text("from examples.fastapi_app import app\n")


def run_user_suite(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_url: str, backend: str, conftest: str
) -> pytest.RunResult:
    pytester.makeconftest(conftest)
    make_user_app(pytester)
    pytester.makepyfile(test_users=USER_TESTS)
    # A config whose defaults work against the template (function-scoped loops); the template's
    # explicit loop_scope and its collection hook must win. Warnings are errors.
    pytester.makeini(
        f"[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\npythonpath = {ROOT}\n"
        "filterwarnings =\n    error\n"
    )
    monkeypatch.setenv("NAMESPACE_RECORD", str(pytester.path / "namespace.txt"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    if backend == "sqlite":
        monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("TEST_DATABASE_URL", server_url)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=120)


def test_user_suite_is_isolated(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_url: str, backend: str
) -> None:
    result = run_user_suite(pytester, monkeypatch, server_url, backend, TEMPLATE.read_text())
    assert result.ret == 0, "\n".join(result.outlines[-60:] + result.errlines[-30:])
    result.assert_outcomes(passed=10)
    dialect, name = (pytester.path / "namespace.txt").read_text().splitlines()
    assert not asyncio.run(namespace_exists(server_url, dialect, name)), f"{name} was not dropped"


def test_without_create_savepoint_one_409_lets_later_writes_escape(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_url: str, backend: str
) -> None:
    """The same suite with the default join_transaction_mode: the failed request's rollback ends
    the test's outer transaction, the next request commits for real, and the row outlives the test."""
    template = TEMPLATE.read_text()
    assert template.count(', join_transaction_mode="create_savepoint"') == 1
    broken = template.replace(', join_transaction_mode="create_savepoint"', "")
    result = run_user_suite(pytester, monkeypatch, server_url, backend, broken)
    result.assert_outcomes(passed=8, failed=2)
    failed = {line.split(" ")[1] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == {
        "test_users.py::test_conflict_rolls_back_only_the_request",  # the first row vanished with the 409
        "test_users.py::test_nothing_left_at_the_end",  # the row written after the 409 leaked
    }, result.outlines[-20:]


LOOP_TESTS = """
from sqlalchemy import text


async def test_query_through_the_session(session):
    assert await session.scalar(text("SELECT 1")) == 1
"""


def test_without_the_loop_hook_server_drivers_hit_a_different_loop(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, server_url: str, backend: str
) -> None:
    """Tests on function-scoped loops using the session-loop engine: asyncpg and aiomysql fail with
    "attached to a different loop"; aiosqlite (a worker thread) passes, so SQLite hides the mistake."""
    template = TEMPLATE.read_text()
    start, end = template.index("def pytest_collection_modifyitems"), template.index("@pytest_asyncio.fixture(scope=")
    pytester.makeconftest(template[:start] + template[end:])
    make_user_app(pytester)
    pytester.makepyfile(test_loop=LOOP_TESTS)
    pytester.makeini(
        f"[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\npythonpath = {ROOT}\n"
    )
    monkeypatch.delenv("DATABASE_URL", raising=False)
    if backend == "sqlite":
        monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("TEST_DATABASE_URL", server_url)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=120)
    if backend == "sqlite":
        result.assert_outcomes(passed=1)
    else:
        result.assert_outcomes(failed=1)
        assert any("attached to a different loop" in line for line in result.outlines), result.outlines[-30:]


def test_sqlite_without_the_begin_hook_lets_commits_escape(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain aiosqlite engine (no configure_sqlite): the driver commits on its own, SAVEPOINTs do
    not nest in the outer transaction, and rows written by one test are seen by the next."""
    template = TEMPLATE.read_text()
    assert template.count("eng = create_db_engine(settings)") == 1
    plain = template.replace(
        "eng = create_db_engine(settings)",
        "from sqlalchemy.ext.asyncio import create_async_engine\n        eng = create_async_engine(settings.url)",
    )
    result = run_user_suite(pytester, monkeypatch, "sqlite+aiosqlite://", "sqlite", plain)
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) >= 3, result.outlines[-20:]
    assert any("FAILED test_users.py::test_nothing_left_at_the_end" in line for line in result.outlines)

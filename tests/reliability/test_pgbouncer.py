"""PgBouncer in transaction mode in front of a private PostgreSQL: which engine settings work.

Each test gets a fresh pgbouncer (2 server connections) so no prepared statement is left over from
another test. Proven here:
- the template defaults (asyncpg, statement caches on) fail as soon as a client's transactions
  land on different server connections: ``prepared statement "__asyncpg_stmt_N__" does not exist``
  (SQLSTATE 26000), and a second process fails on names the first left behind: ``prepared
  statement "__asyncpg_stmt_1__" already exists`` (42P05) with asyncpg's note about pgbouncer;
- unique statement names alone do not help (the cached statement is still on another connection);
- SQLAlchemy's recipe (both caches off, unique names, NullPool) works, also with an app-side
  pool, also from a second process, also under a burst of 16 concurrent sessions;
- psycopg with its default ``prepare_threshold`` fails (``"_pg3_0" does not exist``), with
  ``prepare_threshold=None`` it works;
- in session mode the naive settings work (the counter-check: the problem is transaction mode);
- PgBouncer rejects startup parameters it does not track: ``server_settings={"search_path": ...}``
  fails with ``unsupported startup parameter: search_path``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy
from bouncer_scenarios import burst, describe, engine_for, interleave
from pgserver import PgBouncer
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from templates.database import DatabaseSettings, create_db_engine

SCENARIOS = Path(__file__).resolve().parent / "bouncer_scenarios.py"


def url_for(bouncer: PgBouncer):  # type: ignore[no-untyped-def]
    return lambda driver: bouncer.url(driver)


async def interleave_error(bouncer: PgBouncer, variant: str) -> dict[str, str | None]:
    engine = engine_for(variant, url_for(bouncer))
    try:
        with pytest.raises(DBAPIError) as caught:
            await interleave(engine)
        return describe(caught.value)
    finally:
        await engine.dispose()


def run_process(bouncer: PgBouncer, variant: str) -> dict[str, object]:
    """One short-lived client process (asyncpg names its statements with a per-process counter)."""
    template = bouncer.url("DRIVER")
    proc = subprocess.run([sys.executable, str(SCENARIOS), template, variant], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def test_naive_asyncpg_fails_when_transactions_move_to_another_server_connection(bouncer: PgBouncer) -> None:
    err = await interleave_error(bouncer, "asyncpg-naive")
    assert err["sqlstate"] == "26000", err  # invalid_sql_statement_name
    assert 'prepared statement "__asyncpg_stmt_' in str(err["error"]) and "does not exist" in str(err["error"]), err


async def test_naive_asyncpg_second_process_collides_with_leftover_statement_names(bouncer: PgBouncer) -> None:
    first = run_process(bouncer, "asyncpg-naive")
    second = run_process(bouncer, "asyncpg-naive")
    assert first == {"ok": True}, first  # alone it works: nothing told you it would break later
    assert second["ok"] is False and second["sqlstate"] == "42P05", second  # duplicate_prepared_statement
    message = str(second["error"])
    assert 'prepared statement "__asyncpg_stmt_1__" already exists' in message, message
    assert "select pg_catalog.version()" in message, message  # the very first statement of the process
    assert 'pgbouncer with pool_mode set to "transaction"' in str(second["hint"]), second  # asyncpg's hint


async def test_unique_statement_names_alone_do_not_help(bouncer: PgBouncer) -> None:
    err = await interleave_error(bouncer, "asyncpg-unique-names-only")
    assert err["sqlstate"] == "26000", err
    assert 'prepared statement "__asyncpg_' in str(err["error"]) and "does not exist" in str(err["error"]), err


async def test_naive_psycopg_fails_once_it_starts_preparing(bouncer: PgBouncer) -> None:
    err = await interleave_error(bouncer, "psycopg-naive")
    assert err["sqlstate"] == "26000", err
    assert 'prepared statement "_pg3_0" does not exist' in str(err["error"]), err


@pytest.mark.parametrize(
    "variant", ["asyncpg-recipe", "asyncpg-recipe-queuepool", "asyncpg-cache-off-only", "psycopg-recipe"]
)
async def test_working_settings_survive_interleaving_and_a_burst(bouncer: PgBouncer, variant: str) -> None:
    engine = engine_for(variant, url_for(bouncer))
    try:
        assert await interleave(engine) == 36  # every row checked against its expected value
        stored, counted = await burst(engine, workers=16, each=3)
        assert (stored, counted) == (48, 48)  # 16 sessions through 2 server connections, nothing lost
    finally:
        await engine.dispose()


@pytest.mark.parametrize("variant", ["asyncpg-recipe", "psycopg-recipe"])
async def test_recipes_work_from_a_second_process_too(bouncer: PgBouncer, variant: str) -> None:
    assert run_process(bouncer, variant) == {"ok": True}
    assert run_process(bouncer, variant) == {"ok": True}


async def test_pgbouncer_rejects_untracked_startup_parameters(bouncer: PgBouncer) -> None:
    # templates.scratch sets search_path this way: it cannot be used through PgBouncer 1.18.
    # SQLAlchemy 2.1 wraps the connect-time error in DBAPIError; 2.0 lets asyncpg's
    # ProtocolViolationError through unwrapped.
    engine = create_db_engine(
        DatabaseSettings(url=bouncer.url("asyncpg"), null_pool=True, connect_args={"server_settings": {"search_path": "x"}})
    )
    try:
        with pytest.raises(Exception) as caught:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        assert "unsupported startup parameter: search_path" in str(caught.value)
        wrapped = isinstance(caught.value, DBAPIError)
        assert wrapped if sqlalchemy.__version__ >= "2.1" else type(caught.value).__name__ == "ProtocolViolationError"
    finally:
        await engine.dispose()


async def test_session_mode_keeps_the_naive_settings_working(bouncer_factory) -> None:  # type: ignore[no-untyped-def]
    """The counter-check: in session mode a client keeps its server connection, and PgBouncer runs
    DISCARD ALL before handing it to the next client, so prepared statements are safe."""
    proxy = bouncer_factory(pool_mode="session", default_pool_size=2)
    engine = engine_for("asyncpg-naive", url_for(proxy))
    try:
        assert await interleave(engine) == 36
    finally:
        await engine.dispose()
    assert run_process(proxy, "asyncpg-naive") == {"ok": True}
    assert run_process(proxy, "asyncpg-naive") == {"ok": True}

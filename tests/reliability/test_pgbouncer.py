"""PgBouncer in transaction mode in front of a private PostgreSQL: which engine settings work.

Each test gets a fresh pgbouncer (2 server connections) so no prepared statement is left over from
another test. Proven here:
- the template defaults (asyncpg, statement caches on) fail as soon as a client's transactions
  land on different server connections: ``prepared statement "__asyncpg_stmt_N__" does not exist``
  (SQLSTATE 26000), and a second process fails on names the first left behind: ``prepared
  statement "__asyncpg_stmt_1__" already exists`` (42P05) with asyncpg's note about pgbouncer;
- unique statement names alone do not help (the cached statement is still on another connection);
- the recipe (both caches off, ``prepared_statement_name_func`` returning ``""``: PostgreSQL's
  unnamed statement, re-sent with every execution) works with the template's pool, also with
  NullPool, also from a second process, also under a burst of 16 concurrent sessions; two worker
  processes running a mixed load (INSERT ... RETURNING, SELECT, UPDATE, executemany, COUNT,
  autocommit reads) leave no prepared statement on PgBouncer's server connections;
- the recipe this skill gave before (unique names + NullPool, SQLAlchemy's documented one) works
  but leaves a named statement behind on a server connection for each statement whose Close
  went to another one, and NullPool opens a PgBouncer client connection per checkout;
- psycopg with its default ``prepare_threshold`` fails (``"_pg3_0" does not exist``), with
  ``prepare_threshold=None`` it works;
- in session mode the naive settings work (the counter-check: the problem is transaction mode);
- PgBouncer rejects startup parameters it does not track: ``server_settings={"search_path": ...}``
  fails with ``unsupported startup parameter: search_path``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from bouncer_scenarios import (
    burst,
    create_load_table,
    describe,
    engine_for,
    interleave,
    leftover_statements,
    mixed_load,
)
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
    proc = subprocess.run(
        [sys.executable, str(SCENARIOS), template, variant],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
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


def asyncpg_at_least(version: str) -> bool:
    from importlib.metadata import version as installed

    return tuple(int(p) for p in installed("asyncpg").split(".")[:2]) >= tuple(int(p) for p in version.split("."))


@pytest.mark.parametrize(
    "variant",
    [
        "asyncpg-recipe",
        "asyncpg-recipe-nullpool",
        "asyncpg-unique-names-nullpool",
        "asyncpg-cache-off-only",
        "psycopg-recipe",
    ],
)
async def test_working_settings_survive_interleaving_and_a_burst(bouncer: PgBouncer, variant: str) -> None:
    if variant == "asyncpg-cache-off-only" and not asyncpg_at_least("0.30"):
        pytest.skip("asyncpg < 0.30 names its statements even with statement_cache_size=0 (fails, see the bench)")
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
        DatabaseSettings(
            url=bouncer.url("asyncpg"), null_pool=True, connect_args={"server_settings": {"search_path": "x"}}
        )
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


async def statements_left(bouncer: PgBouncer, variant: str) -> dict[int, int]:
    engine = engine_for(variant, url_for(bouncer))
    try:
        assert await interleave(engine) == 36
    finally:
        await engine.dispose()
    return await leftover_statements(bouncer.url(), 2)


async def test_unique_names_leave_prepared_statements_on_server_connections(bouncer: PgBouncer) -> None:
    """Each statement is prepared under a new name and closed later - by a Close message that goes
    to whichever server connection the client's next transaction gets. The ones that went to the
    other connection stay: nothing in transaction mode deallocates them."""
    left = await statements_left(bouncer, "asyncpg-unique-names-nullpool")
    print(f"\nunique names + NullPool, 36 statements in moving transactions: {left} named statements left")
    assert sum(left.values()) > 0, left


async def test_unnamed_statements_leave_nothing_behind(bouncer: PgBouncer) -> None:
    left = await statements_left(bouncer, "asyncpg-recipe")
    assert sum(left.values()) == 0, left


def run_load_process(bouncer: PgBouncer, variant: str, requests: int) -> dict[str, Any]:
    template = bouncer.url("DRIVER")
    proc = subprocess.run(
        [sys.executable, str(SCENARIOS), template, variant, "load", str(requests)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def test_two_worker_processes_mixed_load_with_the_recipe(bouncer: PgBouncer) -> None:
    await create_load_table(bouncer.server.url())
    first, second = await asyncio.gather(
        *(asyncio.to_thread(run_load_process, bouncer, "asyncpg-recipe", 150) for _ in range(2))
    )
    left = await leftover_statements(bouncer.url(), 2)
    print(f"\nrecipe, 2 workers x 150 mixed requests through PgBouncer: {first}, {second}; statements left {left}")
    for worker in (first, second):
        assert worker["startup"] == "ok" and (worker["ok"], worker["wrong"], worker["errors"]) == (150, 0, {}), worker
        assert worker["connects"] <= 15  # the template's pool: pool_size 5 + max_overflow 10 at most
    assert sum(left.values()) == 0, left


async def test_null_pool_opens_a_client_connection_per_request(bouncer: PgBouncer) -> None:
    await create_load_table(bouncer.server.url())
    connects = {}
    for variant in ("asyncpg-recipe", "asyncpg-recipe-nullpool"):
        engine = engine_for(variant, url_for(bouncer))
        try:
            stats = await mixed_load(engine, 60, concurrency=8)
        finally:
            await engine.dispose()
        assert (stats["ok"], stats["errors"]) == (60, {}), stats
        connects[variant] = stats["connects"]
    print(f"\nPgBouncer client connections opened for 60 requests, 8 in flight: {connects}")
    assert connects["asyncpg-recipe"] <= 8 and connects["asyncpg-recipe-nullpool"] >= 60

"""Engine settings for PostgreSQL behind PgBouncer (transaction mode) and the workloads that tell
working settings from broken ones. Imported by test_pgbouncer.py and run by it as a subprocess:

    python bouncer_scenarios.py URL VARIANT   -> one JSON line {"ok": ..., "sqlstate": ..., "error": ...}

In transaction mode PgBouncer hands each *transaction* to whichever server connection is free.
A prepared statement lives on one server connection, so a client that prepared a statement in one
transaction may not find it in the next ("does not exist"), and a name one client process used
may still exist on a server connection that another process gets ("already exists").
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import Column, Integer, MetaData, String, Table, event, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker


def naive_settings(url: str) -> DatabaseSettings:
    """The template defaults: app-side pool, asyncpg's and SQLAlchemy's statement caches on."""
    return DatabaseSettings(url=url)


def asyncpg_pgbouncer_settings(url: str, **pool: Any) -> DatabaseSettings:
    """asyncpg behind PgBouncer in transaction mode: unnamed statements only, app-side pool kept."""
    return DatabaseSettings(
        url=url,  # postgresql+asyncpg://user:pass@pgbouncer-host:6432/db
        **pool,  # pool_size / max_overflow: workers x (pool_size + max_overflow) <= max_client_conn
        connect_args={
            "statement_cache_size": 0,  # asyncpg: no statement cache; re-Parse unnamed statements
            "prepared_statement_cache_size": 0,  # SQLAlchemy's asyncpg adapter: no statement cache
            # "" = PostgreSQL's unnamed statement: asyncpg re-sends its Parse with every Bind/Execute,
            # so any server connection can run it, and the next Parse replaces it (nothing left behind)
            "prepared_statement_name_func": lambda: "",
        },
    )


def asyncpg_unique_names_nullpool(url: str) -> DatabaseSettings:
    """The recipe this skill used to give (SQLAlchemy's docs): unique names, both caches off,
    NullPool. Works, but every statement leaves a named prepared statement behind on whichever
    server connection its Close message misses, and NullPool opens a PgBouncer client connection
    per checkout."""
    return DatabaseSettings(
        url=url,
        null_pool=True,
        connect_args={
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        },
    )


def psycopg_pgbouncer_settings(url: str, **pool: Any) -> DatabaseSettings:
    """The psycopg 3 async driver behind PgBouncer: never prepare server-side."""
    return DatabaseSettings(
        url=url,  # postgresql+psycopg://user:pass@pgbouncer-host:6432/db
        **pool,
        connect_args={"prepare_threshold": None},  # default 5: prepares from the 5th execution on
    )


def asyncpg_cache_off_only(url: str) -> DatabaseSettings:
    """Only asyncpg's cache off, app-side pool kept (asyncpg then prepares unnamed statements)."""
    return DatabaseSettings(url=url, connect_args={"statement_cache_size": 0})


def asyncpg_unique_names_only(url: str) -> DatabaseSettings:
    """Unique names but both caches on: a cached statement is still missing on another server connection."""
    unique = {"prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__"}
    return DatabaseSettings(url=url, connect_args=unique)


def asyncpg_recipe_with_null_pool(url: str) -> DatabaseSettings:
    """The asyncpg recipe with NullPool: a PgBouncer client connection per checkout."""
    return replace(asyncpg_pgbouncer_settings(url), null_pool=True)


def asyncpg_unnamed_with_sqlalchemy_cache(url: str) -> DatabaseSettings:
    """Unnamed statements, but SQLAlchemy's statement cache on: a cached statement is re-bound
    in a later transaction, possibly on a server connection whose unnamed statement is another."""
    unnamed = {"statement_cache_size": 0, "prepared_statement_name_func": lambda: ""}
    return DatabaseSettings(url=url, connect_args=unnamed)


VARIANTS: dict[str, tuple[str, Callable[[str], DatabaseSettings]]] = {
    # name: (driver, settings factory)
    "asyncpg-naive": ("asyncpg", naive_settings),
    "asyncpg-recipe": ("asyncpg", asyncpg_pgbouncer_settings),
    "asyncpg-recipe-nullpool": ("asyncpg", asyncpg_recipe_with_null_pool),
    "asyncpg-unique-names-nullpool": ("asyncpg", asyncpg_unique_names_nullpool),
    "asyncpg-unnamed-sqlalchemy-cache": ("asyncpg", asyncpg_unnamed_with_sqlalchemy_cache),
    "asyncpg-cache-off-only": ("asyncpg", asyncpg_cache_off_only),
    "asyncpg-unique-names-only": ("asyncpg", asyncpg_unique_names_only),
    "psycopg-naive": ("psycopg", naive_settings),
    "psycopg-recipe": ("psycopg", psycopg_pgbouncer_settings),
}


def engine_for(variant: str, url_for: Callable[[str], str]) -> AsyncEngine:
    driver, factory = VARIANTS[variant]
    return create_db_engine(factory(url_for(driver)))


def describe(exc: BaseException) -> dict[str, str | None]:
    """SQLSTATE, message and server/driver hint of a database error, whichever driver raised it."""
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    # asyncpg's own exception is the adapter error's __cause__; its hint is not in str(exc) on 2.1.
    hint = getattr(getattr(orig, "__cause__", None), "hint", None)
    return {
        "type": type(exc).__name__,
        "sqlstate": sqlstate if isinstance(sqlstate, str) else None,
        "error": str(exc),
        "hint": hint if isinstance(hint, str) else None,
    }


# Three different statements with different parameters and result shapes: a statement executed
# on the wrong server connection (or an unnamed one re-bound) could not return the right row.
QUERIES = [
    (text("SELECT CAST(:x AS INTEGER) AS a"), lambda i: {"x": i}, lambda i: (i,)),
    (text("SELECT CAST(:s AS TEXT) AS b, 2 AS c"), lambda i: {"s": f"v{i}"}, lambda i: (f"v{i}", 2)),
    (text("SELECT CAST(:x AS INTEGER) + 1, CAST(:s AS TEXT)"), lambda i: {"x": i, "s": "z"}, lambda i: (i + 1, "z")),
]


async def interleave(engine: AsyncEngine, rounds: int = 12) -> int:
    """Two client connections A and B; B's open transaction takes the server connection A just
    released, so A's next transaction runs on another one. Returns the number of checked rows."""
    checked = 0
    async with engine.connect() as a, engine.connect() as b:
        for i in range(rounds):
            for conn in (a, b, a):
                stmt, params, expected = QUERIES[i % 3] if conn is a else QUERIES[(i + 1) % 3]
                row = tuple((await conn.execute(stmt, params(i))).one())
                if row != expected(i):
                    raise AssertionError(f"round {i}: got {row}, expected {expected(i)}")
                checked += 1
                if conn is a:
                    await a.commit()  # A's transaction ends: its server connection goes back
            await b.commit()
    return checked


async def simple(engine: AsyncEngine) -> None:
    """What any short-lived process does: a few statements, committed, then exit."""
    async with engine.connect() as conn:
        for i, (stmt, params, expected) in enumerate(QUERIES):
            if tuple((await conn.execute(stmt, params(i))).one()) != expected(i):
                raise AssertionError(f"statement {i} returned a wrong row")
            await conn.commit()


bouncer_items = Table(
    "rel_bouncer_items",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("worker", String(20), nullable=False),
)


async def burst(engine: AsyncEngine, workers: int = 16, each: int = 3) -> tuple[int, int]:
    """``workers`` concurrent sessions, each inserting ``each`` rows in its own transactions and
    reading its count back. Returns (rows stored for this burst, rows the workers counted)."""
    tag = uuid.uuid4().hex[:8]
    async with engine.begin() as conn:
        await conn.run_sync(bouncer_items.metadata.create_all)
    sessionmaker = create_sessionmaker(engine)

    async def worker(n: int) -> int:
        name = f"{tag}-{n}"
        for _ in range(each):
            async with sessionmaker() as session, session.begin():
                await session.execute(insert(bouncer_items).values(worker=name))
        async with sessionmaker() as session:
            counted = await session.scalar(select(func.count()).where(bouncer_items.c.worker == name))
        return int(counted or 0)

    counted = await asyncio.wait_for(asyncio.gather(*(worker(n) for n in range(workers))), 60)
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).where(bouncer_items.c.worker.like(f"{tag}-%")))
    return int(stored or 0), sum(counted)


async def run_simple(url_template: str, variant: str) -> dict[str, object]:
    engine = engine_for(variant, lambda driver: url_template.replace("DRIVER", driver))
    try:
        await simple(engine)
        return {"ok": True}
    except DBAPIError as exc:
        return {"ok": False, **describe(exc)}
    finally:
        await engine.dispose()


load_items = Table(
    "rel_bouncer_load",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("worker", String(40), nullable=False),
    Column("n", Integer, nullable=False),
)


REQUEST_TIMEOUT = 20.0  # a request stuck this long counts as an error (PgBouncer can wedge)


async def mixed_load(engine: AsyncEngine, requests: int, concurrency: int = 8) -> dict[str, Any]:
    """What a web worker does, ``requests`` times with ``concurrency`` in flight: each request is one
    transaction picked in turn from an INSERT ... RETURNING, a SELECT by id, an UPDATE + re-read,
    an executemany INSERT of 3 rows, a COUNT, and an autocommit read (outside a transaction).
    Every result is checked. Returns counts: ok, wrong, errors by message, client connections."""
    worker = f"{uuid.uuid4().hex[:8]}"
    connects = 0

    def count_connect(*args: Any) -> None:
        nonlocal connects
        connects += 1

    event.listen(engine.sync_engine, "connect", count_connect)
    sessions = create_sessionmaker(engine)
    ids: list[int] = []
    stats: dict[str, Any] = {"ok": 0, "wrong": 0, "errors": {}}

    async def one(i: int) -> None:
        kind = i % 6
        try:
            if kind == 5:
                async with engine.connect() as conn:
                    conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                    got = await conn.scalar(text("SELECT CAST(:x AS INTEGER) * 2"), {"x": i})
                    right = got == 2 * i
            else:
                async with sessions() as session, session.begin():
                    if kind == 0 or not ids:
                        new_id = await session.scalar(
                            insert(load_items).values(worker=worker, n=i).returning(load_items.c.id)
                        )
                        ids.append(int(new_id))
                        right = new_id is not None
                    elif kind == 1:
                        row_id = ids[i % len(ids)]
                        right = await session.scalar(select(load_items.c.id).where(load_items.c.id == row_id)) == row_id
                    elif kind == 2:
                        row_id = ids[i % len(ids)]
                        await session.execute(update(load_items).where(load_items.c.id == row_id).values(n=i))
                        right = await session.scalar(select(load_items.c.n).where(load_items.c.id == row_id)) == i
                    elif kind == 3:
                        await session.execute(insert(load_items), [{"worker": worker, "n": -k} for k in range(3)])
                        right = True
                    else:
                        got = await session.scalar(select(func.count()).where(load_items.c.worker == worker))
                        right = got is not None and got >= len(ids)
            stats["ok" if right else "wrong"] += 1
        except Exception as exc:
            key = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            key = re.sub(r"__asyncpg_[0-9a-f_x-]+__", "__asyncpg_<name>__", key)
            stats["errors"][key] = stats["errors"].get(key, 0) + 1

    started = time.perf_counter()
    queue = iter(range(requests))

    async def runner() -> None:
        for i in queue:
            try:
                await asyncio.wait_for(one(i), REQUEST_TIMEOUT)
            except asyncio.TimeoutError:
                key = f"no answer within {REQUEST_TIMEOUT:.0f} s"
                stats["errors"][key] = stats["errors"].get(key, 0) + 1

    await asyncio.wait_for(asyncio.gather(*(runner() for _ in range(concurrency))), 600)
    stats["seconds"] = round(time.perf_counter() - started, 3)
    stats["connects"] = connects
    return stats


async def run_load(url_template: str, variant: str, requests: int) -> dict[str, Any]:
    """A worker process: start-up (first query), then ``mixed_load``; one JSON line."""
    started = time.perf_counter()
    engine = engine_for(variant, lambda driver: url_template.replace("DRIVER", driver))
    result: dict[str, Any] = {"variant": variant, "asyncpg": asyncpg_version()}
    try:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            result["startup"] = "ok"
        except Exception as exc:
            result["startup"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            return result
        result["startup_seconds"] = round(time.perf_counter() - started, 3)
        result.update(await mixed_load(engine, requests))
        return result
    finally:
        await engine.dispose()


def asyncpg_version() -> str:
    from importlib.metadata import version

    return version("asyncpg")


async def create_load_table(url: str) -> None:
    engine = create_db_engine(DatabaseSettings(url=url, null_pool=True))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(load_items.metadata.create_all)
    finally:
        await engine.dispose()


async def leftover_statements(url: str, server_connections: int) -> dict[int, int]:
    """Named prepared statements on each PgBouncer server connection, seen through PgBouncer:
    ``server_connections`` client transactions held open at once each get a server connection
    of their own. Returns {server backend pid: statements in pg_prepared_statements}."""
    engine = create_db_engine(asyncpg_pgbouncer_settings(url, pool_size=server_connections, max_overflow=0))
    all_in = asyncio.Event()
    seen: dict[int, int] = {}
    looked = 0

    async def look() -> None:
        async with engine.connect() as conn:
            pid, count = (
                await conn.execute(text("SELECT pg_backend_pid(), (SELECT count(*) FROM pg_prepared_statements)"))
            ).one()
            seen[int(pid)] = int(count)
            nonlocal looked
            looked += 1
            if looked == server_connections:
                all_in.set()
            await asyncio.wait_for(all_in.wait(), 30)  # hold the server connection until all looked
            await conn.rollback()

    try:
        await asyncio.gather(*(look() for _ in range(server_connections)))
    finally:
        await engine.dispose()
    return seen


if __name__ == "__main__":
    # URL with the literal DRIVER in place of the driver name: postgresql+DRIVER://...
    if len(sys.argv) > 3 and sys.argv[3] == "load":
        print(json.dumps(asyncio.run(run_load(sys.argv[1], sys.argv[2], int(sys.argv[4])))))
    else:
        print(json.dumps(asyncio.run(run_simple(sys.argv[1], sys.argv[2]))))

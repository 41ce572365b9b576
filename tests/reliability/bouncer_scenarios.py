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
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker


def naive_settings(url: str) -> DatabaseSettings:
    """The template defaults: app-side pool, asyncpg's and SQLAlchemy's statement caches on."""
    return DatabaseSettings(url=url)


def asyncpg_pgbouncer_settings(url: str) -> DatabaseSettings:
    """asyncpg behind PgBouncer in transaction or statement mode (SQLAlchemy's documented recipe)."""
    return DatabaseSettings(
        url=url,  # postgresql+asyncpg://user:pass@pgbouncer-host:6432/db
        null_pool=True,  # PgBouncer is the pool; the app opens a client connection per checkout
        connect_args={
            "statement_cache_size": 0,  # asyncpg's own statement cache off
            "prepared_statement_cache_size": 0,  # SQLAlchemy's asyncpg statement cache off
            # unique names: a name left on a server connection by another process can't collide
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        },
    )


def psycopg_pgbouncer_settings(url: str) -> DatabaseSettings:
    """The psycopg 3 async driver behind PgBouncer: never prepare server-side."""
    return DatabaseSettings(
        url=url,  # postgresql+psycopg://user:pass@pgbouncer-host:6432/db
        null_pool=True,
        connect_args={"prepare_threshold": None},  # default 5: prepares from the 5th execution on
    )


def asyncpg_cache_off_only(url: str) -> DatabaseSettings:
    """Only asyncpg's cache off, app-side pool kept (asyncpg then prepares unnamed statements)."""
    return DatabaseSettings(url=url, connect_args={"statement_cache_size": 0})


def asyncpg_unique_names_only(url: str) -> DatabaseSettings:
    """Unique names but both caches on: a cached statement is still missing on another server connection."""
    return DatabaseSettings(url=url, connect_args={"prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__"})


def asyncpg_recipe_with_app_pool(url: str) -> DatabaseSettings:
    """The asyncpg recipe with the template's QueuePool instead of NullPool."""
    recipe = asyncpg_pgbouncer_settings(url)
    return DatabaseSettings(url=url, connect_args=recipe.connect_args)


VARIANTS: dict[str, tuple[str, Callable[[str], DatabaseSettings]]] = {
    # name: (driver, settings factory)
    "asyncpg-naive": ("asyncpg", naive_settings),
    "asyncpg-recipe": ("asyncpg", asyncpg_pgbouncer_settings),
    "asyncpg-recipe-queuepool": ("asyncpg", asyncpg_recipe_with_app_pool),
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
    return {"type": type(exc).__name__, "sqlstate": sqlstate if isinstance(sqlstate, str) else None,
            "error": str(exc), "hint": hint if isinstance(hint, str) else None}


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


if __name__ == "__main__":
    # URL with the literal DRIVER in place of the driver name: postgresql+DRIVER://...
    print(json.dumps(asyncio.run(run_simple(sys.argv[1], sys.argv[2]))))

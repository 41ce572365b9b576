# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: one statement that is slow on the server side (here: an explicit sleep).

PostgreSQL `pg_sleep`, MySQL/MariaDB `SLEEP`, and on SQLite a user-defined function registered on
each connection (the aiosqlite way: `create_function` on the DBAPI connection in a `connect`
listener). optimize-queries reports executions slower than `--slow-ms` (default 500 ms).
"""
# expect-runtime: slow_query
# expect-static:

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import event, text

from templates.scratch import scratch_engine

SECONDS = 0.6


def sleep_seconds(seconds: float) -> int:
    time.sleep(seconds)
    return 0


async def main() -> None:
    async with scratch_engine() as engine:
        dialect = engine.dialect.name
        if dialect == "sqlite":

            @event.listens_for(engine.sync_engine, "connect")
            def add_sleep(dbapi_connection: Any, record: Any) -> None:
                dbapi_connection.create_function("sleep", 1, sleep_seconds)

            sql = "SELECT sleep(:s)"
        elif dialect == "postgresql":
            sql = "SELECT 0 FROM pg_sleep(:s)"
        else:
            sql = "SELECT SLEEP(:s)"
        started = time.perf_counter()
        async with engine.connect() as conn:
            value = await conn.scalar(text(sql), {"s": SECONDS})  # runtime: slow_query
        took = time.perf_counter() - started
        if value not in (0, "0") or took < SECONDS:
            raise AssertionError((value, took))
    print("slow_query: ok")


if __name__ == "__main__":
    asyncio.run(main())

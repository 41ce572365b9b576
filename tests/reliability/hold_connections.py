"""One app worker at its peak, for test_sizing.py: a subprocess that opens as many connections as
its pool allows (``pool_size + max_overflow``) at once and holds them until told to let go.

    python hold_connections.py URL POOL_SIZE MAX_OVERFLOW [direct|bouncer]

Each connection runs one short transaction (``SELECT pg_sleep(0.05)``, committed) and then stays
checked out. Prints one JSON line {"opened": N, "failed": M, "errors": {...}} once every
connection either opened or failed, then waits for a line on stdin (at most 120 s) and exits.
``bouncer`` uses the PgBouncer settings of bouncer_scenarios.py (unnamed statements, app pool).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bouncer_scenarios import asyncpg_pgbouncer_settings
from sqlalchemy import text

from templates.database import DatabaseSettings, create_db_engine


async def main(url: str, pool_size: int, max_overflow: int, mode: str) -> None:
    pool = {"pool_size": pool_size, "max_overflow": max_overflow, "pool_timeout": 60.0}
    settings = asyncpg_pgbouncer_settings(url, **pool) if mode == "bouncer" else DatabaseSettings(url=url, **pool)
    engine = create_db_engine(settings)
    release = asyncio.Event()
    result: dict[str, Any] = {"opened": 0, "failed": 0, "errors": {}}

    async def hold() -> None:
        try:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT pg_sleep(0.05)"))
                await conn.commit()
                result["opened"] += 1
                await release.wait()
        except Exception as exc:
            result["failed"] += 1
            orig = getattr(exc, "orig", exc)
            key = f"{getattr(orig, 'sqlstate', None)} {str(orig).splitlines()[0][:120]}"
            result["errors"][key] = result["errors"].get(key, 0) + 1

    tasks = [asyncio.create_task(hold()) for _ in range(pool_size + max_overflow)]
    try:
        deadline = asyncio.get_running_loop().time() + 90
        while result["opened"] + result["failed"] < len(tasks) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        result["pending"] = len(tasks) - result["opened"] - result["failed"]  # still waiting: a bug
        print(json.dumps(result), flush=True)
        await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline), 120)
    finally:
        release.set()
        await asyncio.gather(*tasks)
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else "direct"))

"""Forked workers sharing an engine made before the fork (gunicorn ``--preload``), for test_sizing.py.

    python fork_workers.py URL MODE      MODE: close_false | close_true | none

The parent creates the engine and uses it (its pool keeps one open connection), then forks two
workers. Each worker first does MODE with the inherited engine (``await engine.dispose(close=False)``,
``await engine.dispose()``, or nothing) and then runs 5 queries in its own event loop. Prints one
JSON line: each worker's outcome, whether the parent's server connection is still alive afterwards,
and whether the workers logged "Exception closing/terminating connection".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from templates.database import DatabaseSettings, create_db_engine

BACKEND_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
ALIVE = {
    "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE pid = :id",
    "mysql": "SELECT count(*) FROM information_schema.processlist WHERE id = :id",
}


def main(url: str, mode: str) -> dict[str, Any]:
    engine = create_db_engine(DatabaseSettings(url=url))
    backend = engine.dialect.name

    async def backend_id() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(text(BACKEND_ID[backend])))

    async def worker() -> list[int]:
        if mode == "close_false":
            await engine.dispose(close=False)  # forget the parent's connections, don't close them
        elif mode == "close_true":
            await engine.dispose()  # closes the pooled connections: the parent's
        return [await backend_id() for _ in range(5)]

    parent_id = asyncio.run(backend_id())  # the pool keeps this connection open
    log = Path(tempfile.mkstemp(prefix="asp-fork-")[1])
    children: list[tuple[int, int]] = []
    for _ in range(2):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # a worker: stderr to the log, its outcome as JSON through the pipe
            os.close(read_end)
            os.dup2(os.open(log, os.O_WRONLY | os.O_APPEND), 2)
            try:
                outcome: dict[str, Any] = {"ok": True, "ids": asyncio.run(worker())}
            except BaseException as exc:
                outcome = {"ok": False, "error": f"{type(exc).__name__}: ...{str(exc)[-160:]}"}
            os.write(write_end, json.dumps(outcome).encode())
            os._exit(0 if outcome["ok"] else 1)
        os.close(write_end)
        children.append((pid, read_end))
    workers = []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as pipe:
            workers.append(json.loads(pipe.read() or b'{"ok": false, "error": "no outcome"}'))
        os.waitpid(pid, 0)

    async def parent_alive() -> bool:  # asked from a fresh connection
        probe = create_async_engine(url, poolclass=NullPool)
        try:
            async with probe.connect() as conn:
                return bool(await conn.scalar(text(ALIVE[backend]), {"id": parent_id}))
        finally:
            await probe.dispose()

    alive = asyncio.run(parent_alive())
    logged = log.read_text(errors="replace")
    log.unlink()
    return {
        "workers": workers,
        "parent_connection_alive": alive,
        "close_errors_logged": "Exception closing connection" in logged or "Exception terminating" in logged,
    }


if __name__ == "__main__":
    outcome = main(sys.argv[1], sys.argv[2])
    print(json.dumps(outcome), flush=True)
    os._exit(0)  # the parent's pool holds a connection of a closed loop: skip its finalizer noise

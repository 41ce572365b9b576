"""A scratch database next to the user's, for generate-migration --roundtrip (importable; no CLI).

``scratch_database(url)`` yields the URL of a new, empty database (a temp file for SQLite) and drops
it afterwards; nothing in the user's own database is read or changed.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def scratch_database(url: Any) -> Iterator[Any]:
    """A new, empty database next to ``url``'s (a temp file for SQLite); dropped afterwards.

    Needs CREATEDB on PostgreSQL, CREATE/DROP on MySQL/MariaDB. ``url``'s own database is only
    used to connect; nothing in it is read or changed.
    """
    backend = url.get_backend_name()
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="alembic-roundtrip-") as tmp:
            yield url.set(database=str(Path(tmp) / "roundtrip.db"))
        return
    if backend not in ("postgresql", "mysql", "mariadb"):
        raise RuntimeError(f"roundtrip supports postgresql, mysql, mariadb and sqlite, not {backend}")
    name = f"alembic_roundtrip_{secrets.token_hex(4)}"
    quote = '"' if backend == "postgresql" else "`"
    asyncio.run(admin_execute(url, f"CREATE DATABASE {quote}{name}{quote}"))
    try:
        yield url.set(database=name)
    finally:
        drop = f"DROP DATABASE IF EXISTS {quote}{name}{quote}"
        asyncio.run(admin_execute(url, drop + (" WITH (FORCE)" if backend == "postgresql" else ""), fallback=drop))


async def admin_execute(url: Any, sql: str, fallback: str | None = None) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            try:
                await conn.execute(text(sql))
            except DBAPIError:
                if fallback is None:
                    raise
                await conn.execute(text(fallback))  # PostgreSQL < 13 has no WITH (FORCE)
    finally:
        await engine.dispose()

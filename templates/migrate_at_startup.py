"""Run Alembic's ``upgrade head`` when the app starts, safely from several worker processes.

Copy next to ``database.py``. With ``uvicorn --workers 4`` (or gunicorn) every worker runs
its lifespan, so every worker would migrate at once: two ``CREATE TABLE``s of the same table, two
rows in ``alembic_version``, a crashed worker. ``migrate_at_startup(engine, config)`` serialises
them with a lock held by the database server for the whole upgrade:

- PostgreSQL: ``pg_advisory_lock(key)``, a session-level advisory lock (per database; released by
  ``pg_advisory_unlock`` or when the connection ends, so a crashed worker cannot leave it behind);
  waiting is bounded by ``lock_timeout``;
- MySQL / MariaDB: ``GET_LOCK(name, timeout)`` (server-wide, so the name includes the database;
  released by ``RELEASE_LOCK`` or when the connection ends). MySQL/MariaDB DDL commits
  implicitly, so a transaction-scoped lock would not do;
- SQLite: no lock (one file, usually one process; SQLite's own write lock makes a second
  migrating process fail rather than corrupt).

The first worker takes the lock and upgrades; the others wait, then find the schema at head and
upgrade nothing. The returned ``MigrationRun`` says which case a worker was.

Use a plain engine for migrations (``create_async_engine(url, poolclass=NullPool)``): on SQLite the
app's engine turns foreign keys on, which env.py refuses. The Alembic ``env.py`` must use a
connection handed in through ``config.attributes["connection"]`` (the one setup-alembic writes does).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine


@dataclass(frozen=True)
class MigrationRun:
    before: str | None  # revision found after the lock was taken (None: empty database)
    after: str | None  # revision when done
    waited: float  # seconds spent waiting for the lock (another process was migrating)

    @property
    def migrated(self) -> bool:
        """True for the process that did the upgrade; False for those that found it done."""
        return self.before != self.after


class MigrationLockTimeout(RuntimeError):
    """Another process held the migration lock for longer than ``lock_timeout``."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` derived from ``name``."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection, config: Config, revision: str) -> None:
    """Runs inside ``AsyncConnection.run_sync``: env.py uses this connection, starts no event loop."""
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def acquire(conn: AsyncConnection, name: str, timeout: float) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        await conn.execute(text("SELECT set_config('lock_timeout', :ms, true)"), {"ms": f"{int(timeout * 1000)}ms"})
        try:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
        except Exception as exc:
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03":  # lock_not_available
                raise MigrationLockTimeout(f"migration lock {name!r} not free after {timeout}s") from exc
            raise
        await conn.commit()  # ends the transaction (and the local lock_timeout); the lock stays
    elif dialect in ("mysql", "mariadb"):
        got = await conn.scalar(text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": math.ceil(timeout)})
        await conn.commit()
        if got != 1:  # 0: timed out; NULL: error
            raise MigrationLockTimeout(f"migration lock {name!r} not free after {timeout}s (GET_LOCK returned {got})")


async def release(conn: AsyncConnection, name: str) -> None:
    await conn.rollback()  # whatever a failed upgrade left open
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
    elif conn.dialect.name in ("mysql", "mariadb"):
        await conn.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    await conn.commit()


async def migrate_at_startup(
    engine: AsyncEngine,
    config: Config,
    *,
    revision: str = "head",
    lock_name: str = "alembic-upgrade",
    lock_timeout: float = 300.0,
) -> MigrationRun:
    """Upgrade to ``revision`` under a database lock; safe to call from every worker at start-up.

    ``lock_timeout`` bounds the wait for another worker's migration (``MigrationLockTimeout``);
    make it longer than your slowest migration.
    """
    async with engine.connect() as conn:
        name = f"{lock_name}:{conn.engine.url.database or ''}"[:64]  # MySQL: 64 characters at most
        started = time.monotonic()
        await acquire(conn, name, lock_timeout)
        waited = time.monotonic() - started
        try:
            before = await conn.run_sync(current_revision)
            await conn.rollback()
            await conn.run_sync(upgrade, config, revision)  # PostgreSQL: all-or-nothing (transactional DDL)
            await conn.commit()
            after = await conn.run_sync(current_revision)
        except BaseException:
            with contextlib.suppress(Exception):  # the lock also ends with the connection
                await release(conn, name)
            raise
        await release(conn, name)
    return MigrationRun(before=before, after=after, waited=waited)

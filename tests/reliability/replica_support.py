"""Shared plumbing for the tests on a real streaming pair (test_read_replica.py, test_replication.py).

- ``routed_pair(primary, standby)``: engines on the private primary and its hot standby (the
  replica engine read-only and checked with ``require_standby``), a ``ReplicaHealth`` and the
  routing sessionmaker from ``templates/read_replica.py``; the example's tables exist on both.
- ``caught_up(pair)``: wait (bounded) until the standby replayed everything the primary wrote.
- ``replay_paused(standby)``: ``pg_wal_replay_pause()`` for the block, so the standby lags
  deterministically (WAL still arrives; it is not applied), then ``pg_wal_replay_resume()``.
- ``Routes``: the statements each engine received in a block (BEGIN not counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from examples.user_model import Post, User
from pgserver import PrivatePostgres, PrivateStandby
from templates.base_model import Base
from templates.query_counter import count_queries
from templates.read_replica import (
    ReplicaHealth,
    create_routing_sessionmaker,
    make_read_only,
    require_standby,
    wait_for_replay,
)
from templates.session_manager import DatabaseSettings, create_engine

TABLES = [User.__table__, Post.__table__]


@dataclass
class Pair:
    primary_server: PrivatePostgres
    standby_server: PrivateStandby
    primary: AsyncEngine
    replica: AsyncEngine
    replica_admin: AsyncEngine  # for waiting on replay outside the counted engines
    health: ReplicaHealth
    sessions: async_sessionmaker[AsyncSession]


async def primary_lsn(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        return str(await conn.scalar(text("SELECT pg_current_wal_insert_lsn()::text")))


async def caught_up(pair: Pair, timeout: float = 60.0) -> None:
    lsn = await primary_lsn(pair.primary)
    assert await wait_for_replay(pair.replica_admin, lsn, timeout), f"standby did not replay {lsn} in {timeout}s"


@asynccontextmanager
async def routed_pair(primary: PrivatePostgres, standby: PrivateStandby, *, retry_after: float = 0.5,
                      **engine_options: object) -> AsyncIterator[Pair]:
    primary_engine = create_engine(DatabaseSettings(url=primary.url()))
    replica = create_engine(DatabaseSettings(url=standby.url()), **engine_options)
    health = ReplicaHealth(retry_after=retry_after)
    make_read_only(replica)
    require_standby(replica, health)
    admin = create_async_engine(standby.url(), poolclass=NullPool)
    pair = Pair(primary, standby, primary_engine, replica, admin, health,
                create_routing_sessionmaker(primary_engine, replica, health=health))
    try:
        async with primary_engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all, tables=TABLES)
        await caught_up(pair)
        yield pair
    finally:
        for engine in (primary_engine, replica, admin):
            await engine.dispose()


@asynccontextmanager
async def replay_paused(standby: PrivateStandby) -> AsyncIterator[None]:
    await asyncio.to_thread(standby.psql, "SELECT pg_wal_replay_pause()")
    await asyncio.to_thread(standby.wait_for, "SELECT pg_get_wal_replay_pause_state()", "paused", 30)
    try:
        yield
    finally:
        await asyncio.to_thread(standby.psql, "SELECT pg_wal_replay_resume()")


class Routes:
    """Statements each engine of ``pair`` received while the block ran (BEGIN left out)."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair

    def __enter__(self) -> Routes:
        self.p = count_queries(self.pair.primary)
        self.r = count_queries(self.pair.replica)
        self.p_log, self.r_log = self.p.__enter__(), self.r.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.r.__exit__(*exc)
        self.p.__exit__(*exc)

    @property
    def primary(self) -> list[str]:
        return [s for s in self.p_log.statements if not s.upper().startswith("BEGIN")]

    @property
    def replica(self) -> list[str]:
        return [s for s in self.r_log.statements if not s.upper().startswith("BEGIN")]

    def counts(self) -> tuple[int, int]:
        return len(self.primary), len(self.replica)

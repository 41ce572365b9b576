"""Shared plumbing for the tests on a real streaming pair (test_read_replica.py, test_replication.py).

- ``routed_pair(primary, standby)``: engines on the private primary and its hot standby (the
  replica engine read-only and checked with ``require_standby``), a ``ReplicaHealth`` and the
  routing sessionmaker from ``templates/read_replica.py``; the example's tables exist on both.
- ``caught_up(pair)``: wait (bounded) until the standby replayed everything the primary wrote.
- ``replay_paused(standby)``: ``pg_wal_replay_pause()`` for the block, so the standby lags
  deterministically (WAL still arrives; it is not applied), then ``pg_wal_replay_resume()``.
- ``Routes``: the statements each engine received in a block (BEGIN not counted).
- ``read_after_write_load(pair, ...)``: writes under load, each read back at once naively and
  through ``prepare_reads``; returns the miss counts and waits (test_replication.py, the bench).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from pgserver import PrivatePostgres, PrivateStandby
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from templates.base_model import Base
from templates.database import DatabaseSettings, create_db_engine
from templates.models import Post, User
from templates.query_counter import count_queries
from templates.read_replica import (
    ReplicaHealth,
    create_routing_sessionmaker,
    make_read_only,
    require_standby,
    wait_for_replay,
)

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
async def routed_pair(
    primary: PrivatePostgres, standby: PrivateStandby, *, retry_after: float = 0.5, **engine_options: object
) -> AsyncIterator[Pair]:
    primary_engine = create_db_engine(DatabaseSettings(url=primary.url()))
    replica = create_db_engine(DatabaseSettings(url=standby.url()), **engine_options)
    health = ReplicaHealth(retry_after=retry_after)
    make_read_only(replica)
    require_standby(replica, health)
    admin = create_async_engine(standby.url(), poolclass=NullPool)
    pair = Pair(
        primary,
        standby,
        primary_engine,
        replica,
        admin,
        health,
        create_routing_sessionmaker(primary_engine, replica, health=health),
    )
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


# --- read-after-write under load -------------------------------------------------------------


@dataclass
class LoadReport:
    """What reads straight after a write saw on a real standby (one write + reads per ``rounds``)."""

    rounds: int = 0
    naive_misses: int = 0  # a plain replica read right after the commit did not find the row
    fixed_misses: int = 0  # after prepare_reads(mark): must stay 0
    on_replica: int = 0  # prepare_reads let the read go to the replica (it had replayed the write)
    on_primary: int = 0  # prepare_reads pinned the read to the primary (replay not seen in time)
    naive_ms: list[float] = field(default_factory=list)  # time the naive read took (checkout included)
    waits_ms: list[float] = field(default_factory=list)  # time prepare_reads took (checkouts included)
    replay_lag_ms: list[float] = field(default_factory=list)  # pg_stat_replication.replay_lag samples
    background_rows: int = 0  # rows the background writers inserted meanwhile

    def summary(self) -> str:
        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

        lag = self.replay_lag_ms
        return (
            f"{self.rounds} writes; naive replica read right after commit missed {self.naive_misses} "
            f"({100 * self.naive_misses / max(self.rounds, 1):.1f}%); prepare_reads: {self.on_replica} read the "
            f"replica, {self.on_primary} the primary, {self.fixed_misses} missed, took median "
            f"{pct(self.waits_ms, 0.5):.1f} ms, p95 {pct(self.waits_ms, 0.95):.1f} ms (a naive read: median "
            f"{pct(self.naive_ms, 0.5):.1f} ms); server replay_lag "
            f"median {pct(lag, 0.5):.1f} ms, max {pct(lag, 1.0):.1f} ms ({len(lag)} samples); "
            f"{self.background_rows} background rows"
        )


async def read_after_write_load(
    pair: Pair, *, writers: int, each: int, background: int = 2, replay_timeout: float = 1.0
) -> LoadReport:
    """``writers`` tasks each write a user ``each`` times and read it back at once: first naively
    (a new session, plain routing), then through ``prepare_reads(mark)``. ``background`` tasks
    insert 50-row batches meanwhile, so WAL keeps flowing."""
    import time

    from templates.read_replica import mark_write, prepare_reads

    report = LoadReport()
    stop = asyncio.Event()

    async def background_writer() -> None:
        while not stop.is_set():
            async with pair.primary.begin() as conn:
                await conn.execute(
                    User.__table__.insert(),
                    [{"id": uuid.uuid4(), "email": f"{uuid.uuid4().hex}@bg.test", "name": "bg"} for _ in range(50)],
                )
            report.background_rows += 50

    async def lag_sampler() -> None:
        async with pair.primary.connect() as conn:
            while not stop.is_set():
                lag = await conn.scalar(
                    text("SELECT extract(epoch FROM replay_lag) * 1000 FROM pg_stat_replication LIMIT 1")
                )
                await conn.rollback()
                if lag is not None:
                    report.replay_lag_ms.append(float(lag))
                await asyncio.sleep(0.02)

    async def writer() -> None:
        for _ in range(each):
            async with pair.sessions() as session, session.begin():
                user = User(email=f"{uuid.uuid4().hex}@load.test", name="L")
                session.add(user)
            async with pair.sessions() as session:  # straight after the commit
                started = time.perf_counter()
                if await session.get(User, user.id) is None:
                    report.naive_misses += 1
                report.naive_ms.append((time.perf_counter() - started) * 1000)
            async with pair.sessions() as session:
                mark = await mark_write(session)  # after the commit (the naive read went first)
            async with pair.sessions() as session:
                started = time.perf_counter()
                where = await prepare_reads(session, mark, replay_timeout=replay_timeout)
                report.waits_ms.append((time.perf_counter() - started) * 1000)
                if await session.get(User, user.id) is None:
                    report.fixed_misses += 1
            report.rounds += 1
            if where == "replica":
                report.on_replica += 1
            else:
                report.on_primary += 1

    noise = [asyncio.create_task(background_writer()) for _ in range(background)]
    noise.append(asyncio.create_task(lag_sampler()))
    try:
        await asyncio.gather(*(writer() for _ in range(writers)))
    finally:
        stop.set()
        await asyncio.gather(*noise)
    return report

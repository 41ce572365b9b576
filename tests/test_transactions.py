"""Savepoints, the retry helper and row locks on every backend; the SQLite SAVEPOINT hook.

Conflicts are real: concurrent SERIALIZABLE read-modify-write and opposite-order row locks are
provoked on PostgreSQL (asyncpg and psycopg) and MariaDB, and the final balances are checked.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from examples.transactions import (
    Rendezvous,
    TxAccount,
    TxJob,
    claim_job,
    concurrent_deposits,
    crossed_transfers,
    import_accounts,
    transfer,
    two_workers,
)
from templates.base_model import Base
from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker
from templates.db_errors import db_error_codes, is_retryable
from templates.query_counter import count_queries
from templates.retry import run_in_transaction
from templates.scratch import scratch_engine

Sessionmaker = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessionmaker(engine: AsyncEngine) -> AsyncIterator[Sessionmaker]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)  # checkfirst: other modules share the namespace
    yield create_sessionmaker(engine)


def tag() -> str:
    return uuid.uuid4().hex[:8]


async def make_accounts(sessionmaker: Sessionmaker, *balances: int) -> list[int]:
    prefix = tag()
    accounts = [TxAccount(name=f"{prefix}-{i}", balance=b) for i, b in enumerate(balances)]
    async with sessionmaker() as session, session.begin():
        session.add_all(accounts)
    return [a.id for a in accounts]


async def balances(sessionmaker: Sessionmaker, ids: list[int]) -> list[int]:
    async with sessionmaker() as session:
        stmt = select(TxAccount.id, TxAccount.balance).where(TxAccount.id.in_(ids))
        rows = dict((await session.execute(stmt)).all())
    return [rows[i] for i in ids]


# SQLite has one writer at a time: no serialization failures, deadlocks or row locks. Tests of
# those run on the server backends only (the sqlite parameter is deselected, not skipped).
needs_server = pytest.mark.only_backends("postgresql", "mysql")


# --- savepoints ---------------------------------------------------------------------------


async def test_savepoint_skips_duplicate_and_keeps_the_rest(sessionmaker: Sessionmaker) -> None:
    p = tag()
    async with sessionmaker() as session, session.begin():
        skipped = await import_accounts(session, [(f"{p}a", 1), (f"{p}b", 2), (f"{p}a", 3), (f"{p}c", 4)])
    assert skipped == [f"{p}a"]
    async with sessionmaker() as session:
        stmt = select(TxAccount.name, TxAccount.balance).where(TxAccount.name.like(f"{p}%")).order_by(TxAccount.name)
        rows = [tuple(row) for row in await session.execute(stmt)]
    assert rows == [(f"{p}a", 1), (f"{p}b", 2), (f"{p}c", 4)]  # the duplicate's balance 3 is nowhere


async def test_outer_rollback_undoes_released_savepoints(sessionmaker: Sessionmaker) -> None:
    p = tag()
    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            await import_accounts(session, [(f"{p}a", 1), (f"{p}b", 2)])
            raise RuntimeError("abort the batch")
    async with sessionmaker() as session:
        assert (await session.scalars(select(TxAccount).where(TxAccount.name.like(f"{p}%")))).all() == []


async def test_savepoint_rollback_keeps_earlier_work(sessionmaker: Sessionmaker) -> None:
    p = tag()
    async with sessionmaker() as session, session.begin():
        session.add(TxAccount(name=f"{p}kept", balance=1))
        await session.flush()
        nested = await session.begin_nested()
        session.add(TxAccount(name=f"{p}undone", balance=2))
        await session.flush()
        await nested.rollback()
        session.add(TxAccount(name=f"{p}after", balance=3))
    async with sessionmaker() as session:
        stmt = select(TxAccount.name).where(TxAccount.name.like(f"{p}%")).order_by(TxAccount.name)
        names = (await session.scalars(stmt)).all()
    assert names == [f"{p}after", f"{p}kept"]


# --- SQLite: why templates.database.configure_sqlite emits BEGIN ----------------------


class SpBase(DeclarativeBase):
    pass


class SpItem(SpBase):
    __tablename__ = "sp_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(unique=True)


async def savepoint_then_abort(engine: AsyncEngine) -> tuple[list[str], list[str]]:
    """begin(); SAVEPOINT; insert x; RELEASE; insert y; raise -> (rows left, SQL sent)."""
    async with engine.begin() as conn:
        await conn.run_sync(SpBase.metadata.create_all)
    sent: list[str] = []
    event.listen(engine.sync_engine, "before_cursor_execute", lambda c, cur, stmt, *a: sent.append(stmt.split(" (")[0]))
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    with pytest.raises(RuntimeError):
        async with sessionmaker() as session, session.begin():
            async with session.begin_nested():
                session.add(SpItem(name="x"))
            session.add(SpItem(name="y"))
            await session.flush()
            raise RuntimeError("abort the outer transaction")
    async with sessionmaker() as session:
        left = list(await session.scalars(select(SpItem.name).order_by(SpItem.name)))
    await engine.dispose()
    return left, sent


async def test_plain_aiosqlite_commits_a_released_savepoint(tmp_path: Path) -> None:
    """Without the hook the driver sends no BEGIN before the first SAVEPOINT, so SQLite treats the
    SAVEPOINT as the outermost transaction and its RELEASE as COMMIT: the outer rollback cannot
    undo row "x". (Seen on SQLAlchemy 2.0 and 2.1 with Python's sqlite3 legacy transaction mode.)"""
    left, sent = await savepoint_then_abort(create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}"))
    assert left == ["x"]
    assert "BEGIN" not in sent and sent[:2] == ["SAVEPOINT sa_savepoint_1", "INSERT INTO sp_items"]


async def test_template_engine_rolls_back_savepoint_work_with_the_outer_transaction(tmp_path: Path) -> None:
    engine = create_db_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'hooked.db'}"))
    left, sent = await savepoint_then_abort(engine)
    assert left == []
    assert sent[:2] == ["BEGIN", "SAVEPOINT sa_savepoint_1"]


async def test_plain_aiosqlite_savepoint_after_a_write_happens_to_work(tmp_path: Path) -> None:
    """The defect needs the SAVEPOINT to come first: after an INSERT the driver has opened a
    transaction itself and ROLLBACK TO SAVEPOINT behaves. Use the hook anyway."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain2.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(SpBase.metadata.create_all)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    async with sessionmaker() as session, session.begin():
        session.add(SpItem(name="a"))
        await session.flush()
        nested = await session.begin_nested()
        session.add(SpItem(name="b"))
        await session.flush()
        await nested.rollback()
    async with sessionmaker() as session:
        assert list(await session.scalars(select(SpItem.name))) == ["a"]
    await engine.dispose()


# --- the retry helper ----------------------------------------------------------------------


async def test_helper_runs_once_and_returns_result(sessionmaker: Sessionmaker) -> None:
    [account] = await make_accounts(sessionmaker, 100)
    calls = 0

    async def deposit(session: AsyncSession) -> int:
        nonlocal calls
        calls += 1
        acc = await session.get(TxAccount, account)
        assert acc is not None
        acc.balance += 5
        return acc.balance

    assert await run_in_transaction(sessionmaker, deposit) == 105
    assert calls == 1 and await balances(sessionmaker, [account]) == [105]


async def test_helper_raises_other_errors_at_once_and_rolls_back(sessionmaker: Sessionmaker) -> None:
    [account] = await make_accounts(sessionmaker, 100)
    async with sessionmaker() as session:
        taken = (await session.get(TxAccount, account)).name  # type: ignore[union-attr]
    calls = 0

    async def bad(session: AsyncSession) -> None:
        nonlocal calls
        calls += 1
        acc = await session.get(TxAccount, account)
        assert acc is not None
        acc.balance = 0
        session.add(TxAccount(name=taken, balance=1))  # duplicate name -> IntegrityError at flush

    with pytest.raises(IntegrityError):
        await run_in_transaction(sessionmaker, bad, attempts=5)
    assert calls == 1 and await balances(sessionmaker, [account]) == [100]


async def test_helper_gives_up_after_attempts_with_growing_capped_delays(sessionmaker: Sessionmaker) -> None:
    [account] = await make_accounts(sessionmaker, 100)
    async with sessionmaker() as session:
        taken = (await session.get(TxAccount, account)).name  # type: ignore[union-attr]
    retries: list[tuple[int, float]] = []

    async def always_fails(session: AsyncSession) -> None:
        session.add(TxAccount(name=taken, balance=1))

    with pytest.raises(IntegrityError):
        await run_in_transaction(
            sessionmaker,
            always_fails,
            attempts=4,
            backoff=0.01,
            max_backoff=0.015,
            retry_if=lambda exc: isinstance(exc, IntegrityError),
            on_retry=lambda attempt, exc, delay: retries.append((attempt, delay)),
        )
    assert [a for a, _ in retries] == [1, 2, 3]  # 4 runs, 3 sleeps, then the error
    caps = [0.01, 0.015, 0.015]  # min(max_backoff, backoff * 2**(n-1))
    assert all(0 <= delay <= cap for (_, delay), cap in zip(retries, caps))


@pytest.mark.parametrize("kwargs", [{"attempts": 0}, {"backoff": -1.0}, {"max_backoff": -1.0}])
async def test_helper_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    async def never(session: AsyncSession) -> None:
        raise AssertionError("must not run")

    with pytest.raises(ValueError):
        await run_in_transaction(async_sessionmaker(), never, **kwargs)


class FakeDriverError(Exception):
    def __init__(self, *args: Any, **attrs: Any) -> None:
        super().__init__(*args)
        self.__dict__.update(attrs)


@pytest.mark.parametrize(
    ("orig", "retry"),
    [
        (FakeDriverError("could not serialize access", sqlstate="40001"), True),  # asyncpg adapter, psycopg 3
        (FakeDriverError("deadlock detected", pgcode="40P01"), True),  # psycopg2
        (FakeDriverError(1213, "Deadlock found", sqlstate="40001"), True),  # PyMySQL >= 1.1 (aiomysql)
        (FakeDriverError(1205, "Lock wait timeout exceeded", sqlstate="HY000"), True),
        (FakeDriverError(1205, "Lock wait timeout exceeded"), True),  # older PyMySQL, asyncmy
        (FakeDriverError(1062, "Duplicate entry", sqlstate="23000"), False),
        (FakeDriverError("duplicate key value", sqlstate="23505"), False),
        (FakeDriverError("lock timeout", sqlstate="55P03"), False),
        (sqlite3.OperationalError("database is locked"), True),
        (sqlite3.OperationalError("no such table: tx_accounts"), False),
    ],
)
def test_is_retryable_reads_each_driver_shape(orig: Exception, retry: bool) -> None:
    assert is_retryable(OperationalError("UPDATE ...", {}, orig)) is retry


def test_is_retryable_ignores_lost_connections_and_non_database_errors() -> None:
    lost = OperationalError("COMMIT", {}, FakeDriverError(1213, "Deadlock"), connection_invalidated=True)
    assert not is_retryable(lost)
    assert not is_retryable(RuntimeError("40001"))
    assert db_error_codes(RuntimeError()) == (None, None)


async def test_concurrent_transfers_keep_every_cent_without_deadlocks(sessionmaker: Sessionmaker) -> None:
    """transfer() locks both rows in primary-key order: 24 concurrent transfers in all directions
    never deadlock (no retry needed, on SQLite thanks to BEGIN IMMEDIATE) and the sums add up."""
    ids = await make_accounts(sessionmaker, 500, 500, 500)
    pairs = [(0, 1), (1, 0), (1, 2), (2, 0), (0, 2), (2, 1)]
    moves = [(ids[a], ids[b], 1 + n % 7) for n, (a, b) in enumerate(pairs * 4)]
    expected = dict.fromkeys(ids, 500)
    for src, dst, amount in moves:
        expected[src] -= amount
        expected[dst] += amount
    retries: list[BaseException] = []
    await asyncio.gather(
        *(transfer(sessionmaker, s, d, amt, on_retry=lambda n, exc, delay: retries.append(exc)) for s, d, amt in moves)
    )
    assert await balances(sessionmaker, ids) == [expected[i] for i in ids]
    assert retries == []


async def test_transfer_refuses_bad_input_and_insufficient_funds(sessionmaker: Sessionmaker) -> None:
    a, b = await make_accounts(sessionmaker, 10, 0)
    with pytest.raises(ValueError, match="insufficient funds"):
        await transfer(sessionmaker, a, b, 11)
    with pytest.raises(ValueError, match="two different accounts"):
        await transfer(sessionmaker, a, a, 1)
    with pytest.raises(ValueError, match="positive amount"):
        await transfer(sessionmaker, a, b, 0)
    with pytest.raises(LookupError):
        await transfer(sessionmaker, a, -1, 1)
    assert await balances(sessionmaker, [a, b]) == [10, 0]


@pytest.mark.only_backends("sqlite")  # BEGIN IMMEDIATE is SQLite's; other backends ignore the option
async def test_sqlite_begin_immediate_is_sent_only_when_asked(engine: AsyncEngine, backend: str) -> None:
    sessionmaker = create_sessionmaker(engine)

    async def noop(session: AsyncSession) -> int:
        return (await session.execute(select(1))).scalar_one()

    with count_queries(engine) as queries:
        await run_in_transaction(sessionmaker, noop)
        await run_in_transaction(sessionmaker, noop, sqlite_immediate=False)
    assert [q for q in queries.statements if q.startswith("BEGIN")] == ["BEGIN IMMEDIATE", "BEGIN"]
    async with engine.connect() as conn:
        with pytest.raises(ValueError, match="sqlite_begin must be"):
            await (await conn.execution_options(sqlite_begin="NOW; DROP TABLE x")).begin()


@pytest.mark.only_backends("sqlite")  # SQLite locking
async def test_sqlite_deferred_transactions_that_read_then_write_collide(
    sessionmaker: Sessionmaker, backend: str
) -> None:
    """Why run_in_transaction starts SQLite transactions with BEGIN IMMEDIATE: with a plain BEGIN,
    two transactions that both read and then write make the second fail with "database is
    locked" (SQLITE_BUSY / BUSY_SNAPSHOT) at once - busy_timeout does not apply to that case."""
    [account] = await make_accounts(sessionmaker, 100)
    rendezvous = Rendezvous(2)

    async def deposit(amount: int) -> None:
        async def work(session: AsyncSession) -> None:
            acc = await session.get(TxAccount, account)  # deferred BEGIN: a read snapshot only
            assert acc is not None
            await rendezvous.wait()
            acc.balance += amount  # both now need the write lock

        await run_in_transaction(sessionmaker, work, attempts=1, sqlite_immediate=False)

    results = await asyncio.gather(deposit(10), deposit(15), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], OperationalError)
    assert "database is locked" in str(errors[0].orig) and is_retryable(errors[0])
    assert await balances(sessionmaker, [account]) in ([110], [115])  # the other deposit committed


@needs_server
async def test_read_modify_write_without_retry_loses_an_update(sessionmaker: Sessionmaker, backend: str) -> None:
    """The problem the helper solves: at the default isolation level (PostgreSQL READ COMMITTED,
    InnoDB REPEATABLE READ) two concurrent read-modify-write transactions both commit, and one
    deposit silently disappears."""
    [account] = await make_accounts(sessionmaker, 100)
    rendezvous = Rendezvous(2)

    async def deposit(amount: int) -> None:
        async def work(session: AsyncSession) -> None:
            acc = await session.get(TxAccount, account)
            assert acc is not None
            await rendezvous.wait()
            acc.balance += amount

        await run_in_transaction(sessionmaker, work, attempts=1)

    await asyncio.gather(deposit(10), deposit(15))
    assert await balances(sessionmaker, [account]) in ([110], [115])  # not 125


@needs_server
async def test_serializable_conflict_is_retried(sessionmaker: Sessionmaker, backend: str) -> None:
    [account] = await make_accounts(sessionmaker, 100)
    codes: list[tuple[str | None, int | None]] = []
    attempts = await concurrent_deposits(
        sessionmaker, account, [10, 15], on_retry=lambda n, exc, delay: codes.append(db_error_codes(exc))
    )
    assert await balances(sessionmaker, [account]) == [125]
    assert sorted(attempts) == [1, 2]
    assert codes == ([("40001", None)] if backend == "postgresql" else [("40001", 1213)])


@needs_server
async def test_deadlock_is_retried(sessionmaker: Sessionmaker, backend: str) -> None:
    a, b = await make_accounts(sessionmaker, 100, 100)
    codes: list[tuple[str | None, int | None]] = []
    attempts = await crossed_transfers(
        sessionmaker, a, b, 30, 20, on_retry=lambda n, exc, delay: codes.append(db_error_codes(exc))
    )
    assert await balances(sessionmaker, [a, b]) == [90, 110]
    assert sorted(attempts) == [1, 2]
    assert codes == ([("40P01", None)] if backend == "postgresql" else [("40001", 1213)])


@pytest.mark.only_backends("postgresql")  # psycopg is a PostgreSQL driver
async def test_psycopg_driver_conflicts_are_detected_too(server_url: str, backend: str) -> None:
    async with scratch_engine(make_url(server_url).set(drivername="postgresql+psycopg")) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        a, b = await make_accounts(sessionmaker, 100, 100)
        codes: list[tuple[str | None, int | None]] = []
        record = lambda n, exc, delay: codes.append(db_error_codes(exc))  # noqa: E731
        await concurrent_deposits(sessionmaker, a, [1, 2], on_retry=record)
        await crossed_transfers(sessionmaker, a, b, 5, 7, on_retry=record)
        assert await balances(sessionmaker, [a, b]) == [100 + 3 - 5 + 7, 100 + 5 - 7]
        assert codes == [("40001", None), ("40P01", None)]


@needs_server
async def test_lock_wait_timeout_retried_on_mariadb_not_lock_timeout_on_postgresql(
    sessionmaker: Sessionmaker, backend: str
) -> None:
    """MySQL 1205 is in the retry set; PostgreSQL's lock_timeout (55P03) is not and propagates."""
    [account] = await make_accounts(sessionmaker, 100)
    holder_may_commit = asyncio.Event()
    locked = asyncio.Event()

    async def holder() -> None:
        async with sessionmaker() as session, session.begin():
            await session.get(TxAccount, account, with_for_update=True)
            locked.set()
            await asyncio.wait_for(holder_may_commit.wait(), 20)

    calls = 0
    codes: list[tuple[str | None, int | None]] = []

    async def waiter(session: AsyncSession) -> int:
        nonlocal calls
        calls += 1
        if backend == "postgresql":
            await session.execute(text("SET LOCAL lock_timeout = '200ms'"))
            stmt = text("SELECT balance FROM tx_accounts WHERE id = :id FOR UPDATE")
        else:  # MariaDB: a per-statement lock wait timeout of 1 s
            stmt = text(
                "SET STATEMENT innodb_lock_wait_timeout=1 FOR SELECT balance FROM tx_accounts WHERE id = :id FOR UPDATE"
            )
        return (await session.execute(stmt, {"id": account})).scalar_one()

    def on_retry(n: int, exc: BaseException, delay: float) -> None:
        codes.append(db_error_codes(exc))
        holder_may_commit.set()

    task = asyncio.create_task(holder())
    await asyncio.wait_for(locked.wait(), 10)
    try:
        if backend == "postgresql":
            with pytest.raises(DBAPIError) as info:
                await run_in_transaction(sessionmaker, waiter, on_retry=on_retry)
            assert db_error_codes(info.value)[0] == "55P03" and calls == 1 and codes == []
        else:
            assert await run_in_transaction(sessionmaker, waiter, on_retry=on_retry) == 100
            assert calls == 2 and codes == [("HY000", 1205)]
    finally:
        holder_may_commit.set()
        await task


async def test_isolation_level_applies_to_one_transaction_only(
    db_url: tuple[URL, dict[str, Any]], backend: str
) -> None:
    url, connect_args = db_url
    settings = DatabaseSettings(
        url=url.render_as_string(hide_password=False), connect_args=connect_args, pool_size=1, max_overflow=0
    )
    engine = create_db_engine(settings)  # one connection: the second run reuses the first one's
    try:
        sessionmaker = create_sessionmaker(engine)
        async with engine.connect() as conn:
            default = await conn.get_isolation_level()

        async def level(session: AsyncSession) -> str:
            return await (await session.connection()).get_isolation_level()

        assert await run_in_transaction(sessionmaker, level, isolation_level="SERIALIZABLE") == "SERIALIZABLE"
        assert await run_in_transaction(sessionmaker, level) == default  # same pooled connection, reset
        if backend != "sqlite":
            assert default != "SERIALIZABLE"
    finally:
        await engine.dispose()


# --- row locks -----------------------------------------------------------------------------


@needs_server
async def test_skip_locked_gives_workers_different_jobs(sessionmaker: Sessionmaker, backend: str) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(TxJob.__table__.delete())
        session.add_all([TxJob(payload=f"job {n}") for n in range(3)])
    claimed = await two_workers(sessionmaker)
    assert claimed["A"] != claimed["B"]
    async with sessionmaker() as session:
        owners = dict((await session.execute(select(TxJob.id, TxJob.claimed_by))).all())
    assert owners[claimed["A"]] == "A" and owners[claimed["B"]] == "B"
    assert sum(owner is None for owner in owners.values()) == 1


@needs_server
async def test_nowait_fails_at_once_on_a_locked_row(sessionmaker: Sessionmaker, backend: str) -> None:
    """NOWAIT raises instead of waiting: SQLSTATE 55P03 on PostgreSQL; MariaDB reports it as 1205
    (lock wait timeout), which the retry helper would retry."""
    [account] = await make_accounts(sessionmaker, 100)
    async with sessionmaker() as holder, holder.begin():
        await holder.get(TxAccount, account, with_for_update=True)
        async with sessionmaker() as other, other.begin():
            with pytest.raises(DBAPIError) as info:
                await other.get(TxAccount, account, with_for_update={"nowait": True})
    assert db_error_codes(info.value) == (("55P03", None) if backend == "postgresql" else ("HY000", 1205))
    assert is_retryable(info.value) is (backend != "postgresql")


async def test_for_update_is_omitted_on_sqlite(engine: AsyncEngine, backend: str) -> None:
    sql = str(select(TxJob).with_for_update(skip_locked=True).compile(dialect=engine.dialect))
    if backend == "sqlite":
        assert "FOR UPDATE" not in sql
    else:
        assert sql.rstrip().endswith("FOR UPDATE SKIP LOCKED")


async def test_claim_job_returns_none_when_queue_is_empty(sessionmaker: Sessionmaker) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(TxJob.__table__.update().values(claimed_by="done"))
        assert await claim_job(session, "C") is None

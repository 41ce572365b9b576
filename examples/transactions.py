"""Transactions: savepoints, a retry helper for serialization failures and deadlocks, row locks.

Shows:
- ``session.begin_nested()`` (SAVEPOINT): one bad row in a batch is rolled back, the rest of the
  outer transaction is kept and committed.
- ``run_in_transaction(sessionmaker, fn, attempts=..., backoff=...)``: runs ``fn(session)`` in a
  fresh session and transaction, and runs it again (exponential backoff with jitter) when the
  database aborted it as a serialization failure or deadlock: PostgreSQL SQLSTATE 40001 / 40P01,
  MySQL/MariaDB errors 1213 (deadlock) / 1205 (lock wait timeout), SQLite "database is locked".
  Any other error is raised at once. Detection reads ``exc.orig``, so it works with asyncpg,
  psycopg, aiomysql and aiosqlite alike. A real conflict is provoked: on PostgreSQL two
  concurrent SERIALIZABLE read-modify-write transactions (40001), on MariaDB two transfers that
  lock the same rows in opposite order (1213). On SQLite the helper starts with BEGIN IMMEDIATE
  (one writer at a time, the others wait), so a transfer simply runs once.
- ``transfer()``: the production shape - lock both rows in primary-key order, then retry anyway.
- ``with_for_update()``: row locks; ``skip_locked=True`` lets queue workers take different rows
  without waiting for each other. SQLite has no row locks: SQLAlchemy leaves ``FOR UPDATE`` out.

Use when: a batch must survive individual bad rows, when you run SERIALIZABLE / REPEATABLE READ
transactions or lock rows (retries are then part of the contract), when building a job queue.
The retry helper and the error classification are templates (``templates/retry.py``,
``templates/db_errors.py``); this file shows them at work.
Run: ``python examples/transactions.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.db_errors import db_error_codes
from templates.retry import run_in_transaction
from templates.scratch import scratch_engine

log = logging.getLogger(__name__)

T = TypeVar("T")


class TxAccount(Base):
    __tablename__ = "tx_accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    balance: Mapped[int] = mapped_column(default=0)


class TxJob(Base):
    __tablename__ = "tx_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    payload: Mapped[str] = mapped_column(String(100))
    claimed_by: Mapped[str | None] = mapped_column(String(50), default=None)


class Rendezvous:
    """Let ``parties`` tasks wait for each other (``asyncio.Barrier`` exists only from 3.11)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.arrived = 0
        self.event = asyncio.Event()

    async def wait(self, timeout: float = 10.0) -> None:
        self.arrived += 1
        if self.arrived >= self.parties:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), timeout)


async def import_accounts(session: AsyncSession, rows: list[tuple[str, int]]) -> list[str]:
    """Insert each row in its own SAVEPOINT; return the names skipped as duplicates."""
    skipped = []
    for name, balance in rows:
        try:
            async with session.begin_nested():  # SAVEPOINT ... RELEASE, or ROLLBACK TO on error
                session.add(TxAccount(name=name, balance=balance))
        except IntegrityError:
            skipped.append(name)  # only this row is undone; the outer transaction goes on
    return skipped


async def transfer(
    sessionmaker: async_sessionmaker[AsyncSession],
    src: int,
    dst: int,
    amount: int,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> None:
    """Move ``amount`` between accounts: both rows locked by one statement in primary-key order,
    so concurrent transfers queue up instead of deadlocking; retried if the database aborts it."""
    if src == dst or amount <= 0:
        raise ValueError("transfer needs two different accounts and a positive amount")

    async def work(session: AsyncSession) -> None:
        stmt = select(TxAccount).where(TxAccount.id.in_([src, dst])).order_by(TxAccount.id).with_for_update()
        accounts = {account.id: account for account in await session.scalars(stmt)}
        if len(accounts) != 2:
            raise LookupError(f"no account { ({src, dst} - accounts.keys()) }")
        if accounts[src].balance < amount:
            raise ValueError(f"insufficient funds in account {src}")  # not retried; rolled back
        accounts[src].balance -= amount
        accounts[dst].balance += amount

    await run_in_transaction(sessionmaker, work, on_retry=on_retry)


async def concurrent_deposits(
    sessionmaker: async_sessionmaker[AsyncSession],
    account_id: int,
    amounts: list[int],
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> list[int]:
    """Deposit concurrently with read-modify-write under SERIALIZABLE; return attempts per task.

    Every first attempt reads the balance, then waits until all tasks have read it, so the
    conflict is certain: PostgreSQL aborts all writers but one with 40001; InnoDB turns the
    SERIALIZABLE reads into shared locks and reports a deadlock (1213).
    """
    rendezvous = Rendezvous(len(amounts))
    attempts = [0] * len(amounts)

    async def deposit(i: int) -> None:
        async def work(session: AsyncSession) -> None:
            attempts[i] += 1
            account = await session.get(TxAccount, account_id)
            assert account is not None
            if attempts[i] == 1:
                await rendezvous.wait()
            account.balance += amounts[i]

        await run_in_transaction(sessionmaker, work, isolation_level="SERIALIZABLE", on_retry=on_retry)

    await asyncio.gather(*(deposit(i) for i in range(len(amounts))))
    return attempts


async def crossed_transfers(
    sessionmaker: async_sessionmaker[AsyncSession],
    a: int,
    b: int,
    amount_ab: int,
    amount_ba: int,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> list[int]:
    """Transfer a->b and b->a at the same time, each locking its source row first: a deadlock.

    The database picks a victim (MariaDB at once, PostgreSQL after ``deadlock_timeout``, 1 s by
    default); the helper reruns the victim after the survivor commits. Returns attempts per task.
    """
    rendezvous = Rendezvous(2)
    attempts = [0, 0]

    async def transfer(i: int, src: int, dst: int, amount: int) -> None:
        async def work(session: AsyncSession) -> None:
            attempts[i] += 1
            source = await session.get(TxAccount, src, with_for_update=True)  # SELECT ... FOR UPDATE
            if attempts[i] == 1:
                await rendezvous.wait()  # both hold their first lock now
            target = await session.get(TxAccount, dst, with_for_update=True)
            assert source is not None and target is not None
            source.balance -= amount
            target.balance += amount

        await run_in_transaction(sessionmaker, work, on_retry=on_retry)

    await asyncio.gather(transfer(0, a, b, amount_ab), transfer(1, b, a, amount_ba))
    return attempts


async def claim_job(session: AsyncSession, worker: str) -> TxJob | None:
    """Take the oldest unclaimed job that no other transaction has locked (a queue worker)."""
    stmt = select(TxJob).where(TxJob.claimed_by.is_(None)).order_by(TxJob.id).limit(1).with_for_update(skip_locked=True)
    job = await session.scalar(stmt)
    if job is not None:
        job.claimed_by = worker
    return job


async def two_workers(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    """Worker A keeps its transaction (and row lock) open while worker B claims: B skips A's row."""
    a_has_lock, b_done = asyncio.Event(), asyncio.Event()
    claimed: dict[str, int] = {}

    async def worker_a() -> None:
        async with sessionmaker() as session, session.begin():
            job = await claim_job(session, "A")
            assert job is not None
            claimed["A"] = job.id
            a_has_lock.set()
            await asyncio.wait_for(b_done.wait(), 10)  # hold the lock until B has finished

    async def worker_b() -> None:
        await asyncio.wait_for(a_has_lock.wait(), 10)
        async with sessionmaker() as session, session.begin():
            job = await claim_job(session, "B")
            assert job is not None
            claimed["B"] = job.id
        b_done.set()

    await asyncio.gather(worker_a(), worker_b())
    return claimed


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        backend = "mariadb" if getattr(engine.dialect, "is_mariadb", False) else engine.dialect.name

        # 1. Savepoints: the duplicate "bob" is skipped, the other rows are committed.
        async with sessionmaker() as session, session.begin():
            skipped = await import_accounts(session, [("alice", 100), ("bob", 100), ("bob", 5), ("carol", 0)])
        async with sessionmaker() as session:
            names = list(await session.scalars(select(TxAccount.name).order_by(TxAccount.name)))
        if skipped != ["bob"] or names != ["alice", "bob", "carol"]:
            raise AssertionError(f"savepoint import: skipped={skipped} stored={names}")
        print(f"savepoints on {backend}: stored {names}, skipped duplicate {skipped}")

        async with sessionmaker() as session:
            ids = {a.name: a.id for a in await session.scalars(select(TxAccount))}

        # 2. Concurrent transfers through transfer(): rows locked in key order, nothing lost.
        retries: list[str] = []

        def record(attempt: int, exc: BaseException, delay: float) -> None:
            sqlstate, errno = db_error_codes(exc)
            if errno is not None:
                retries.append(f"{errno} (SQLSTATE {sqlstate})")
            else:
                retries.append(f"SQLSTATE {sqlstate}" if sqlstate else repr(exc.orig))

        async def balances() -> tuple[int, int]:
            async with sessionmaker() as session:
                rows = dict((await session.execute(select(TxAccount.name, TxAccount.balance))).all())
            return rows["alice"], rows["bob"]

        moves = [(ids["alice"], ids["bob"], n) if n % 2 else (ids["bob"], ids["alice"], n) for n in range(1, 13)]
        await asyncio.gather(*(transfer(sessionmaker, src, dst, amount, on_retry=record) for src, dst, amount in moves))
        expected = (100 - 36 + 42, 100 + 36 - 42)  # alice sends 1+3+...+11, receives 2+4+...+12
        if await balances() != expected or retries:
            raise AssertionError(f"transfers: balances {await balances()}, retries {retries}")
        print(f"12 concurrent transfers on {backend}: balances {expected}, 0 retries (consistent lock order)")

        # 3. Provoked conflicts, retried by run_in_transaction.
        if backend == "sqlite":
            print("retry helper on sqlite: BEGIN IMMEDIATE queues writers; every transfer ran once")
        else:
            if backend == "postgresql":
                attempts = await concurrent_deposits(sessionmaker, ids["alice"], [10, 15], on_retry=record)
                kind, expected = "SERIALIZABLE read-modify-write", (expected[0] + 25, expected[1])
            else:
                attempts = await crossed_transfers(sessionmaker, ids["alice"], ids["bob"], 30, 20, on_retry=record)
                kind, expected = "transfers locking rows in opposite order", (expected[0] - 10, expected[1] + 10)
            if await balances() != expected or not retries:
                raise AssertionError(f"{kind}: balances {await balances()}, retried on {retries}")
            print(f"retry helper on {backend}: {kind} -> retried on {retries}, attempts per task {attempts}")
            print(f"  final balances alice={expected[0]} bob={expected[1]} (nothing lost, nothing doubled)")

        # 4. Row locks.
        async with sessionmaker() as session, session.begin():
            session.add_all([TxJob(payload=f"job {n}") for n in range(3)])
        if backend == "sqlite":
            print("with_for_update on sqlite: no row locks; SQLAlchemy omits FOR UPDATE (whole-database write lock)")
        else:
            claimed = await two_workers(sessionmaker)
            if claimed["A"] == claimed["B"]:
                raise AssertionError(f"skip_locked: both workers got job {claimed['A']}")
            print(
                f"with_for_update(skip_locked=True) on {backend}: worker A got job {claimed['A']}, "
                f"B got job {claimed['B']} without waiting"
            )
    print("transactions: ok")


if __name__ == "__main__":
    asyncio.run(main())

"""Read replicas: plain reads go to a replica, everything else to the primary, and neither lag nor
a failing replica can hand a request stale data or an error.

Copy next to ``database.py``. It gives you:

- ``create_routing_sessionmaker(primary, replica)``: sessions whose ``RoutingSession.get_bind()``
  picks the engine per statement (the hook SQLAlchemy documents for custom binds, used under
  asyncio through ``sync_session_class``). Only a provable read reaches the replica: a ``select()``
  without ``FOR UPDATE``, outside a flush, in a transaction that has not written yet. DML,
  ``text()``, ``session.connection()``, locking reads and UNIONs (``get_bind`` gets no statement
  for them) go to the primary, and the rest of that transaction stays there.
- ``use_primary(session)``: pin the current (or next) transaction to the primary by hand.
- Read-your-writes: replication is asynchronous, so right after a commit the replica may not have
  the row yet. ``await mark_write(session)`` after a committed write returns a ``WriteMark`` the
  client carries (cookie, header, its session store; ``encode()`` / ``decode()``); before the
  client's next reads ``await prepare_reads(session, mark)`` either waits (bounded) until the
  replica has replayed that write (PostgreSQL: ``pg_last_wal_replay_lsn()`` against the WAL
  position the primary reported after the commit) or, on timeout and on backends without a WAL
  position, pins the session to the primary (for ``pin_window`` seconds after the write).
- Replica failure: ``ReplicaHealth`` (one per process) remembers a replica that could not be
  reached; for ``retry_after`` seconds reads go to the primary, then the replica is tried again.
  A read whose replica connection cannot be opened is re-run on the primary at once, so a stopped
  replica costs no failed request (a read already running on it when it dies fails: 503).
- ``make_read_only(engine)``: the replica engine refuses writes at the database, so a misrouted
  write fails loudly. ``require_standby(engine, health)`` (PostgreSQL): every checkout asks
  ``pg_is_in_recovery()``; a "replica" that was promoted (now a detached copy that no longer
  receives the primary's writes) is refused and reads fall back to the primary.

The primary URL decides where writes go. After a failover, point it at the new primary (DNS,
a virtual IP, or asyncpg's multi-host URL with ``target_session_attrs=primary``); nothing here
moves writes to a promoted replica by itself.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from .database import create_sessionmaker
from .db_errors import is_database_unavailable

PINNED = "read_replica.pinned_to_primary"  # session.info: this transaction uses the primary
ON_REPLICA = "read_replica.replica_in_use"  # session.info: this transaction holds a replica connection

T = TypeVar("T")
WAL_POSITION = (
    "SELECT CASE WHEN current_setting('synchronous_commit') = 'off' "
    "THEN pg_current_wal_insert_lsn() ELSE pg_current_wal_flush_lsn() END::text"
)
LSN = re.compile(r"[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}")  # PostgreSQL pg_lsn text form


class NotAStandby(Exception):
    """The replica engine reached a server that is not in recovery (promoted, or misconfigured)."""


class ReplicaHealth:
    """Whether reads may try the replica now; shared by all sessions of one process."""

    def __init__(self, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after  # seconds a failed replica is left alone before the next try
        self.down_until = 0.0  # time.monotonic() before which reads go to the primary
        self.failures = 0
        self.last_error: str | None = None

    def available(self) -> bool:
        return time.monotonic() >= self.down_until

    def mark_down(self, error: BaseException | str) -> None:
        self.failures += 1
        self.last_error = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.down_until = time.monotonic() + self.retry_after

    def mark_up(self) -> None:
        self.down_until = 0.0


def replica_unreachable(exc: BaseException) -> bool:
    """A failure that re-running the read on the primary fixes."""
    return isinstance(exc, NotAStandby | DisconnectionError | TimeoutError) or is_database_unavailable(exc)


class RoutingSession(Session):
    """``get_bind()`` routes plain reads to ``replica`` and everything else to the primary (the
    session's ``bind``). Without a replica, or while ``health`` says it is down, every statement
    goes to the primary."""

    def __init__(
        self, *args: Any, replica: AsyncEngine | None = None, health: ReplicaHealth | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.async_replica = replica
        self.replica: Engine | None = replica.sync_engine if replica is not None else None
        self.health = health if health is not None else ReplicaHealth()
        self.routed_to_replica = False  # what the last get_bind() decided

    def get_bind(self, mapper: Any = None, *, clause: Any = None, **kw: Any) -> Any:
        primary = super().get_bind(mapper, clause=clause, **kw)
        self.routed_to_replica = False
        if self.replica is None or self.info.get(PINNED):
            return primary
        plain_read = (
            isinstance(clause, Select)
            and clause._for_update_arg is None  # no FOR UPDATE / FOR SHARE (no public accessor)
            and not self._flushing  # the attribute SQLAlchemy's own routing recipe uses
        )
        if not plain_read:
            self.info[PINNED] = True  # a write or lock: the rest of this transaction reads the primary
            return primary
        if not self.health.available() and not self.info.get(ON_REPLICA):
            self.info[PINNED] = True  # replica marked down: this transaction reads the primary
            return primary
        self.routed_to_replica = True
        return self.replica

    def with_fallback(self, run: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a statement; if it was routed to a replica that could not be connected to (so this
        transaction holds no replica connection), mark the replica down and re-run it on the primary.

        A statement that fails on a replica connection it already had (the replica died while it
        ran) is not re-run: that connection is broken inside the transaction, so the error goes up
        (``install_error_handlers`` answers 503) and the next transaction uses the primary.
        """
        try:
            result = run(*args, **kwargs)
        except Exception as exc:
            if not self.routed_to_replica or not replica_unreachable(exc):
                raise
            self.health.mark_down(exc)
            if self.info.get(ON_REPLICA):
                raise
            self.info[PINNED] = True
            return run(*args, **kwargs)
        if self.routed_to_replica:
            self.health.mark_up()
        return result

    # Every ORM read (session.get, refresh, relationship loaders) ends in one of these two.
    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self.with_fallback(super().execute, *args, **kwargs)

    def scalar(self, *args: Any, **kwargs: Any) -> Any:
        return self.with_fallback(super().scalar, *args, **kwargs)


@event.listens_for(RoutingSession, "after_begin")
def note_replica_connection(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    if isinstance(session, RoutingSession) and connection.engine is session.replica:
        session.info[ON_REPLICA] = True


@event.listens_for(RoutingSession, "after_transaction_end")
def unpin_after_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended (commit or rollback)
        session.info.pop(PINNED, None)
        session.info.pop(ON_REPLICA, None)


def use_primary(session: AsyncSession) -> None:
    """Send every statement of the current (or next) transaction to the primary."""
    session.info[PINNED] = True


def create_routing_sessionmaker(
    primary: AsyncEngine, replica: AsyncEngine | None, *, health: ReplicaHealth | None = None
) -> async_sessionmaker[AsyncSession]:
    """Routing sessions; pass one ``health`` per process (a new one is made if omitted)."""
    return create_sessionmaker(
        primary, sync_session_class=RoutingSession, replica=replica, health=health or ReplicaHealth()
    )


def routing_of(session: AsyncSession) -> RoutingSession:
    sync = session.sync_session
    if not isinstance(sync, RoutingSession):
        raise TypeError("the session was not made by create_routing_sessionmaker()")
    return sync


# --- read-your-writes ------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteMark:
    """What a client carries from its last write to its next read (not a secret: a forged one
    only moves that client's reads to the primary or makes them wait ``replay_timeout``)."""

    at: float  # time.time() after the commit
    lsn: str | None = None  # PostgreSQL: a WAL position at or past the commit (mark_write)

    def encode(self) -> str:
        return f"{self.at:.3f}~{self.lsn or ''}"  # cookie-safe (an LSN looks like 0/3000148)

    @classmethod
    def decode(cls, raw: str | None) -> WriteMark | None:
        """The mark a client sent back, or None if it is missing or malformed."""
        at, sep, lsn = (raw or "").partition("~")
        try:
            stamp = float(at)
        except ValueError:
            return None
        if not sep or (lsn and not LSN.fullmatch(lsn)):
            return None
        return cls(at=stamp, lsn=lsn or None)


async def mark_write(session: AsyncSession) -> WriteMark:
    """Call after committing a write. On PostgreSQL one extra round trip to the primary reads the
    WAL position the commit is certainly at or behind: ``pg_current_wal_flush_lsn()`` (a commit
    returns after its WAL is flushed), or with ``synchronous_commit = off`` (commits return before
    that) ``pg_current_wal_insert_lsn()``, which the standby reaches once the WAL writer flushed it.
    The setting is read on a new connection: a per-transaction ``SET LOCAL synchronous_commit = off``
    is not seen, and its commit may be marked too early.
    """
    primary = session.bind
    if not isinstance(primary, AsyncEngine) or primary.dialect.name != "postgresql":
        return WriteMark(at=time.time())
    async with primary.connect() as conn:
        lsn = await conn.scalar(text(WAL_POSITION))
    return WriteMark(at=time.time(), lsn=str(lsn))


async def wait_for_replay(replica: AsyncEngine, lsn: str, timeout: float, poll: float = 0.005) -> bool:
    """True as soon as ``replica`` has replayed WAL up to ``lsn``; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    async with replica.connect() as conn:
        while True:
            caught_up = await conn.scalar(
                text("SELECT coalesce(pg_last_wal_replay_lsn() >= CAST(CAST(:lsn AS TEXT) AS pg_lsn), false)"),
                {"lsn": lsn},
            )
            await conn.rollback()  # no snapshot held while waiting
            if caught_up:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(poll)


async def prepare_reads(
    session: AsyncSession, mark: WriteMark | None, *, pin_window: float = 5.0, replay_timeout: float = 0.5
) -> str:
    """Before the reads of a client whose last write is ``mark``: make sure they can see it.

    Returns where the reads will go: ``"replica"`` (nothing to wait for, or the replica replayed the
    write within ``replay_timeout``) or ``"primary"`` (replica down, not caught up in time, or - on
    a backend without a WAL position - the write is less than ``pin_window`` seconds old).
    """
    routing = routing_of(session)
    replica = routing.async_replica
    if replica is None or not routing.health.available():
        use_primary(session)
        return "primary"
    if mark is None:
        return "replica"
    if mark.lsn is not None and replica.dialect.name == "postgresql":
        try:
            caught_up = await wait_for_replay(replica, mark.lsn, replay_timeout)
        except Exception as exc:
            if not replica_unreachable(exc):
                raise
            routing.health.mark_down(exc)
            caught_up = False
        if caught_up:
            return "replica"
        use_primary(session)
        return "primary"
    if time.time() - mark.at < pin_window:
        use_primary(session)
        return "primary"
    return "replica"


# --- the replica engine ------------------------------------------------------------------------


READ_ONLY_STATEMENTS = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}


def make_read_only(engine: AsyncEngine) -> None:
    """Every new connection of ``engine`` refuses writes (a real standby does this by itself,
    a promoted one no longer does)."""
    statement = READ_ONLY_STATEMENTS[engine.dialect.name]

    @event.listens_for(engine.sync_engine, "connect")
    def read_only(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # asyncpg's adapter ran it in a transaction: SET would roll back


def require_standby(engine: AsyncEngine, health: ReplicaHealth) -> None:
    """PostgreSQL: at every checkout, refuse a server that is not in recovery (``NotAStandby``).

    A standby promoted after a failover keeps its open connections; without this check they keep
    serving reads from a copy that no longer receives the primary's writes. Costs one round trip
    per checkout, like ``pool_pre_ping`` (a dead connection fails here and the pool replaces it).
    """
    if engine.dialect.name != "postgresql":
        raise ValueError("require_standby() checks pg_is_in_recovery(): PostgreSQL only")

    @event.listens_for(engine.sync_engine, "checkout")
    def check_standby(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT pg_is_in_recovery()")
            row = cursor.fetchone()
            dbapi_connection.rollback()
        except Exception as exc:
            raise DisconnectionError(f"replica connection failed its check: {exc}") from exc
        finally:
            cursor.close()
        if not (row and row[0]):
            error = NotAStandby("the replica is not in recovery (promoted?): not reading from it")
            health.mark_down(error)
            raise error

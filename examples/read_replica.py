"""Read-replica routing: one session type that sends plain reads to a replica engine and
everything else - writes, locking reads, and every read after the transaction's first write -
to the primary.

Shows:
- ``RoutingSession``: a sync ``Session`` subclass whose ``get_bind()`` picks the engine per
  statement; used with ``AsyncSession(sync_session_class=RoutingSession)`` (the documented hook
  for custom binds under asyncio). A statement goes to the replica only when it is provably a
  read: an ORM/Core ``select()`` without ``FOR UPDATE``, outside a flush, in a transaction that has
  not written yet. ``text()``, DML, ``session.connection()`` and ``with_for_update()`` go to the
  primary, and from then on the whole transaction stays there (it sees its own writes). So do
  UNIONs: the session hands them to ``get_bind()`` without the statement (clause=None).
- ``use_primary(session)``: pins the current (or next) transaction to the primary before its
  first read - for read-then-write logic and for reading what the user just wrote.
- ``make_read_only(engine)``: the replica engine refuses writes at the database (PostgreSQL
  ``SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY``, MariaDB ``SET SESSION TRANSACTION
  READ ONLY``, SQLite ``PRAGMA query_only``), so a misrouted write fails loudly as it would on a
  real hot standby.
- The read-your-writes caveat: replication is asynchronous, so a committed write may be missing
  on the replica for a while (also for ``session.refresh(obj)`` right after ``commit()``). Here
  primary and replica are two separate namespaces and "replication" is an explicit copy step,
  which makes the lag visible and deterministic.

FastAPI: make ``app.state.sessionmaker`` the routing sessionmaker (in your lifespan); ``SessionDep``
then routes every request's statements (tests/reliability/test_read_replica.py).

Use when: a service adds read replicas (PostgreSQL streaming replication, MariaDB replicas,
Aurora/RDS reader endpoints) and wants one session API with safe routing.
Run: ``python examples/read_replica.py`` (DATABASE_URL optional; default embedded SQLite: two
temp files; PostgreSQL: two schemas; MariaDB: two databases - all removed afterwards).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Select, delete, event, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction, selectinload

from templates.base_model import Base
from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker
from templates.models import Post, User
from templates.query_counter import count_queries
from templates.scratch import scratch_url

PINNED = "read_replica.pinned_to_primary"  # session.info key: this transaction uses the primary


class RoutingSession(Session):
    """``get_bind()`` routes plain reads to ``replica`` and everything else to the primary (the
    session's ``bind``). Without a replica every statement goes to the primary."""

    def __init__(self, *args: Any, replica: AsyncEngine | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replica: Engine | None = replica.sync_engine if replica is not None else None

    def get_bind(self, mapper: Any = None, *, clause: Any = None, **kw: Any) -> Any:
        primary = super().get_bind(mapper, clause=clause, **kw)
        if self.replica is None or self.info.get(PINNED):
            return primary
        plain_read = (
            isinstance(clause, Select)
            and clause._for_update_arg is None  # no FOR UPDATE / FOR SHARE (no public accessor)
            and not self._flushing  # the attribute SQLAlchemy's own routing recipe uses
        )
        if plain_read:
            return self.replica
        self.info[PINNED] = True  # a write or lock: the rest of this transaction reads the primary
        return primary


@event.listens_for(RoutingSession, "after_transaction_end")
def unpin_after_transaction(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost transaction ended (commit or rollback)
        session.info.pop(PINNED, None)


def use_primary(session: AsyncSession) -> None:
    """Send every statement of the current (or next) transaction to the primary."""
    session.info[PINNED] = True


def create_routing_sessionmaker(primary: AsyncEngine, replica: AsyncEngine | None) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(primary, sync_session_class=RoutingSession, replica=replica)


READ_ONLY_STATEMENTS = {
    "postgresql": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
    "mysql": "SET SESSION TRANSACTION READ ONLY",
    "mariadb": "SET SESSION TRANSACTION READ ONLY",
    "sqlite": "PRAGMA query_only = ON",
}


def make_read_only(engine: AsyncEngine) -> None:
    """Every new connection of ``engine`` refuses writes (a real standby does this by itself)."""
    statement = READ_ONLY_STATEMENTS[engine.dialect.name]

    @event.listens_for(engine.sync_engine, "connect")
    def read_only(dbapi_connection: Any, connection_record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # asyncpg's adapter ran it in a transaction: SET would roll back


async def replicate(primary: AsyncEngine, replica_writer: AsyncEngine) -> None:
    """Stand-in for the database's replication: copy users and posts to the replica namespace."""
    tables = [User.__table__, Post.__table__]
    async with primary.connect() as source, replica_writer.begin() as target:
        for table in reversed(tables):
            await target.execute(delete(table))
        for table in tables:
            rows = [dict(row._mapping) for row in await source.execute(select(table))]
            if rows:
                await target.execute(insert(table), rows)


async def main() -> None:
    async with scratch_url() as (primary_url, primary_args), scratch_url() as (
        replica_url,
        replica_args,
    ):
        def settings(url: Any, connect_args: dict[str, Any]) -> DatabaseSettings:
            return DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args)

        primary = create_db_engine(settings(primary_url, primary_args))
        replica = create_db_engine(settings(replica_url, replica_args))
        make_read_only(replica)
        replica_writer = create_db_engine(settings(replica_url, replica_args))  # the "replication" process
        try:
            tables = [User.__table__, Post.__table__]
            for engine in (primary, replica_writer):
                async with engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all, tables=tables)
            sessions = create_routing_sessionmaker(primary, replica)
            backend = primary.dialect.name

            # 1. A write transaction: the INSERTs and the read after them run on the primary.
            with count_queries(primary) as on_primary, count_queries(replica) as on_replica:
                async with sessions() as session, session.begin():
                    session.add(User(email="ada@example.com", name="Ada"))
                    await session.flush()
                    ada = await session.scalar(select(User).where(User.email == "ada@example.com"))
            if ada is None or len(on_replica) != 0 or len(on_primary) < 2:
                raise AssertionError(f"write transaction: primary {on_primary.statements} replica {on_replica.statements}")
            print(f"write + read-after-write on {backend}: {len(on_primary)} statements on the primary, 0 on the replica")

            # 2. Read-your-writes caveat: a new session reads the replica, which has not caught up.
            async with sessions() as session:
                stale = await session.scalar(select(User).where(User.email == "ada@example.com"))
            async with sessions() as session:
                use_primary(session)
                fresh = await session.scalar(select(User).where(User.email == "ada@example.com"))
            if stale is not None or fresh is None:
                raise AssertionError(f"expected a lagging replica: replica={stale} primary={fresh}")
            print("just after commit: replica read -> None (lag), use_primary(session) -> Ada")

            # 3. After replication, plain reads (and their eager loads) come from the replica.
            async with sessions() as session, session.begin():
                session.add(Post(author_id=ada.id, title="Replicas"))
            await replicate(primary, replica_writer)
            with count_queries(primary) as on_primary, count_queries(replica) as on_replica:
                async with sessions() as session:
                    users = (await session.scalars(select(User).options(selectinload(User.posts)))).all()
            if [(u.name, [p.title for p in u.posts]) for u in users] != [("Ada", ["Replicas"])]:
                raise AssertionError(f"replica read returned {users}")
            if len(on_primary) != 0 or len(on_replica.selects()) != 2:
                raise AssertionError(f"read: primary {on_primary.statements} replica {on_replica.statements}")
            print("after replication: SELECT users + selectinload posts -> 2 statements on the replica, 0 on the primary")

            # 4. The replica refuses writes: a write that bypassed the routing fails loudly.
            try:
                async with replica.begin() as conn:
                    await conn.execute(insert(User.__table__).values(id=ada.id, email="x@example.com", name="x"))
            except DBAPIError as exc:
                print(f"write sent to the replica: {type(exc.orig).__name__}: {str(exc.orig).splitlines()[0][:90]}")
            else:
                raise AssertionError("the replica accepted a write")
        finally:
            for engine in (primary, replica, replica_writer):
                await engine.dispose()
    print("read_replica: ok")


if __name__ == "__main__":
    asyncio.run(main())

"""Read-replica routing with ``templates/read_replica.py``: plain reads on the replica, writes (and
every read in a transaction that wrote) on the primary, and read-your-writes across sessions.

Shows:
- a write transaction runs entirely on the primary; a later plain ``select()`` with its
  ``selectinload`` runs on the replica (statements counted per engine);
- read-your-writes: right after a commit the replica may not have the row. ``mark_write()`` after
  the commit + ``prepare_reads()`` before the next session's reads make that session see it: on
  PostgreSQL by waiting (bounded) until the replica replayed the write's WAL position, otherwise
  by reading the primary for a few seconds after the write;
- the replica engine refuses writes (``make_read_only``), as a real hot standby does.

Two ways to run it:
- ``REPLICA_URL`` set to a PostgreSQL hot standby of ``DATABASE_URL`` (streaming replication):
  real replication, real lag. The tests start such a pair with ``pg_basebackup -R``.
- otherwise (default embedded SQLite, or any DATABASE_URL): the "replica" is a second scratch
  namespace on the same server and replication is an explicit copy step (``replicate``), so the
  lag is visible and deterministic. Only the demo does this; a real replica replicates by itself.

Use when: a service adds read replicas (PostgreSQL streaming replication, MariaDB replicas,
Aurora/RDS reader endpoints) and wants one session API with safe routing.
Run: ``python examples/read_replica.py`` (DATABASE_URL, REPLICA_URL optional; everything it
creates is removed afterwards).
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload

from templates.base_model import Base
from templates.database import DatabaseSettings, create_db_engine
from templates.models import Post, User
from templates.query_counter import count_queries
from templates.read_replica import (
    ReplicaHealth,
    create_routing_sessionmaker,
    make_read_only,
    mark_write,
    prepare_reads,
    require_standby,
    wait_for_replay,
)
from templates.scratch import scratch_url

TABLES = [User.__table__, Post.__table__]


async def replicate(primary: AsyncEngine, replica_writer: AsyncEngine) -> None:
    """Demo only, standing in for the database's replication: copy users and posts."""
    async with primary.connect() as source, replica_writer.begin() as target:
        for table in reversed(TABLES):
            await target.execute(delete(table))
        for table in TABLES:
            rows = [dict(row._mapping) for row in await source.execute(select(table))]
            if rows:
                await target.execute(insert(table), rows)


def engine_for(url: str | URL, connect_args: dict[str, Any]) -> AsyncEngine:
    text_url = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    return create_db_engine(DatabaseSettings(url=text_url, connect_args=connect_args))


async def main() -> None:
    real_replica = os.environ.get("REPLICA_URL")
    async with AsyncExitStack() as stack:
        primary_url, connect_args = await stack.enter_async_context(scratch_url())
        primary = engine_for(primary_url, connect_args)
        stack.push_async_callback(primary.dispose)
        health = ReplicaHealth()
        replica_writer: AsyncEngine | None = None
        if real_replica:  # same search_path: the standby has the scratch schema once it replayed it
            replica = engine_for(real_replica, connect_args)
            require_standby(replica, health)
        else:
            copy_url, copy_args = await stack.enter_async_context(scratch_url())
            replica = engine_for(copy_url, copy_args)
            replica_writer = engine_for(copy_url, copy_args)  # the demo's "replication" connection
            stack.push_async_callback(replica_writer.dispose)
        stack.push_async_callback(replica.dispose)
        make_read_only(replica)
        backend = primary.dialect.name
        mode = "streaming standby" if real_replica else "copied namespace (demo)"
        for engine in (primary, replica_writer):
            if engine is not None:
                async with engine.begin() as conn:
                    await conn.run_sync(Base.metadata.create_all, tables=TABLES)
        sessions = create_routing_sessionmaker(primary, replica, health=health)

        # 1. A write transaction: the INSERTs and the read after them run on the primary.
        with count_queries(primary) as on_primary, count_queries(replica) as on_replica:
            async with sessions() as session:
                async with session.begin():
                    session.add(User(email="ada@example.com", name="Ada"))
                    await session.flush()
                    ada = await session.scalar(select(User).where(User.email == "ada@example.com"))
                mark = await mark_write(session)  # after the commit; the client keeps it
        if ada is None or len(on_replica) != 0 or len(on_primary) < 2:
            raise AssertionError(f"write transaction: primary {on_primary.statements} replica {on_replica.statements}")
        print(
            f"{backend}, replica = {mode}: write + read-after-write -> {len(on_primary)} statements on the"
            " primary, 0 on the replica"
        )

        # 2. Read-your-writes: the next session of this client must see Ada.
        async with sessions() as session:
            naive = await session.scalar(select(User).where(User.email == "ada@example.com"))
        async with sessions() as session:
            where = await prepare_reads(session, mark, replay_timeout=0.2 if replica_writer else 5.0)
            fresh = await session.scalar(select(User).where(User.email == "ada@example.com"))
        if fresh is None or (replica_writer is not None and (naive is not None or where != "primary")):
            raise AssertionError(f"read-your-writes: naive={naive} prepared={fresh} via {where}")
        print(
            f"next session: plain replica read -> {'Ada' if naive else 'None (lag)'}; "
            f"after prepare_reads(mark) -> Ada, read on the {where}"
        )

        # 3. Once replicated, plain reads (and their eager loads) come from the replica.
        async with sessions() as session:
            async with session.begin():
                session.add(Post(author_id=ada.id, title="Replicas"))
            mark = await mark_write(session)
        if replica_writer is not None:
            await replicate(primary, replica_writer)
        elif mark.lsn is None or not await wait_for_replay(replica, mark.lsn, timeout=30):
            raise AssertionError("the standby did not replay the write within 30 s")
        with count_queries(primary) as on_primary, count_queries(replica) as on_replica:
            async with sessions() as session:
                users = (await session.scalars(select(User).options(selectinload(User.posts)))).all()
        if [(u.name, [p.title for p in u.posts]) for u in users] != [("Ada", ["Replicas"])]:
            raise AssertionError(f"replica read returned {users}")
        if len(on_primary) != 0 or len(on_replica.selects()) != 2:
            raise AssertionError(f"read: primary {on_primary.statements} replica {on_replica.statements}")
        print("replicated: SELECT users + selectinload posts -> 2 statements on the replica, 0 on the primary")

        # 4. The replica refuses writes: a write that bypassed the routing fails loudly.
        try:
            async with replica.begin() as conn:
                await conn.execute(insert(User.__table__).values(id=ada.id, email="x@example.com", name="x"))
        except DBAPIError as exc:
            print(f"write sent to the replica: {type(exc.orig).__name__}: {str(exc.orig).splitlines()[0][:90]}")
        else:
            raise AssertionError("the replica accepted a write")
    print("read_replica: ok")


if __name__ == "__main__":
    asyncio.run(main())

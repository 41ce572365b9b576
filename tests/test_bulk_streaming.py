"""examples/bulk_operations.py and examples/streaming.py on every backend.

Statement counts come from engine events (templates.query_counter). Every test works in a session
that is rolled back at the end (the COPY test, which commits on purpose, deletes its rows), and
uses its own sku prefix / event kind, so nothing leaks into other tests on the shared engine.
"""

from __future__ import annotations

import random
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio.exc import AsyncMethodRequired

from examples import bulk_operations as bo
from examples import streaming as st
from templates.base_model import Base, utcnow
from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker
from templates.models import User
from templates.query_counter import count_queries


@pytest.fixture(scope="module")
async def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)  # checkfirst: other modules' tables are kept
    return create_sessionmaker(engine)


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as s:
        await s.connection()  # BEGIN now, so counted blocks see only their own statements
        yield s
        await s.rollback()


def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


def dml(queries: list[str]) -> list[str]:
    return [q for q in queries if q.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE"))]


# --- bulk ------------------------------------------------------------------------------------


async def test_bulk_insert_is_one_executemany(session: AsyncSession) -> None:
    p = prefix()
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        await bo.bulk_insert(session, bo.products(p, 3000))
    assert len(queries) == 1 and queries.statements[0].startswith("INSERT INTO bulk_products")
    assert await bo.count_like(session, p) == 3000
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        await bo.bulk_insert(session, [])
    assert len(queries) == 0
    # Python-side column defaults still apply per row (qty has default=0)
    await bo.bulk_insert(session, [{"sku": f"{p}-d{i}", "name": "d"} for i in range(3)])
    qtys = await session.scalars(select(bo.BulkProduct.qty).where(bo.BulkProduct.sku.startswith(f"{p}-d")))
    assert list(qtys) == [0, 0, 0]


@pytest.mark.parametrize("use_returning", [None, False], ids=["returning", "fallback"])
async def test_insert_returns_objects_in_input_order(session: AsyncSession, use_returning: bool | None) -> None:
    p = prefix()
    rows = bo.products(p, 1500)
    random.Random(7).shuffle(rows)  # input order != sku order != id order
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        made = await bo.bulk_insert_returning(session, rows, use_returning=use_returning)
    assert [m.sku for m in made] == [r["sku"] for r in rows]
    assert len({m.id for m in made}) == 1500 and all(m in session for m in made)
    assert await bo.count_like(session, p) == 1500
    dialect = session.bind.dialect  # type: ignore[union-attr]
    if use_returning is None:
        assert dialect.insert_executemany_returning  # true on all three test backends
        # 1000 rows per statement, except SQLite + autoincrement integer key: one row per statement
        assert len(queries) == (1500 if dialect.name == "sqlite" else 2)
        assert all("RETURNING" in q.upper() for q in queries.statements)
    else:
        assert len(dml(queries.statements)) == 1 and len(queries.selects()) == 2  # IN lists of <= 1000


async def test_bulk_update_by_primary_key(session: AsyncSession) -> None:
    p = prefix()
    made = await bo.bulk_insert_returning(session, bo.products(p, 1200))
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        await bo.bulk_update_by_pk(session, [{"id": m.id, "qty": 10 + i} for i, m in enumerate(made)])
    assert len(queries) == 1 and queries.statements[0].startswith("UPDATE bulk_products")
    got = dict((await session.execute(select(bo.BulkProduct.id, bo.BulkProduct.qty).where(
        bo.BulkProduct.sku.startswith(p)))).all())  # fmt: skip
    assert got == {m.id: 10 + i for i, m in enumerate(made)}
    # objects of those keys already in the session get the new values without a query
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        assert [m.qty for m in made[:3]] == [10, 11, 12]
    assert len(queries) == 0


async def test_upsert_inserts_updates_and_collapses_duplicates(session: AsyncSession) -> None:
    p = prefix()
    await bo.bulk_insert(session, bo.products(p, 4, qty=1))
    incoming = [
        {"sku": f"{p}-000001", "name": "ignored on update", "qty": 5},
        {"sku": f"{p}-000003", "name": "ignored on update", "qty": 6},
        {"sku": f"{p}-000009", "name": "first", "qty": 7},
        {"sku": f"{p}-000009", "name": "second", "qty": 8},  # same key twice: last wins
    ]
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        sent = await bo.upsert_products(session, incoming, update_columns=["qty"])
    assert sent == 3 and len(queries) == 1
    rows = await session.execute(
        select(bo.BulkProduct.sku, bo.BulkProduct.name, bo.BulkProduct.qty)
        .where(bo.BulkProduct.sku.startswith(p))
        .order_by(bo.BulkProduct.sku)
    )
    assert [tuple(r) for r in rows] == [
        (f"{p}-000000", f"{p} item 0", 1),
        (f"{p}-000001", f"{p} item 1", 5),
        (f"{p}-000002", f"{p} item 2", 1),
        (f"{p}-000003", f"{p} item 3", 6),
        (f"{p}-000009", "second", 8),
    ]
    assert await bo.upsert_products(session, [], ["qty"]) == 0


async def test_upsert_on_other_unique_key_differs_by_backend(session: AsyncSession) -> None:
    """MySQL's ON DUPLICATE KEY UPDATE fires on ANY unique key; ON CONFLICT (sku) only on sku."""
    p = prefix()
    (existing,) = await bo.bulk_insert_returning(session, [{"sku": f"{p}-a", "name": "a", "qty": 1}])
    clash = [{"id": existing.id, "sku": f"{p}-b", "name": "b", "qty": 2}]  # new sku, taken id
    name = session.bind.dialect.name  # type: ignore[union-attr]
    if name in ("mysql", "mariadb"):
        await bo.upsert_products(session, clash, ["qty"])
        rows = (await session.execute(select(bo.BulkProduct.sku, bo.BulkProduct.qty).where(
            bo.BulkProduct.sku.startswith(p)))).all()  # fmt: skip
        assert [tuple(r) for r in rows] == [(f"{p}-a", 2)]  # the row with that id was updated
    else:
        with pytest.raises(IntegrityError):
            async with session.begin_nested():  # the savepoint is rolled back, the session lives on
                await bo.upsert_products(session, clash, ["qty"])
        assert await bo.count_like(session, p) == 1


async def test_upsert_does_not_run_python_onupdate(session: AsyncSession) -> None:
    """The upsert's UPDATE branch sets only what ``set_`` / the update dict names: a Python-side
    ``onupdate`` (TimestampMixin.updated_at) is not applied. Name the column to move it."""
    email = f"{prefix()}@example.com"
    old = utcnow() - timedelta(days=1)
    await session.execute(insert(User), [{"email": email, "name": "before", "created_at": old, "updated_at": old}])
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    await session.execute(bo.upsert_statement(dialect, User, "email", ["name"]), [{"email": email, "name": "after"}])
    row = (await session.execute(select(User.name, User.updated_at).where(User.email == email))).one()
    assert row.name == "after" and row.updated_at == old  # onupdate=utcnow did not run
    now = utcnow()
    stmt = bo.upsert_statement(dialect, User, "email", ["name", "updated_at"])
    await session.execute(stmt, [{"email": email, "name": "again", "updated_at": now}])
    row = (await session.execute(select(User.name, User.updated_at).where(User.email == email))).one()
    assert row.name == "again" and row.updated_at == now


async def test_values_list_is_one_giant_statement(session: AsyncSession) -> None:
    p = prefix()
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        await bo.insert_with_values_list(session, bo.products(p, 20))
    assert len(queries) == 1 and queries.statements[0].count("),") == 19
    if session.bind.dialect.driver == "asyncpg":  # type: ignore[union-attr]
        rows = bo.products(prefix(), 11_000)  # 3 columns -> 33000 bind parameters
        with pytest.raises(DBAPIError, match="32767"):
            await session.execute(insert(bo.BulkProduct).values(rows))
        await session.rollback()
        await bo.bulk_insert(session, rows)  # the executemany path takes the same rows


async def test_upsert_values_list_with_repeated_key(session: AsyncSession) -> None:
    """Why upsert_products de-duplicates: one PostgreSQL statement cannot update a row twice."""
    p = prefix()
    name = session.bind.dialect.name  # type: ignore[union-attr]
    stmt = bo.upsert_statement(name, bo.BulkProduct, "sku", ["qty"])
    twice = [{"sku": f"{p}-x", "name": "x", "qty": 1}, {"sku": f"{p}-x", "name": "x", "qty": 2}]
    if name == "postgresql":
        with pytest.raises(DBAPIError, match="cannot affect row a second time"):
            await session.execute(stmt.values(twice))
    else:  # SQLite and MariaDB apply the rows one after another: the last one wins
        await session.execute(stmt.values(twice))
        assert await session.scalar(select(bo.BulkProduct.qty).where(bo.BulkProduct.sku == f"{p}-x")) == 2


async def test_load_products_picks_the_fast_path(session: AsyncSession) -> None:
    p = prefix()
    how = await bo.load_products(session, bo.products(p, 20_000))
    driver = session.bind.dialect.driver  # type: ignore[union-attr]
    assert how == ("COPY" if driver == "asyncpg" else "executemany")
    assert await bo.count_like(session, p) == 20_000


@pytest.mark.only_backends("postgresql")  # COPY through asyncpg is PostgreSQL-only
async def test_copy_joins_the_transaction_only_once_it_has_begun(
    sessions: async_sessionmaker[AsyncSession], backend: str
) -> None:
    p = prefix()
    async with sessions() as session:
        assert await bo.copy_products(session, [(f"{p}-{i}", "c", i) for i in range(5000)]) == 5000
        assert await bo.count_like(session, p) == 5000
        await session.rollback()
        assert await bo.count_like(session, p) == 0

    # The trap copy_products avoids: SQLAlchemy's asyncpg adapter sends BEGIN lazily, so a COPY
    # sent before any statement runs in autocommit and survives the rollback.
    early = prefix()
    try:
        async with sessions() as session:
            conn = await session.connection()
            driver = (await conn.get_raw_connection()).driver_connection
            assert not driver.is_in_transaction()
            await driver.copy_records_to_table(
                "bulk_products", records=[(f"{early}-0", "e", 0)], columns=["sku", "name", "qty"]
            )
            await session.rollback()
            assert await bo.count_like(session, early) == 1
    finally:
        async with sessions() as session, session.begin():
            await session.execute(delete(bo.BulkProduct).where(bo.BulkProduct.sku.startswith(early)))


# --- streaming -------------------------------------------------------------------------------


async def add_events(session: AsyncSession, kind: str, n: int) -> None:
    rows = [{"kind": kind, "payload": f"{kind} {i:06d} " + "y" * 40} for i in range(n)]
    await session.execute(insert(st.StreamEvent), rows)


async def test_stream_partitions_in_batches(session: AsyncSession) -> None:
    kind = prefix()
    await add_events(session, kind, 2500)
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        rows, chars, sizes = await st.export_sizes(session, 1000)
    assert (rows, sizes) == (2500, [1000, 1000, 500])
    assert chars == await session.scalar(select(func.sum(func.length(st.StreamEvent.payload))))
    assert len(queries.selects()) == 1  # one statement, fetched in batches
    assert await st.payload_chars_of_kind(session, kind, 10**9, 300) == (2500, chars)


async def test_streaming_peak_memory_is_a_fraction_of_buffered(session: AsyncSession) -> None:
    await add_events(session, prefix(), 20_000)
    (rows, _, _), streamed = await st.traced_peak(lambda: st.export_sizes(session, 500))
    session.expunge_all()
    (rows_all, _), buffered = await st.traced_peak(lambda: st.export_sizes_buffered(session))
    assert rows == rows_all >= 20_000
    assert streamed * 5 < buffered, (streamed, buffered)


async def test_execute_and_scalars_refuse_yield_per(session: AsyncSession) -> None:
    stmt = select(st.StreamEvent).execution_options(yield_per=100)
    with pytest.raises(AsyncMethodRequired):
        await session.execute(stmt)
    with pytest.raises(AsyncMethodRequired):
        await session.scalars(stmt)
    with pytest.raises(AsyncMethodRequired):  # asking for the server-side cursor directly: same
        await session.execute(select(st.StreamEvent).execution_options(stream_results=True))


async def test_query_on_same_session_during_stream(session: AsyncSession) -> None:
    """aiomysql: a second query silently ends an open stream; other drivers keep streaming."""
    kind = prefix()
    await add_events(session, kind, 3000)
    stmt = select(st.StreamEvent).where(st.StreamEvent.kind == kind).execution_options(yield_per=500)
    result = await session.stream(stmt)
    seen = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            async for partition in result.scalars().partitions():
                seen += len(partition)
                if seen == 500:
                    assert await session.scalar(select(func.count()).where(st.StreamEvent.kind == kind)) == 3000
        finally:
            await result.close()
    if session.bind.dialect.driver == "aiomysql":  # type: ignore[union-attr]
        assert seen == 500  # 2500 rows lost without an exception
        assert any("unbuffered result was left incomplete" in str(w.message) for w in caught)
    else:
        assert seen == 3000


async def test_early_stop_with_aclosing_releases_the_cursor(session: AsyncSession) -> None:
    kind = prefix()
    await add_events(session, kind, 3000)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with aclosing(st.stream_partitions(session, 500)) as partitions:
            async for first in partitions:
                assert len(first) == 500
                break
        # the cursor is closed: the session runs the next query normally
        assert await session.scalar(select(func.count()).where(st.StreamEvent.kind == kind)) == 3000
    assert not [w for w in caught if "unbuffered" in str(w.message)]


@pytest.mark.only_backends("mysql")  # needs the MariaDB server
async def test_upsert_with_a_mariadb_url(db_url: tuple[URL, dict[str, Any]], backend: str) -> None:
    """``mariadb+aiomysql://`` names the dialect "mariadb" (``mysql+aiomysql://`` says "mysql")."""
    url, connect_args = db_url
    mariadb_url = url.set(drivername="mariadb+aiomysql").render_as_string(hide_password=False)
    engine = create_db_engine(DatabaseSettings(url=mariadb_url, connect_args=connect_args))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        assert engine.dialect.name == "mariadb"
        async with create_sessionmaker(engine)() as session:
            p = prefix()
            await bo.upsert_products(session, bo.products(p, 3, qty=1), ["qty"])
            await bo.upsert_products(session, bo.products(p, 4, qty=2), ["qty"])
            qtys = await session.scalars(select(bo.BulkProduct.qty).where(bo.BulkProduct.sku.startswith(p)))
            assert sorted(qtys) == [2, 2, 2, 2]
            await session.rollback()
    finally:
        await engine.dispose()

"""Bulk writes with the async ORM: many rows per statement, not one round trip per object.

Shows:
- ``session.execute(insert(Model), rows)``: a list of dicts goes out as ONE executemany
  (counted with ``templates.query_counter``), instead of N ``session.add()`` INSERTs;
- ``insert(Model).returning(Model, sort_by_parameter_order=True)``: ORM objects back, in input
  order, in batches of 1000 ("insertmanyvalues") where the dialect supports it, with a fallback
  (insert, then SELECT by natural key) for MySQL, which has no RETURNING;
- bulk UPDATE by primary key: ``session.execute(update(Model), [{"id": ..., "qty": ...}, ...])``;
- upsert with one helper for PostgreSQL / SQLite (``ON CONFLICT DO UPDATE``) and MySQL /
  MariaDB (``ON DUPLICATE KEY UPDATE``);
- PostgreSQL + asyncpg: binary COPY through the driver connection, inside the session's
  transaction, for the largest loads;
- the contrast: ``insert(Model).values(list_of_dicts)`` renders one statement with a bind
  parameter per value; it hits asyncpg's 32767-parameter limit. Not the bulk path.

Use when: importing or syncing thousands of rows, nightly loads, "create if missing else update".
Run: ``python examples/bulk_operations.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import String, func, insert, select, text, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.dml import Insert

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.query_counter import count_queries
from templates.scratch import scratch_engine


class BulkProduct(Base):
    __tablename__ = "bulk_products"

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(40), unique=True)  # the natural key upserts match on
    name: Mapped[str] = mapped_column(String(100))
    qty: Mapped[int] = mapped_column(default=0)


Row = Mapping[str, Any]


async def bulk_insert(session: AsyncSession, rows: Sequence[Row]) -> None:
    """All rows in one executemany; no ORM objects are created (fastest ORM-level path)."""
    if rows:
        await session.execute(insert(BulkProduct), list(rows))


async def bulk_insert_returning(
    session: AsyncSession, rows: Sequence[Row], *, use_returning: bool | None = None
) -> list[BulkProduct]:
    """Insert and get the ORM objects back, ``result[i]`` made from ``rows[i]``.

    With RETURNING (PostgreSQL, SQLite >= 3.35, MariaDB >= 10.5) rows go in batches of
    ``insertmanyvalues_page_size`` (1000). ``sort_by_parameter_order=True`` guarantees the order;
    on SQLite with an autoincrement integer key SQLAlchemy can only guarantee it one row per
    statement (client-generated keys such as UUIDs batch fine). Without RETURNING (MySQL) the
    objects are loaded afterwards by their unique natural key.
    """
    if not rows:
        return []
    dialect = (await session.connection()).dialect
    if use_returning is None:
        use_returning = dialect.insert_executemany_returning
    if use_returning:
        stmt = insert(BulkProduct).returning(BulkProduct, sort_by_parameter_order=True)
        return list((await session.scalars(stmt, list(rows))).all())
    await session.execute(insert(BulkProduct), list(rows))
    skus = [row["sku"] for row in rows]
    by_sku: dict[str, BulkProduct] = {}
    for start in range(0, len(skus), 1000):  # bounded IN lists
        found = await session.scalars(select(BulkProduct).where(BulkProduct.sku.in_(skus[start : start + 1000])))
        by_sku.update((p.sku, p) for p in found)
    return [by_sku[sku] for sku in skus]


async def bulk_update_by_pk(session: AsyncSession, changes: Sequence[Row]) -> None:
    """Each dict holds the primary key plus the columns to SET: one executemany UPDATE.

    Dicts with different key sets are grouped into separate batches. Objects with these keys that
    are already in the session receive the new values in place (no extra query).
    """
    if changes:
        await session.execute(update(BulkProduct), list(changes))


def upsert_statement(dialect_name: str, model: type[Base], key: str, update_columns: Iterable[str]) -> Insert:
    """INSERT that updates ``update_columns`` when a row with the same unique ``key`` exists.

    MySQL/MariaDB's ON DUPLICATE KEY UPDATE fires on ANY unique index (primary key included);
    it cannot be pointed at ``key``. PostgreSQL/SQLite need a unique index on exactly ``key``.
    """
    columns = list(update_columns)
    if dialect_name in ("postgresql", "sqlite"):
        dialect_insert = postgresql.insert if dialect_name == "postgresql" else sqlite.insert
        pg_stmt = dialect_insert(model)
        return pg_stmt.on_conflict_do_update(index_elements=[key], set_={c: pg_stmt.excluded[c] for c in columns})
    if dialect_name in ("mysql", "mariadb"):
        my_stmt = mysql.insert(model)
        return my_stmt.on_duplicate_key_update({c: my_stmt.inserted[c] for c in columns})
    raise NotImplementedError(f"no upsert for dialect {dialect_name!r}")


async def upsert_products(session: AsyncSession, rows: Sequence[Row], update_columns: Iterable[str]) -> int:
    """Create missing products, update ``update_columns`` of existing ones (matched on sku).

    Duplicate skus in one call are collapsed (last wins) first: a single PostgreSQL INSERT that
    hits the same row twice fails with "ON CONFLICT DO UPDATE command cannot affect row a second
    time". Returns the number of distinct rows sent.
    """
    unique = list({row["sku"]: row for row in rows}.values())
    if unique:
        dialect = (await session.connection()).dialect
        await session.execute(upsert_statement(dialect.name, BulkProduct, "sku", update_columns), unique)
    return len(unique)


async def copy_products(session: AsyncSession, records: Iterable[tuple[str, str, int]]) -> int:
    """PostgreSQL + asyncpg: binary COPY of (sku, name, qty) tuples; returns the row count.

    COPY bypasses SQLAlchemy: Python-side defaults, type decorators and ORM events do not run,
    so give every NOT NULL column a value of the right Python type. It runs on the session's
    connection and joins its transaction, but only once SQLAlchemy has really started it:
    the asyncpg adapter sends BEGIN lazily with the first statement; a COPY sent before that
    commits on its own and survives a rollback. Hence the SELECT before the COPY.
    """
    conn = await session.connection()
    if conn.dialect.driver != "asyncpg":
        raise NotImplementedError("copy_products needs postgresql+asyncpg")
    schema = await conn.scalar(text("SELECT current_schema()"))  # also opens the transaction
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection  # the asyncpg.Connection under SQLAlchemy's adapter
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("COPY would run outside the session's transaction")
    status = await driver.copy_records_to_table(
        BulkProduct.__tablename__, records=records, columns=["sku", "name", "qty"], schema_name=schema
    )
    return int(status.split()[-1])  # "COPY 50000"


async def load_products(session: AsyncSession, rows: Sequence[Row]) -> str:
    """The fastest load for the backend: COPY on asyncpg, executemany elsewhere."""
    if (await session.connection()).dialect.driver == "asyncpg":
        await copy_products(session, ((r["sku"], r["name"], r["qty"]) for r in rows))
        return "COPY"
    await bulk_insert(session, rows)
    return "executemany"


async def insert_with_values_list(session: AsyncSession, rows: Sequence[Row]) -> None:
    """NOT the bulk path: one statement with len(rows) * len(columns) bind parameters.

    The SQL text grows with the row count and is compiled on every call (the statement cache
    skips multi-row VALUES: echo logs show ``[no key]``). asyncpg refuses more than 32767 parameters;
    SQLite's limit is a build option (32766 by default since 3.32); MySQL drivers inline the
    values client-side, bounded by ``max_allowed_packet``. Use ``execute(insert(M), rows)``.
    """
    await session.execute(insert(BulkProduct).values(list(rows)))


def products(prefix: str, n: int, qty: int = 1) -> list[dict[str, Any]]:
    return [{"sku": f"{prefix}-{i:06d}", "name": f"{prefix} item {i}", "qty": qty} for i in range(n)]


async def count_like(session: AsyncSession, prefix: str) -> int:
    stmt = select(func.count()).select_from(BulkProduct).where(BulkProduct.sku.startswith(f"{prefix}-"))
    return int(await session.scalar(stmt) or 0)


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        dialect = engine.dialect
        print(f"{dialect.name}: insert_executemany_returning={dialect.insert_executemany_returning}")

        async with sessionmaker() as session, session.begin():
            await session.connection()  # BEGIN goes out here, so the counts below are the DML alone
            with count_queries(engine) as queries:
                await bulk_insert(session, products("plain", 5000))
            assert len(queries) == 1, queries.statements  # one executemany, not 5000 INSERTs
            assert await count_like(session, "plain") == 5000
            print(f"insert(Model) + 5000 dicts: {len(queries)} statement")

            rows = products("ret", 2500)
            with count_queries(engine) as queries:
                made = await bulk_insert_returning(session, rows)
            if [p.sku for p in made] != [r["sku"] for r in rows] or any(p.id is None for p in made):
                raise AssertionError("returned objects do not match the input rows")
            # batches of 1000 where RETURNING can be ordered; SQLite + integer autoincrement key
            # can only guarantee the order one row per statement
            want = 2500 if dialect.name == "sqlite" else 3
            if dialect.insert_executemany_returning and len(queries) != want:
                raise AssertionError(f"expected {want} INSERT ... RETURNING statements, saw {len(queries)}")
            note = " (SQLite + integer key: one per row to keep the order)" if dialect.name == "sqlite" else ""
            print(
                f"insert(Model).returning(Model) for 2500 rows: {len(made)} objects in input order, "
                f"{len(queries)} statements{note}"
            )

            with count_queries(engine) as queries:
                await bulk_update_by_pk(session, [{"id": p.id, "qty": i} for i, p in enumerate(made)])
            assert len(queries) == 1, queries.statements
            total = await session.scalar(select(func.sum(BulkProduct.qty)).where(BulkProduct.sku.startswith("ret-")))
            assert total == sum(range(2500)), total
            print(f"update(Model) + 2500 dicts keyed by id: {len(queries)} statement")

        async with sessionmaker() as session, session.begin():
            await session.connection()
            incoming = (
                products("plain", 3, qty=50)
                + products("new", 2, qty=7)
                + [
                    {"sku": "new-000001", "name": "renamed?", "qty": 8}  # same sku twice: last wins
                ]
            )
            with count_queries(engine) as queries:
                sent = await upsert_products(session, incoming, update_columns=["qty"])
            assert sent == 5 and len(queries) == 1, (sent, queries.statements)
            skus = ["plain-000000", "plain-000002", "plain-000003", "new-000000", "new-000001"]
            result = await session.execute(select(BulkProduct.sku, BulkProduct.qty).where(BulkProduct.sku.in_(skus)))
            got = {sku: qty for sku, qty in result.all()}
            want_qty = {"plain-000000": 50, "plain-000002": 50, "plain-000003": 1, "new-000000": 7, "new-000001": 8}
            assert got == want_qty, got
            renamed = await session.scalar(select(BulkProduct.name).where(BulkProduct.sku == "new-000001"))
            assert renamed == "renamed?", renamed  # a NEW row takes every column from the input
            print(f"upsert: 3 updated (qty only), 2 inserted, in {len(queries)} statement")

        async with sessionmaker() as session, session.begin():
            how = await load_products(session, products("load", 50_000))
            assert await count_like(session, "load") == 50_000
            print(f"50000 rows loaded with {how}")

        async with sessionmaker() as session:
            if dialect.driver == "asyncpg":
                await copy_products(session, [("rolled-000000", "x", 1)])
                await session.rollback()
                assert await count_like(session, "rolled") == 0  # COPY was inside the transaction
                print("COPY joined the session transaction: rollback removed its rows")

            small = products("values", 20)
            await session.connection()
            with count_queries(engine) as queries:
                await insert_with_values_list(session, small)
            assert len(queries) == 1 and queries.statements[0].count("),") == 19  # one giant VALUES list
            too_many = products("big", 11_000)  # 33000 parameters
            try:
                await insert_with_values_list(session, too_many)
            except DBAPIError as exc:
                await session.rollback()
                assert dialect.driver == "asyncpg" and "32767" in str(exc), exc
                print("insert().values(11000 rows) failed on asyncpg: over 32767 bind parameters")
            else:
                await session.rollback()
                print(f"insert().values(11000 rows) passed on {dialect.driver} (limit is driver/build specific)")
                assert dialect.driver != "asyncpg"
            await bulk_insert(session, too_many)  # the bulk path takes the same rows
            assert await count_like(session, "big") == 11_000
            await session.commit()
    print("bulk_operations: ok")


if __name__ == "__main__":
    asyncio.run(main())

"""Upsert the supplier feed into the products table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, case, func, or_
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import Insert

from .models import Product

FEED_COLUMNS = ("name", "price", "description")


def changed(new_values: Any) -> ColumnElement[bool]:
    """True when any feed column differs from the stored row (NULL-safe: NULL -> text counts)."""
    table = Product.__table__
    return or_(*(table.c[column].is_distinct_from(new_values[column]) for column in FEED_COLUMNS))


def upsert_statement(dialect: str) -> Insert:
    """An upsert on sku that sets updated_at only for rows whose feed columns changed.

    An upsert's UPDATE branch never runs the column's Python-side ``onupdate``, so updated_at is
    set here explicitly.
    """
    table = Product.__table__
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(table)
        # Unchanged rows match no WHERE: they are not updated at all and keep updated_at.
        return stmt.on_conflict_do_update(
            index_elements=[table.c.sku],
            set_={**{column: stmt.excluded[column] for column in FEED_COLUMNS}, "updated_at": func.now()},
            where=changed(stmt.excluded),
        )
    if dialect == "mysql":
        stmt = mysql.insert(table)
        # MySQL/MariaDB apply ON DUPLICATE KEY UPDATE assignments left to right, and a later
        # assignment sees the columns already assigned: compare before overwriting, so
        # updated_at comes first.
        return stmt.on_duplicate_key_update([
            ("updated_at", case((changed(stmt.inserted), func.now()), else_=table.c.updated_at)),
            *((column, stmt.inserted[column]) for column in FEED_COLUMNS),
        ])
    raise NotImplementedError(f"no upsert for {dialect}")


async def sync_products(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new SKUs and update existing ones, in one statement per batch.

    ``rows`` are dicts with sku, name, price and description. The caller commits.
    """
    if not rows:
        return
    dialect = (await session.connection()).dialect.name
    await session.execute(upsert_statement(dialect), list(rows))

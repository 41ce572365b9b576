# DELIBERATELY WRONG example for the evals (naive/ of upsert-updated-at): never copy it.
"""Upsert the supplier feed into the products table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, or_
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Product

FEED_COLUMNS = ("name", "price", "description")


async def sync_products(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new SKUs and update existing ones, in one statement per batch.

    ``rows`` are dicts with sku, name, price and description. The caller commits.
    Upserts bypass the ORM's ``onupdate``, so updated_at is set explicitly, and only when a
    feed column actually changed (IS DISTINCT FROM, so NULL <-> value counts as a change).
    """
    if not rows:
        return
    table = Product.__table__
    dialect = (await session.connection()).dialect.name
    if dialect in ("postgresql", "sqlite"):
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.sku],
            set_={**{column: stmt.excluded[column] for column in FEED_COLUMNS}, "updated_at": func.now()},
            where=or_(*(table.c[column].is_distinct_from(stmt.excluded[column]) for column in FEED_COLUMNS)),
        )
    elif dialect == "mysql":
        stmt = mysql.insert(table)
        changed = or_(*(table.c[column].is_distinct_from(stmt.inserted[column]) for column in FEED_COLUMNS))
        stmt = stmt.on_duplicate_key_update({
            **{column: stmt.inserted[column] for column in FEED_COLUMNS},
            "updated_at": case((changed, func.now()), else_=table.c.updated_at),
        })
    else:
        raise NotImplementedError(f"no upsert for {dialect}")
    await session.execute(stmt, list(rows))

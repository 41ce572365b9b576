# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases for text_with_fstring (read, never run): which ``text`` is SQL, and
which interpolations are values. Marked lines must be reported; every other line must not."""
# expect-static: text_with_fstring

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession

from app.html import text  # an HTML builder that happens to be called `text`: not SQL

MIGRATIONS_WHERE = "deleted_at IS NULL"


def badge(user_name: str) -> str:
    return text(f"<b>{user_name}</b>")  # false-positive guard: not sqlalchemy.text


async def find_by_email(session: AsyncSession, email: str) -> int | None:
    return await session.scalar(sa.text(f"SELECT id FROM users WHERE email = '{email}'"))  # static: text_with_fstring


async def orders_of(session: AsyncSession, user_id: int) -> list[int]:
    query = "SELECT id FROM orders WHERE user_id = %s" % user_id
    return list(await session.scalars(sql_text(query)))  # static: text_with_fstring


async def search(session: AsyncSession, term: str) -> list[int]:
    return list(await session.scalars(sql_text("SELECT id FROM posts WHERE title LIKE '%{}%'".format(term))))  # static: text_with_fstring


async def clear_tables(session: AsyncSession, table_names: list[str]) -> None:
    for table in table_names:  # identifiers cannot be bound parameters
        await session.execute(sa.text(f'DELETE FROM "{table}"'))
    await session.execute(sa.text(f"SELECT count(*) FROM orders WHERE {MIGRATIONS_WHERE}"))


async def count_where(session: AsyncSession, where_clause: str) -> int:
    return await session.scalar(sql_text(f"SELECT count(*) FROM organizations o WHERE {where_clause}"), {"s": 1})

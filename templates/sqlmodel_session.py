"""Async sessions for SQLModel apps, on top of ``database.py`` and ``repository.py``.

Copy next to ``database.py``, ``base_model.py`` and ``repository.py``. SQLModel's ``table=True``
models are SQLAlchemy mapped classes, so the engine factory, lifespan, ``get_session``/``SessionDep``
and error handlers of ``fastapi_integration.py`` work unchanged. What this file adds:

- ``create_sqlmodel_sessionmaker(engine)``: sessions of SQLModel's ``AsyncSession`` (the one with
  ``exec()``), with ``expire_on_commit=False`` like every sessionmaker in this skill.
- ``exec_page(session, Model, ...)``: ``Repository.page`` run through ``session.exec``. On SQLModel's
  session, ``execute()`` - and ``scalars()``, which calls it - emit a DeprecationWarning on every
  call, so code that uses SQLModel's session should not go through them (``Repository`` does).

Needs sqlmodel (``pip install sqlmodel``); nothing else in the templates imports it. No FastAPI here:
``examples/sqlmodel_app.py`` shows the wiring.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.sql.base import ExecutableOption
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from .database import create_sessionmaker
from .repository import MAX_PAGE_SIZE, Page, Repository

TableT = TypeVar("TableT", bound=SQLModel)


def create_sqlmodel_sessionmaker(engine: AsyncEngine, **options: Any) -> async_sessionmaker[AsyncSession]:
    """``async_sessionmaker`` of SQLModel's ``AsyncSession`` (``session.exec()``), ``expire_on_commit=False``."""
    return create_sessionmaker(engine, class_=AsyncSession, **options)  # type: ignore[return-value]


async def exec_page(
    session: AsyncSession,
    model: type[TableT],
    *,
    limit: int = 50,
    cursor: str | None = None,
    where: Iterable[ColumnElement[bool]] = (),
    options: Iterable[ExecutableOption] = (),
    include_deleted: bool = False,
) -> Page[TableT]:
    """One keyset page of ``model`` rows, as ``Repository(session, model).page(...)`` returns it.

    Same order, cursor format, soft-delete filter and ``InvalidCursor`` on a bad cursor; one SELECT
    plus one per ``selectinload`` option, whatever the page size.
    """
    keyset: Repository[Any] = Repository(session, model)  # only its keyset and cursor helpers run here
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    stmt = (
        select(model, *keyset.keys)
        .where(*where, *keyset.live(include_deleted))
        .order_by(*(key.desc() if keyset.descending else key.asc() for key in keyset.keys))
        .limit(limit + 1)  # one extra row tells whether another page exists
        .options(*options)
    )
    if cursor is not None:
        stmt = stmt.where(keyset.after(keyset.decode_cursor(cursor)))
    rows = (await session.exec(stmt)).all()  # type: ignore[call-overload]  # sqlmodel types only 1-entity selects
    items = [row[0] for row in rows[:limit]]
    next_cursor = keyset.encode_cursor(tuple(rows[limit - 1][1:])) if len(rows) > limit else None
    return Page(items=items, next_cursor=next_cursor)

"""A small generic async repository: get, keyset-paginated list, count, create, update, soft delete.

Copy into your project (e.g. ``app/db/repository.py``) next to ``base_model.py``.

    users = Repository(session, User)
    page = await users.page(limit=50, cursor=request_cursor, options=[selectinload(User.posts)])
    page.items, page.next_cursor        # pass next_cursor back to get the following page

Design choices:
- The repository never commits: the caller (``SessionDep`` in FastAPI, or a ``session.begin()``
  block) owns the transaction. ``create``/``update`` flush, so database errors such as an
  ``IntegrityError`` on a unique column surface at that call, inside the endpoint.
- Models with a ``deleted_at`` column (``SoftDeleteMixin``) hide soft-deleted rows from ``get``,
  ``page`` and ``count`` unless ``include_deleted=True``.
- ``page`` lists by keyset (``WHERE (created_at, id) > (last seen)``), not ``OFFSET``: each page
  costs the same however deep it is, and rows inserted meanwhile do not shift or repeat items.
  The cursor is opaque to clients (URL-safe base64 of JSON); a malformed one raises
  ``InvalidCursor`` (a ``ValueError``) - map it to HTTP 422, never 500.
- Cursor values are selected as columns next to the entity, so they are what the database holds
  (a column with less precision than Python's datetime would differ), not what an object already in
  the session says. The primary key closes the keyset, so rows with equal ``created_at`` (bulk
  inserts, server clocks) are neither skipped nor repeated.
- Relationships are loaded only through ``options`` (``selectinload(...)``): with ``lazy="raise"``
  models, forgetting one fails loudly instead of issuing one query per row.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, DateTime, Integer, Select, String, Uuid, and_, func, inspect, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.base import ExecutableOption
from sqlalchemy.types import TypeDecorator

from .base_model import Base, utcnow

ModelT = TypeVar("ModelT", bound=Base)
ItemT = TypeVar("ItemT")  # a page holds any mapped class (SQLModel tables too)

MAX_PAGE_SIZE = 200


class InvalidCursor(ValueError):
    """The pagination cursor was not produced by this repository (or was altered)."""


@dataclass(frozen=True)
class Page(Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None  # None on the last page


def encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return value.hex
    if isinstance(value, (int, str)):
        return value
    raise TypeError(f"cannot put {type(value).__name__} into a cursor (use datetime, UUID, int or str keys)")


def decode_value(raw: Any, python_type: type) -> Any:
    try:
        if python_type is datetime and isinstance(raw, str):
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                raise ValueError("naive datetime")
            # In UTC now: near datetime.min/max the conversion overflows (OverflowError, not a 500).
            return value.astimezone(timezone.utc)
        if python_type is uuid.UUID and isinstance(raw, str):
            return uuid.UUID(hex=raw)
        if python_type is int and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if python_type is str and isinstance(raw, str):
            return raw
    except (ValueError, OverflowError) as exc:
        raise InvalidCursor(f"bad cursor value: {exc}") from None
    raise InvalidCursor(f"bad cursor value for a {python_type.__name__} key")


def key_python_type(key: InstrumentedAttribute[Any]) -> type:
    """The Python type behind a keyset column (looks through ``TypeDecorator`` such as UTCDateTime)."""
    sql_type = key.type
    while isinstance(sql_type, TypeDecorator):
        sql_type = sql_type.impl_instance
    for sql_class, python_type in ((DateTime, datetime), (Uuid, uuid.UUID), (Integer, int), (String, str)):
        if isinstance(sql_type, sql_class):
            return python_type
    raise TypeError(f"keyset column {key} must be a DateTime, Uuid, Integer or String column")


class Repository(Generic[ModelT]):
    """Data access for one mapped class. Create one per session (cheap): ``Repository(session, User)``.

    ``order_by``: the keyset columns, unique together; default ``(created_at, <pk>)`` when the model
    has ``created_at``, else the primary key. ``descending`` pages newest first.
    """

    def __init__(
        self,
        session: AsyncSession,
        model: type[ModelT],
        *,
        order_by: Sequence[InstrumentedAttribute[Any]] | None = None,
        descending: bool = False,
    ) -> None:
        mapper = inspect(model)
        if len(mapper.primary_key) != 1:
            raise TypeError(f"{model.__name__}: Repository supports single-column primary keys only")
        self.session = session
        self.model = model
        self.pk: InstrumentedAttribute[Any] = getattr(model, mapper.get_property_by_column(mapper.primary_key[0]).key)
        if order_by is None:
            created = getattr(model, "created_at", None)
            order_by = [created, self.pk] if created is not None else [self.pk]
        self.keys: list[InstrumentedAttribute[Any]] = list(order_by)
        self.key_types: list[type] = [key_python_type(key) for key in self.keys]
        self.descending = descending
        self.deleted_at: InstrumentedAttribute[Any] | None = getattr(model, "deleted_at", None)

    # -- reading ------------------------------------------------------------------------------

    def live(self, include_deleted: bool = False) -> list[ColumnElement[bool]]:
        if include_deleted or self.deleted_at is None:
            return []
        return [self.deleted_at.is_(None)]

    async def get(
        self, id: Any, *, options: Iterable[ExecutableOption] = (), include_deleted: bool = False
    ) -> ModelT | None:
        """The row with this primary key, or None (also None when soft-deleted)."""
        stmt = select(self.model).where(self.pk == id, *self.live(include_deleted)).options(*options)
        return (await self.session.scalars(stmt)).one_or_none()

    async def count(self, *where: ColumnElement[bool], include_deleted: bool = False) -> int:
        stmt = select(func.count()).select_from(self.model).where(*where, *self.live(include_deleted))
        return (await self.session.scalar(stmt)) or 0

    async def page(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        where: Iterable[ColumnElement[bool]] = (),
        options: Iterable[ExecutableOption] = (),
        include_deleted: bool = False,
    ) -> Page[ModelT]:
        """One page of rows in keyset order. One SELECT, plus one per ``selectinload`` option."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
        stmt: Select[Any] = (
            select(self.model, *self.keys)
            .where(*where, *self.live(include_deleted))
            .order_by(*(key.desc() if self.descending else key.asc() for key in self.keys))
            .limit(limit + 1)  # one extra row tells whether another page exists
            .options(*options)
        )
        if cursor is not None:
            stmt = stmt.where(self.after(self.decode_cursor(cursor)))
        rows = (await self.session.execute(stmt)).all()
        items = [row[0] for row in rows[:limit]]
        next_cursor = self.encode_cursor(tuple(rows[limit - 1][1:])) if len(rows) > limit else None
        return Page(items=items, next_cursor=next_cursor)

    def after(self, values: Sequence[Any]) -> ColumnElement[bool]:
        """``(k1, k2) > (v1, v2)`` spelled as ``k1 > v1 OR (k1 = v1 AND k2 > v2)``.

        Row-value comparison is not available everywhere (and MariaDB may not use an index for
        it); the expanded form works on every backend.
        """
        clauses: list[ColumnElement[bool]] = []
        for i, (key, value) in enumerate(zip(self.keys, values)):
            beyond = key < value if self.descending else key > value
            equal_prefix = [k == v for k, v in zip(self.keys[:i], values[:i])]
            clauses.append(and_(*equal_prefix, beyond))
        return or_(*clauses)

    def encode_cursor(self, values: Sequence[Any]) -> str:
        raw = json.dumps([encode_value(v) for v in values], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode_cursor(self, cursor: str) -> list[Any]:
        if len(cursor) > 512:
            raise InvalidCursor("cursor too long")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            values = json.loads(raw)
        except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
            raise InvalidCursor(f"malformed cursor: {type(exc).__name__}") from None
        if not isinstance(values, list) or len(values) != len(self.keys):
            raise InvalidCursor("cursor does not match this listing")
        return [decode_value(v, t) for v, t in zip(values, self.key_types)]

    # -- writing (flush, never commit) ---------------------------------------------------------

    async def create(self, **values: Any) -> ModelT:
        obj = self.model(**values)
        self.session.add(obj)
        await self.session.flush()
        return obj

    async def update(self, obj: ModelT, **values: Any) -> ModelT:
        columns = inspect(self.model).column_attrs.keys()
        unknown = sorted(set(values) - set(columns))
        if unknown:
            raise AttributeError(f"{self.model.__name__} has no column attribute(s) {unknown}")
        for name, value in values.items():
            setattr(obj, name, value)
        await self.session.flush()
        return obj

    async def soft_delete(self, obj: ModelT) -> None:
        if self.deleted_at is None:
            raise TypeError(f"{self.model.__name__} has no deleted_at column (use SoftDeleteMixin)")
        setattr(obj, self.deleted_at.key, utcnow())
        await self.session.flush()

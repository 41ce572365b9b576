# DELIBERATELY WRONG example for the evals (naive/ of mariadb-timestamps): never copy it.
"""The event log: things that happened, and when.

The columns stay DATETIME / timestamptz in the database, so no migration is needed for this
change (``alembic revision --autogenerate`` confirms it: no changes detected).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, String
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: takes timezone-aware datetimes, stores UTC, always returns aware UTC datetimes.

    PostgreSQL keeps the instant itself (``timestamptz``). MySQL/MariaDB and SQLite have no
    zone-aware type: they store the UTC wall time, and their values come back naive, so UTC is
    attached on the way out. MySQL/MariaDB ``DATETIME`` also drops the fraction of a second unless
    declared ``DATETIME(6)``.
    """

    impl = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware datetime")
        value = value.astimezone(timezone.utc)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

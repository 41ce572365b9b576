"""Orders as the shop stores them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer: Mapped[str] = mapped_column(String(100))
    total: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    payload: Mapped[str] = mapped_column(Text)  # the order document as JSON, a few KB
    exported_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)

# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases for joinedload_collection_without_unique (read, never run). Loader
options built in one function and executed by a repository that calls .unique() elsewhere cannot
be judged inside the function: nothing is reported. Run here without .unique(): reported."""
# expect-static: joinedload_collection_without_unique

from __future__ import annotations

from sqlalchemy import ForeignKey, Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, joinedload, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(primary_key=True)
    lines: Mapped[list[OrderLine]] = relationship(lazy="raise")


class OrderLine(Base):
    __tablename__ = "order_lines"
    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)


def order_options() -> list:
    return [joinedload(Order.lines)]  # built here, executed by the repository


def orders_statement() -> Select:
    return select(Order).options(joinedload(Order.lines))


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_all(self, statement: Select) -> list[Order]:
        return list((await self.session.scalars(statement)).unique().all())


async def orders_with_lines_broken(session: AsyncSession) -> list[Order]:
    statement = select(Order).options(joinedload(Order.lines))  # static: joinedload_collection_without_unique
    result = await session.scalars(statement)
    return list(result.all())


async def orders_with_lines_fine(session: AsyncSession) -> list[Order]:
    result = await session.scalars(select(Order).options(joinedload(Order.lines)))
    return list(result.unique().all())

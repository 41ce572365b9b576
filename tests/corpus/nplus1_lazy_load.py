# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: the classic N+1 - a relationship lazy-loaded once per parent inside a loop.

`await author.awaitable_attrs.books` is the async way to load one relationship on demand; in a
loop it sends one SELECT per author. Fix: `.options(selectinload(CpaAuthor.books))` (2 queries).
"""
# expect-runtime: n_plus_one
# expect-static: query_in_loop

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpaAuthor(Base):
    __tablename__ = "cpa_authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    books: Mapped[list[CpaBook]] = relationship(back_populates="author", lazy="select")


class CpaBook(Base):
    __tablename__ = "cpa_books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("cpa_authors.id"), index=True)
    title: Mapped[str] = mapped_column(String(50))
    author: Mapped[CpaAuthor] = relationship(back_populates="books", lazy="raise")


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all(CpaAuthor(name=f"a{i}", books=[CpaBook(title=f"b{i}-{j}") for j in range(2)]) for i in range(8))
        async with sessionmaker() as session:
            authors = (await session.scalars(select(CpaAuthor).order_by(CpaAuthor.id))).all()
            total = 0
            for author in authors:
                books = await author.awaitable_attrs.books  # runtime: n_plus_one  static: query_in_loop
                total += len(books)
            if total != 16:
                raise AssertionError(total)
    print("nplus1_lazy_load: ok")


if __name__ == "__main__":
    asyncio.run(main())

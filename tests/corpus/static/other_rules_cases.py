# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases for the remaining rules (read, never run): each has a line that must be
reported (marked) and a correct variant right next to it that must not."""
# expect-static: values_list_bulk_insert, relationship_without_lazy, lazy_load_in_async, commit_after_yield, queuepool_on_async_engine, legacy_declarative_base

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Depends, FastAPI
from sqlalchemy import ForeignKey, insert, select
from sqlalchemy.ext.asyncio import AsyncAttrs, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.declarative import declarative_base
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload
from sqlalchemy.pool import NullPool, QueuePool

app = FastAPI()
OldBase = declarative_base()  # static: legacy_declarative_base


class Base(AsyncAttrs, DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    books: Mapped[list[Book]] = relationship(back_populates="author", lazy="raise")
    awards: Mapped[list[Award]] = relationship()  # static: relationship_without_lazy


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)
    author: Mapped[Author] = relationship(back_populates="books", lazy="joined")


class Award(Base):
    __tablename__ = "awards"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"), index=True)


pooled = create_async_engine("postgresql+asyncpg://app@db/app", poolclass=QueuePool)  # static: queuepool_on_async_engine
behind_pgbouncer = create_async_engine("postgresql+asyncpg://app@pgbouncer/app", poolclass=NullPool)
Session = async_sessionmaker(behind_pgbouncer, expire_on_commit=False)


async def import_rows(session: AsyncSession, rows: list[dict], batch: list[dict]) -> None:
    await session.execute(insert(Book).values([{"author_id": r["author"]} for r in rows]))  # static: values_list_bulk_insert
    await session.execute(insert(Book), rows)
    await session.execute(insert(Book).values(batch))  # the caller bounds a batch


async def book_titles(session: AsyncSession, author_id: int) -> int:
    author = await session.get(Author, author_id)
    return len(author.books)  # static: lazy_load_in_async


async def book_titles_loaded(session: AsyncSession, author_id: int) -> int:
    author = await session.scalar(select(Author).where(Author.id == author_id).options(selectinload(Author.books)))
    return len(author.books)


async def session_after_response() -> AsyncIterator[AsyncSession]:
    async with Session() as session:
        yield session
        await session.commit()  # static: commit_after_yield


async def session_before_response() -> AsyncIterator[AsyncSession]:
    async with Session() as session:
        yield session
        await session.commit()


@app.post("/a")
async def create_a(session: AsyncSession = Depends(session_after_response)) -> None:
    session.add(Author())


@app.post("/b")
async def create_b(session: AsyncSession = Depends(session_before_response, scope="function")) -> None:
    session.add(Author())

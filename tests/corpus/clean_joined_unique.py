# CLEAN example for the optimize-queries checker's tests (no finding expected): a fixture, never copy it.
"""Clean corpus app: joinedload on a collection with .unique(), lazy="selectin" for a
relationship that is always needed, awaitable_attrs for one object, and an UPDATE/DELETE by
primary key.
"""
# expect-runtime:
# expect-static:

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import ForeignKey, String, delete, select, update
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CqdBoard(Base):
    __tablename__ = "cqd_boards"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))
    cards: Mapped[list[CqdCard]] = relationship(lazy="raise", order_by="CqdCard.id", cascade="all, delete-orphan")
    labels: Mapped[list[CqdLabel]] = relationship(lazy="selectin", order_by="CqdLabel.id")


class CqdCard(Base):
    __tablename__ = "cqd_cards"
    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("cqd_boards.id"), index=True)
    text: Mapped[str] = mapped_column(String(50))


class CqdLabel(Base):
    __tablename__ = "cqd_labels"
    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("cqd_boards.id"), index=True)
    name: Mapped[str] = mapped_column(String(20))


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            for i in range(3):
                board = CqdBoard(title=f"board{i}", cards=[CqdCard(text=f"c{j}") for j in range(3)])
                board.labels = [CqdLabel(name="red")]
                session.add(board)
        async with sessionmaker() as session:
            result = await session.scalars(select(CqdBoard).options(joinedload(CqdBoard.cards)).order_by(CqdBoard.id))
            boards = result.unique().all()
            if [len(b.cards) for b in boards] != [3, 3, 3] or [b.labels[0].name for b in boards] != ["red"] * 3:
                raise AssertionError("eager loading")
            first = await session.get(CqdBoard, boards[0].id)
            cards = await first.awaitable_attrs.cards
            if len(cards) != 3:
                raise AssertionError(cards)
        async with sessionmaker() as session, session.begin():
            await session.execute(update(CqdCard).where(CqdCard.id == cards[0].id).values(text="done"))
            await session.execute(delete(CqdCard).where(CqdCard.id == cards[1].id))
        async with sessionmaker() as session:
            texts = (await session.scalars(select(CqdCard.text).where(CqdCard.board_id == first.id).order_by(CqdCard.id))).all()
            if list(texts) != ["done", "c2"]:
                raise AssertionError(texts)
    print("clean_joined_unique: ok")


if __name__ == "__main__":
    asyncio.run(main())

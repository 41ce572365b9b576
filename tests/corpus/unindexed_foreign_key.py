# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: a foreign key column without an index, used to join and to filter.

PostgreSQL and SQLite do not index foreign key columns by themselves (MySQL/MariaDB InnoDB does,
so there the finding is not expected). Every `JOIN cpd_comments ON ... = cpd_comments.ticket_id`
and every `WHERE ticket_id = ?` then scans, and deleting a ticket scans the child table. Fix:
`mapped_column(ForeignKey(...), index=True)`.
"""
# expect-runtime: unindexed_foreign_key
# expect-runtime[mysql]:
# expect-static:

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpdTicket(Base):
    __tablename__ = "cpd_tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(100))
    comments: Mapped[list[CpdComment]] = relationship(lazy="raise")


class CpdComment(Base):
    __tablename__ = "cpd_comments"
    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("cpd_tickets.id"))  # no index=True
    body: Mapped[str] = mapped_column(String(200))


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all(CpdTicket(subject=f"t{i}", comments=[CpdComment(body="hi") for _ in range(i)]) for i in range(5))
        async with sessionmaker() as session:
            stmt = (
                select(CpdTicket.subject, func.count(CpdComment.id))
                .join(CpdComment, CpdComment.ticket_id == CpdTicket.id)
                .where(CpdTicket.subject != "t0")
                .group_by(CpdTicket.subject)
                .order_by(CpdTicket.subject)
            )
            rows = (await session.execute(stmt)).all()  # runtime: unindexed_foreign_key
            if [n for _, n in rows] != [1, 2, 3, 4]:
                raise AssertionError(rows)
    print("unindexed_foreign_key: ok")


if __name__ == "__main__":
    asyncio.run(main())

# CLEAN example for the optimize-queries checker's tests (no finding expected): a fixture, never copy it.
"""Clean corpus app: relationships eager-loaded in the query, indexed foreign keys and filters.

selectinload for collections (2 queries however many parents), joinedload for many-to-one, a join
on an indexed foreign key, and a filter on an indexed column. optimize-queries must report
nothing here, in either mode. The app also checks its own statement count.
"""
# expect-runtime:
# expect-static:

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import Mapped, joinedload, mapped_column, relationship, selectinload

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.query_counter import count_queries
from templates.scratch import scratch_engine


class CqaTeam(Base):
    __tablename__ = "cqa_teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    members: Mapped[list[CqaMember]] = relationship(back_populates="team", lazy="raise", order_by="CqaMember.id")


class CqaMember(Base):
    __tablename__ = "cqa_members"
    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("cqa_teams.id"), index=True)
    role: Mapped[str] = mapped_column(String(20), index=True)
    team: Mapped[CqaTeam] = relationship(back_populates="members", lazy="raise")


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all(
                CqaTeam(name=f"team{i}", members=[CqaMember(role="dev" if j else "lead") for j in range(4)]) for i in range(10)
            )
        async with sessionmaker() as session:
            with count_queries(engine) as queries:
                teams = (await session.scalars(select(CqaTeam).options(selectinload(CqaTeam.members)).order_by(CqaTeam.id))).all()
                sizes = [len(team.members) for team in teams]
            if sizes != [4] * 10 or len(queries.selects()) != 2:
                raise AssertionError((sizes, queries.statements))
            leads = (await session.scalars(select(CqaMember).where(CqaMember.role == "lead").options(joinedload(CqaMember.team)))).all()
            if sorted(m.team.name for m in leads) != sorted(f"team{i}" for i in range(10)):
                raise AssertionError([m.team.name for m in leads])
            per_team = await session.execute(
                select(CqaTeam.name, func.count(CqaMember.id))
                .join(CqaMember, CqaMember.team_id == CqaTeam.id)
                .where(CqaTeam.name == "team3")
                .group_by(CqaTeam.name)
            )
            if per_team.all() != [("team3", 4)]:
                raise AssertionError("join count")
    print("clean_eager_loading: ok")


if __name__ == "__main__":
    asyncio.run(main())

# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app on SQLModel: an N+1 written with ``session.exec()`` in a loop over teams, next to the
correct form (``selectinload(Team.heroes)``, with ``lazy="raise"`` set through
``sa_relationship_kwargs``). Runtime mode needs no change for SQLModel: its AsyncSession runs on
SQLAlchemy's engine events. (No ``from __future__ import annotations`` here: SQLModel resolves
relationship annotations at class creation.) Fix: one query for all teams, or eager-load the relationship.
"""
# expect-runtime: n_plus_one
# expect-static: query_in_loop

import asyncio
import sys
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy.orm import selectinload
from sqlmodel import Field, Relationship, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from templates.scratch import scratch_engine


class CpmTeam(SQLModel, table=True):
    __tablename__ = "cpm_teams"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40)
    heroes: list["CpmHero"] = Relationship(back_populates="team", sa_relationship_kwargs={"lazy": "raise"})


class CpmHero(SQLModel, table=True):
    __tablename__ = "cpm_heroes"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=40)
    team_id: int | None = Field(default=None, foreign_key="cpm_teams.id", index=True)
    team: Optional["CpmTeam"] = Relationship(back_populates="heroes", sa_relationship_kwargs={"lazy": "raise"})


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            session.add_all(CpmTeam(name=f"team {i}", heroes=[CpmHero(name=f"hero {i}.{j}") for j in range(i)]) for i in range(6))
            await session.commit()
        async with AsyncSession(engine, expire_on_commit=False) as session:
            teams = (await session.exec(select(CpmTeam).order_by(CpmTeam.id))).all()
            counts = []
            for team in teams:
                heroes = (await session.exec(select(CpmHero).where(CpmHero.team_id == team.id))).all()  # runtime: n_plus_one  static: query_in_loop
                counts.append(len(heroes))
            loaded = (await session.exec(select(CpmTeam).options(selectinload(CpmTeam.heroes)).order_by(CpmTeam.id))).all()
            if counts != list(range(6)) or [len(t.heroes) for t in loaded] != counts:
                raise AssertionError(counts)
    print("sqlmodel_nplus1: ok")


if __name__ == "__main__":
    asyncio.run(main())

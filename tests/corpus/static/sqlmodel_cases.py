# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases on SQLModel code (read, never run): Relationship() lazy settings live in
sa_relationship_kwargs, session.exec() in a loop is a query per item, sqlmodel's select and text."""
# expect-static: relationship_without_lazy, query_in_loop, lazy_load_in_async, text_with_fstring

from __future__ import annotations

from sqlmodel import Field, Relationship, SQLModel, select, text
from sqlmodel.ext.asyncio.session import AsyncSession


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    heroes: list[Hero] = Relationship(back_populates="team", sa_relationship_kwargs={"lazy": "raise"})
    sponsors: list[Sponsor] = Relationship(back_populates="team")  # static: relationship_without_lazy


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    team: Team | None = Relationship(back_populates="heroes", sa_relationship_kwargs={"lazy": "selectin"})


class Sponsor(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    team_id: int | None = Field(default=None, foreign_key="team.id", index=True)
    team: Team | None = Relationship(back_populates="sponsors", sa_relationship_kwargs=dict(lazy="joined"))


async def heroes_per_team(session: AsyncSession) -> dict[str, int]:
    teams = (await session.exec(select(Team))).all()
    out = {}
    for team in teams:
        heroes = (await session.exec(select(Hero).where(Hero.team_id == team.id))).all()  # static: query_in_loop
        out[team.name] = len(heroes)
    return out


async def first_team_heroes(session: AsyncSession) -> int:
    team = (await session.exec(select(Team))).first()
    return len(team.heroes)  # static: lazy_load_in_async


async def team_by_name(session: AsyncSession, name: str) -> Team | None:
    return (await session.exec(select(Team).from_statement(text(f"SELECT * FROM team WHERE name = '{name}'")))).first()  # static: text_with_fstring

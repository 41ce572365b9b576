"""Proof for every troubleshooting entry of references/sqlmodel.md (SQLModel errors users paste).

Each test runs the wrong code, asserts the error text the reference quotes, then runs the fix and
asserts that it works. Driver-dependent entries run on every backend (``engine`` fixture); mapper
configuration errors run in a subprocess, since a broken class would poison SQLModel's one global
registry for the rest of this process. The Alembic entries are in tests/test_sqlmodel_alembic.py.

No ``from __future__ import annotations`` here: SQLModel table classes are defined in this module.
"""

import gc
import re
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy
from fastapi import FastAPI
from fastapi.exceptions import ResponseValidationError
from sqlalchemy import DateTime
from sqlalchemy.exc import CompileError, DBAPIError, InvalidRequestError, MissingGreenlet, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import DetachedInstanceError
from sqlalchemy.schema import Column, CreateTable, MetaData, Table
from sqlalchemy.types import String
from sqlmodel import Field, Relationship, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.sql.sqltypes import AutoString

from templates.base_model import UTCDateTime, UUIDType, utcnow
from templates.sqlmodel_session import create_sqlmodel_sessionmaker

ROOT = Path(__file__).resolve().parents[1]
SA_21 = tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2]) >= (2, 1)
MISSING_GREENLET = "greenlet_spawn has not been called; can't call " + (
    "await_() here" if SA_21 else "await_only() here"
)

# The wrong code below leaves driver coroutines un-awaited; that follow-up warning is expected.
pytestmark = pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")


class TsmTeam(SQLModel, table=True):
    __tablename__ = "tsm_teams"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True, sa_type=UUIDType)
    name: str = Field(max_length=50)
    heroes: list["TsmHero"] = Relationship(back_populates="team", sa_relationship_kwargs={"lazy": "raise"})


class TsmHero(SQLModel, table=True):
    __tablename__ = "tsm_heroes"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True, sa_type=UUIDType)
    name: str = Field(max_length=50)
    team_id: uuid.UUID = Field(foreign_key="tsm_teams.id", sa_type=UUIDType)
    team: TsmTeam = Relationship(back_populates="heroes")  # SQLModel's default: lazy="select"


class TsmNaiveEvent(SQLModel, table=True):
    __tablename__ = "tsm_naive_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=DateTime)  # a naive column, what `datetime` gave before SQLModel 0.0.45


class TsmEvent(SQLModel, table=True):
    __tablename__ = "tsm_events"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


TABLES = [TsmTeam.__table__, TsmHero.__table__, TsmNaiveEvent.__table__, TsmEvent.__table__]


@pytest.fixture(scope="module")
async def tables(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all, tables=TABLES)
    yield engine


async def a_team(engine: AsyncEngine, heroes: int = 2) -> uuid.UUID:
    team = TsmTeam(name=f"team-{uuid.uuid4().hex[:8]}")
    async with create_sqlmodel_sessionmaker(engine)() as session:
        session.add(team)
        session.add_all(TsmHero(name=f"hero {i}", team_id=team.id) for i in range(heroes))
        await session.commit()
    return team.id


def drop_unawaited_coroutines() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()


def greenlet_error(exc: BaseException) -> bool:
    """asyncpg raises MissingGreenlet; aiosqlite/aiomysql wrap it in StatementError (see troubleshooting.md)."""
    return isinstance(exc, MissingGreenlet) or (
        isinstance(exc, StatementError) and isinstance(exc.orig, MissingGreenlet)
    )


# --- session.exec() on SQLAlchemy's AsyncSession ---------------------------------------------


async def test_exec_on_sqlalchemy_async_session(tables: AsyncEngine) -> None:
    team_id = await a_team(tables)
    # wrong: the sessionmaker makes SQLAlchemy's AsyncSession, which has execute() but no exec()
    sessionmaker = async_sessionmaker(tables, expire_on_commit=False)
    async with sessionmaker() as session:
        with pytest.raises(AttributeError, match=re.escape("'AsyncSession' object has no attribute 'exec'")):
            await session.exec(select(TsmTeam).where(TsmTeam.id == team_id))
        # (that session works with SQLAlchemy's API: session.scalars(select(...)))
        assert (await session.scalars(select(TsmTeam).where(TsmTeam.id == team_id))).one().id == team_id

    # fix: sessions of SQLModel's AsyncSession (class_=), from templates/sqlmodel_session.py
    async with create_sqlmodel_sessionmaker(tables)() as session:
        assert (await session.exec(select(TsmTeam).where(TsmTeam.id == team_id))).one().id == team_id


# --- MissingGreenlet after commit -------------------------------------------------------------


async def test_missing_greenlet_after_commit_with_async_session_engine(tables: AsyncEngine) -> None:
    # wrong: AsyncSession(engine), as in sync tutorials; expire_on_commit defaults to True
    async with AsyncSession(tables) as session:
        team = TsmTeam(name="expired")
        session.add(team)
        await session.commit()  # expires every attribute of `team`
        with pytest.raises((MissingGreenlet, StatementError)) as caught:
            print(team.name)  # implicit refresh = I/O outside await
        assert greenlet_error(caught.value) and MISSING_GREENLET in str(caught.value)
        drop_unawaited_coroutines()
        await session.refresh(team)  # fix for one object: reload it with await
        assert team.name == "expired"

    # fix: expire_on_commit=False (create_sqlmodel_sessionmaker)
    async with create_sqlmodel_sessionmaker(tables)() as session:
        team = TsmTeam(name="kept")
        session.add(team)
        await session.commit()
        assert team.name == "kept"


# --- relationship read after the session closed -----------------------------------------------


async def test_relationship_read_after_the_session_closed(tables: AsyncEngine) -> None:
    team_id = await a_team(tables)
    sessionmaker = create_sqlmodel_sessionmaker(tables)
    async with sessionmaker() as session:
        team = (await session.exec(select(TsmTeam).where(TsmTeam.id == team_id))).one()
    async with sessionmaker() as session:
        hero = (await session.exec(select(TsmHero).where(TsmHero.team_id == team_id).limit(1))).one()
        with pytest.raises((MissingGreenlet, StatementError)) as caught:
            print(hero.team)  # default lazy="select", session still open: MissingGreenlet
        assert greenlet_error(caught.value)
        drop_unawaited_coroutines()
    with pytest.raises(InvalidRequestError, match=re.escape("'TsmTeam.heroes' is not available due to lazy='raise'")):
        print(team.heroes)
    with pytest.raises(
        DetachedInstanceError, match="is not bound to a Session; lazy load operation of attribute 'team' cannot proceed"
    ):
        print(hero.team)

    # fix: load what will be read, in the query, while the session is open
    async with sessionmaker() as session:
        team = (
            await session.exec(select(TsmTeam).where(TsmTeam.id == team_id).options(selectinload(TsmTeam.heroes)))
        ).one()
        hero = (
            await session.exec(
                select(TsmHero).where(TsmHero.team_id == team_id).options(selectinload(TsmHero.team)).limit(1)
            )
        ).one()
    assert len(team.heroes) == 2 and hero.team.id == team_id
    # one object, after the fact: refresh() loads it even with lazy="raise"
    async with sessionmaker() as session:
        team = (await session.exec(select(TsmTeam).where(TsmTeam.id == team_id))).one()
        await session.refresh(team, ["heroes"])
    assert len(team.heroes) == 2


class TeamOut(SQLModel):
    id: uuid.UUID
    name: str
    heroes: list["HeroOut"]


class HeroOut(SQLModel):
    id: uuid.UUID
    name: str


TeamOut.model_rebuild()


async def test_response_model_reads_an_unloaded_relationship(tables: AsyncEngine) -> None:
    """FastAPI builds the response after the endpoint returned: an unloaded relationship fails there."""
    team_id = await a_team(tables)
    sessionmaker = create_sqlmodel_sessionmaker(tables)
    app = FastAPI()

    @app.get("/wrong", response_model=TeamOut)
    async def wrong() -> Any:
        async with sessionmaker() as session:
            return (await session.exec(select(TsmTeam).where(TsmTeam.id == team_id))).one()

    @app.get("/fixed", response_model=TeamOut)
    async def fixed() -> Any:
        async with sessionmaker() as session:
            stmt = select(TsmTeam).where(TsmTeam.id == team_id).options(selectinload(TsmTeam.heroes))
            return (await session.exec(stmt)).one()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        with pytest.raises(
            ResponseValidationError,
            match=re.escape(
                "Error extracting attribute: InvalidRequestError: 'TsmTeam.heroes' is not available due to lazy='raise'"
            ),
        ):
            await client.get("/wrong")  # a 500 for a real client
        response = await client.get("/fixed")
    assert response.status_code == 200 and len(response.json()["heroes"]) == 2
    as_served = httpx.ASGITransport(app=app, raise_app_exceptions=False)  # what a real client sees
    async with httpx.AsyncClient(transport=as_served, base_url="http://t") as client:
        assert (await client.get("/wrong")).status_code == 500


# --- from __future__ import annotations in a models module ---------------------------------------

FUTURE_MODELS = """\
from __future__ import annotations

from sqlmodel import Field, Relationship, SQLModel


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    heroes: list["Hero"] = Relationship(back_populates="team")


class Hero(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    team_id: int | None = Field(default=None, foreign_key="team.id")
    team: Team | None = Relationship(back_populates="heroes")
"""


def test_future_annotations_break_relationships(tmp_path: Path) -> None:
    def configure(source: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "models.py").write_text(source)
        code = "import models; from sqlalchemy.orm import configure_mappers; configure_mappers(); print('configured')"
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)

    wrong = configure(FUTURE_MODELS)
    assert wrong.returncode == 1
    assert "seems to be using a generic class as the argument to relationship()" in wrong.stderr, wrong.stderr[-2000:]
    assert 'expression "relationship("list[\'Hero\']")"' in wrong.stderr, wrong.stderr[-2000:]
    fixed = configure(FUTURE_MODELS.replace("from __future__ import annotations\n\n", ""))
    assert fixed.returncode == 0 and "configured" in fixed.stdout, fixed.stderr[-2000:]


# --- aware datetimes into a naive column ---------------------------------------------------------


async def test_aware_datetime_into_a_naive_column(tables: AsyncEngine, backend: str) -> None:
    stamp = datetime(2025, 3, 30, 1, 30, 0, 123456, tzinfo=timezone.utc)
    sessionmaker = create_sqlmodel_sessionmaker(tables)
    async with sessionmaker() as session:
        session.add(TsmNaiveEvent(at=stamp))
        if backend == "postgresql":
            with pytest.raises(DBAPIError, match="can't subtract offset-naive and offset-aware datetimes"):
                await session.commit()  # asyncpg refuses an aware value for TIMESTAMP WITHOUT TIME ZONE
        else:
            await session.commit()  # SQLite / MariaDB store it and hand back a naive value
            back = (await session.exec(select(TsmNaiveEvent.at).order_by(TsmNaiveEvent.id.desc()).limit(1))).one()
            assert back.tzinfo is None and back != stamp

    # fix: an aware column type (templates/base_model.py UTCDateTime)
    async with sessionmaker() as session:
        event = TsmEvent(at=stamp)
        session.add(event)
        await session.commit()
    async with sessionmaker() as session:
        back = (await session.exec(select(TsmEvent.at).where(TsmEvent.id == event.id))).one()
    assert back == stamp and back.tzinfo is not None


# --- VARCHAR requires a length on dialect mysql ----------------------------------------------------


def test_string_without_length_on_mysql() -> None:
    from sqlalchemy.dialects import mysql

    def ddl(type_: Any) -> str:
        return str(CreateTable(Table("t", MetaData(), Column("name", type_))).compile(dialect=mysql.dialect()))

    with pytest.raises(CompileError, match="VARCHAR requires a length on dialect mysql"):
        ddl(String())  # what a revision says for `name: str` when AutoString was rendered as its impl
    assert "VARCHAR(255)" in ddl(AutoString())  # SQLModel's own type picks 255 on MySQL/MariaDB
    assert "VARCHAR(100)" in ddl(String(length=100))  # Field(max_length=100) -> String(length=100)

"""What references/sqlmodel.md says about sessions, models and column types, on every backend:
SQLModel's AsyncSession against SQLAlchemy's, templates/sqlmodel_session.py, table models against
plain ones, UUID and aware-datetime columns.

No ``from __future__ import annotations`` here: SQLModel table classes are defined in this module.
"""

import re
import uuid
import warnings
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy
import sqlmodel
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession as SQLAlchemyAsyncSession
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from templates.base_model import UTCDateTime, UUIDType, utcnow
from templates.database import create_sessionmaker
from templates.repository import InvalidCursor, Repository
from templates.sqlmodel_session import create_sqlmodel_sessionmaker, exec_page

SA_21 = tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2]) >= (2, 1)
DEFAULT_DATETIME_IS_AWARE = hasattr(sqlmodel.sql.sqltypes, "UTCDateTime")  # SQLModel >= 0.0.45
DEPRECATED = "You probably want to use `session.exec()` instead of `session.execute()`"


class SsMember(SQLModel, table=True):
    __tablename__ = "ss_members"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True, sa_type=UUIDType)
    email: str = Field(max_length=255, unique=True)
    club: str = Field(max_length=20, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SsMemberCreate(SQLModel):
    email: str = Field(max_length=255)
    club: str = Field(max_length=20)


class SsStamp(SQLModel, table=True):
    __tablename__ = "ss_stamps"

    id: int | None = Field(default=None, primary_key=True)
    plain: uuid.UUID = Field(default_factory=uuid.uuid4)  # SQLModel's default: sqlalchemy.Uuid
    pinned: uuid.UUID = Field(default_factory=uuid.uuid4, sa_type=UUIDType)
    default_type: datetime | None = None  # SQLModel's own mapping of `datetime`
    template_type: datetime | None = Field(default=None, sa_type=UTCDateTime)


TABLES = [SsMember.__table__, SsStamp.__table__]


@pytest.fixture(scope="module")
async def tables(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all, tables=TABLES)
    yield engine


async def members(engine: AsyncEngine, club: str, n: int) -> list[uuid.UUID]:
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rows = [
        SsMember(email=f"{club}-{i}@example.com", club=club, created_at=base + timedelta(seconds=i % 3))
        for i in range(n)
    ]  # equal created_at values: the primary key must break the ties
    async with create_sqlmodel_sessionmaker(engine)() as session:
        session.add_all(rows)
        await session.commit()
    return [row.id for row in rows]


# --- the two session classes ---------------------------------------------------------------------


async def test_exec_returns_objects_and_rows_without_warnings(tables: AsyncEngine) -> None:
    ids = await members(tables, "exec", 3)
    sessionmaker = create_sqlmodel_sessionmaker(tables)
    assert sessionmaker.class_ is AsyncSession and sessionmaker.kw["expire_on_commit"] is False
    async with sessionmaker() as session:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            objects = (await session.exec(select(SsMember).where(SsMember.club == "exec"))).all()
            rows = (await session.exec(select(SsMember.email, SsMember.club).where(SsMember.club == "exec"))).all()
            count = (await session.exec(select(sqlalchemy.func.count()).where(SsMember.club == "exec"))).one()
    assert {m.id for m in objects} == set(ids) and all(isinstance(m, SsMember) for m in objects)
    assert sorted(rows) == [(f"exec-{i}@example.com", "exec") for i in range(3)] and count == 3


async def test_execute_and_scalars_on_sqlmodel_session_are_deprecated(tables: AsyncEngine) -> None:
    await members(tables, "dep", 1)
    stmt = select(SsMember).where(SsMember.club == "dep")
    async with create_sqlmodel_sessionmaker(tables)() as session:
        with pytest.warns(DeprecationWarning, match=re.escape(DEPRECATED)):
            assert len((await session.execute(stmt)).scalars().all()) == 1
        with pytest.warns(DeprecationWarning, match=re.escape(DEPRECATED)):
            assert len((await session.scalars(stmt)).all()) == 1  # scalars() goes through execute()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert (await session.scalar(stmt)) is not None  # scalar() does not: no warning


async def test_sqlalchemy_session_runs_sqlmodel_select_without_warnings(tables: AsyncEngine) -> None:
    await members(tables, "sa", 2)
    async with create_sessionmaker(tables)() as session:
        assert type(session) is SQLAlchemyAsyncSession and not hasattr(session, "exec")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            found = (await session.scalars(select(SsMember).where(SsMember.club == "sa"))).all()
            page = await Repository(session, SsMember).page(limit=1, where=[SsMember.club == "sa"])
    assert len(found) == 2 and len(page.items) == 1 and page.next_cursor


# --- exec_page ---------------------------------------------------------------------------------


async def test_exec_page_walks_like_repository_page(tables: AsyncEngine) -> None:
    ids = await members(tables, "page", 7)
    async with create_sqlmodel_sessionmaker(tables)() as session:
        soft = (await session.exec(select(SsMember).where(SsMember.id == ids[3]))).one()
        soft.deleted_at = utcnow()
        await session.commit()

    async def walk_exec() -> tuple[list[uuid.UUID], list[str]]:
        seen, cursors, cursor = [], [], None
        async with create_sqlmodel_sessionmaker(tables)() as session:
            while True:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    page = await exec_page(session, SsMember, limit=2, cursor=cursor, where=[SsMember.club == "page"])
                seen += [m.id for m in page.items]
                if page.next_cursor is None:
                    return seen, cursors
                cursor = page.next_cursor
                cursors.append(cursor)

    async def walk_repository() -> tuple[list[uuid.UUID], list[str]]:
        seen, cursors, cursor = [], [], None
        async with create_sessionmaker(tables)() as session:
            repo = Repository(session, SsMember)
            while True:
                page = await repo.page(limit=2, cursor=cursor, where=[SsMember.club == "page"])
                seen += [m.id for m in page.items]
                if page.next_cursor is None:
                    return seen, cursors
                cursor = page.next_cursor
                cursors.append(cursor)

    exec_ids, exec_cursors = await walk_exec()
    repo_ids, repo_cursors = await walk_repository()
    assert exec_ids == repo_ids and exec_cursors == repo_cursors
    assert len(exec_ids) == 6 and set(exec_ids) == set(ids) - {ids[3]}  # soft-deleted row left out
    async with create_sqlmodel_sessionmaker(tables)() as session:
        with pytest.raises(InvalidCursor):
            await exec_page(session, SsMember, cursor="not-a-cursor")
        with pytest.raises(ValueError, match="limit must be between"):
            await exec_page(session, SsMember, limit=0)


# --- table models do not validate ------------------------------------------------------------------


def test_max_length_sets_the_column_length() -> None:
    """What the MySQL/MariaDB advice relies on (SQLModel 0.0.18 and older drop it with pydantic 2.14)."""
    assert SsMember.__table__.c.email.type.length == 255 and SsMember.__table__.c.club.type.length == 20


def test_table_models_skip_validation_plain_models_do_not() -> None:
    loose = SsMember(email=None, club="x" * 500)  # no error: table=True skips validation
    assert loose.email is None and len(loose.club) == 500
    with pytest.raises(ValidationError):
        SsMemberCreate(email=None, club="x" * 500)
    with pytest.raises(ValidationError):
        SsMember.model_validate({"email": None, "club": "chess"})  # model_validate does validate
    member = SsMember.model_validate(SsMemberCreate(email="a@example.com", club="chess"))
    assert isinstance(member.id, uuid.UUID) and member.created_at.tzinfo is not None


# --- UUID and aware datetimes per backend ---------------------------------------------------------


async def test_datetime_columns_per_backend(tables: AsyncEngine, backend: str) -> None:
    stamp = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone.utc)
    sessionmaker = create_sqlmodel_sessionmaker(tables)
    async with sessionmaker() as session:
        row = SsStamp(template_type=stamp)
        session.add(row)
        await session.commit()
        back = (await session.exec(select(SsStamp.template_type).where(SsStamp.id == row.id))).one()
    assert back == stamp  # UTCDateTime from templates/base_model.py: aware, microseconds kept everywhere

    async with sessionmaker() as session:
        row = SsStamp(default_type=stamp)
        session.add(row)
        if not DEFAULT_DATETIME_IS_AWARE and backend == "postgresql":
            # SQLModel < 0.0.45 maps datetime to a naive DateTime: asyncpg refuses aware values
            with pytest.raises(DBAPIError, match="can't subtract offset-naive and offset-aware datetimes"):
                await session.commit()
            return
        await session.commit()
        back = (await session.exec(select(SsStamp.default_type).where(SsStamp.id == row.id))).one()
    if DEFAULT_DATETIME_IS_AWARE:  # SQLModel >= 0.0.45: its own UTCDateTime, aware on every backend ...
        assert back is not None and back.tzinfo is not None
        # ... but a plain DATETIME on MySQL/MariaDB: the microseconds are gone
        assert back == (stamp.replace(microsecond=0) if backend == "mysql" else stamp)
    else:  # older SQLModel on SQLite / MariaDB: stored, handed back naive
        assert back is not None and back.tzinfo is None


@pytest.mark.only_backends("mysql")
async def test_uuid_column_types_on_mariadb(tables: AsyncEngine) -> None:
    async with tables.connect() as conn:
        types = dict(
            (
                await conn.execute(
                    text(
                        "SELECT column_name, column_type FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() AND table_name = 'ss_stamps' AND column_name IN ('plain', 'pinned')"
                    )
                )
            ).all()
        )
        is_mariadb = "mariadb" in (await conn.scalar(text("SELECT VERSION()"))).lower()
    assert types["pinned"] == "char(32)"  # UUIDType: the same DDL on SQLAlchemy 2.0 and 2.1
    assert types["plain"] == ("uuid" if SA_21 and is_mariadb else "char(32)")

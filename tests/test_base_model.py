"""templates/base_model.py on every backend: UUID keys, UTC timestamps, soft delete, optimistic
locking and the constraint naming convention, checked against what the database actually stores.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    MetaData,
    String,
    Table,
    Uuid,
    event,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.orm.exc import StaleDataError

from templates.base_model import (
    Base,
    SoftDeleteMixin,
    TimestampMixin,
    UTCDateTime,
    UUIDPrimaryKeyMixin,
    VersionedMixin,
)
from templates.database import create_sessionmaker

PLUS_FIVE = timezone(timedelta(hours=5))
SA_VERSION = tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2])


class BmOwner(UUIDPrimaryKeyMixin, Base):
    __tablename__ = "bm_owners"

    name: Mapped[str] = mapped_column(String(50))


class BmThing(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, VersionedMixin, Base):
    __tablename__ = "bm_things"
    __table_args__ = (CheckConstraint("qty >= 0", name="qty_non_negative"),)

    code: Mapped[str] = mapped_column(String(40), unique=True)
    qty: Mapped[int] = mapped_column(default=0)
    owner_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("bm_owners.id"), index=True)
    due_at: Mapped[datetime | None]  # plain annotation: the Base's type_annotation_map applies


def new_code() -> str:
    return f"bm-{uuid.uuid4().hex[:12]}"


@contextmanager
def capture_parameters(engine: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    """(statement, parameters) of every statement sent while the block is open."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


def assert_aware_utc(value: datetime | None) -> None:
    assert value is not None
    assert value.tzinfo is not None and value.utcoffset() == timedelta(0), repr(value)


@pytest.fixture(scope="module")
async def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return create_sessionmaker(engine)


async def insert_thing(sessionmaker: async_sessionmaker[AsyncSession], **values: Any) -> BmThing:
    async with sessionmaker() as session, session.begin():
        thing = BmThing(code=new_code(), **values)
        session.add(thing)
    return thing


async def read_thing(sessionmaker: async_sessionmaker[AsyncSession], thing_id: uuid.UUID) -> BmThing:
    async with sessionmaker() as session:
        thing = await session.get(BmThing, thing_id)
    assert thing is not None
    return thing


# --- UUID primary key ----------------------------------------------------------------------


async def test_uuid_pk_is_generated_in_python_and_sent_with_the_insert(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        thing = BmThing(code=new_code())
        known_before_flush = thing.id
        assert isinstance(known_before_flush, uuid.UUID)  # set at construction, usable before any I/O
        session.add(thing)
        with capture_parameters(engine) as seen:
            await session.flush()
        assert isinstance(thing.id, uuid.UUID) and thing.id.version == 4
        assert thing.id == known_before_flush
    inserts = [(s, p) for s, p in seen if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1
    statement, parameters = inserts[0]
    assert "RETURNING" not in statement.upper()  # nothing to fetch back: the key was known
    sent_values = list(parameters.values()) if isinstance(parameters, dict) else list(parameters)
    assert any(v in (thing.id, thing.id.hex, str(thing.id)) for v in sent_values), sent_values

    again = await read_thing(sessionmaker, thing.id)
    # asyncpg may hand back its own subclass of uuid.UUID: compare with isinstance/==, not type().
    assert isinstance(again.id, uuid.UUID) and again.id == thing.id and hash(again.id) == hash(thing.id)
    assert str(again.id) == str(thing.id)


def native_uuid_expected(engine: AsyncEngine, backend: str) -> bool:
    """PostgreSQL only: the template pins CHAR(32) on MySQL/MariaDB, where SQLAlchemy 2.1 would
    otherwise pick MariaDB's native UUID (>= 10.7) and 2.0 CHAR(32)."""
    return backend == "postgresql"


def mariadb_native_uuid_by_default(engine: AsyncEngine, backend: str) -> bool:
    dialect = engine.dialect
    return (
        backend == "mysql"
        and SA_VERSION >= (2, 1)
        and bool(getattr(dialect, "is_mariadb", False))
        and (dialect.server_version_info or (0,)) >= (10, 7)
    )


async def test_uuid_column_type_per_backend(engine: AsyncEngine, sessionmaker: Any, backend: str) -> None:
    async with engine.connect() as conn:
        columns = await conn.run_sync(
            lambda sync: {c["name"]: c["type"] for c in inspect(sync).get_columns("bm_things")}
        )
    ddl_type = columns["id"].compile(dialect=engine.dialect).upper()
    if native_uuid_expected(engine, backend):
        assert ddl_type == "UUID"
    else:  # 32 hex characters, no dashes
        assert ddl_type in ("CHAR(32)", "VARCHAR(32)"), ddl_type


@pytest.mark.only_backends("mysql")  # the UUID storage question is MySQL/MariaDB's
async def test_mariadb_uuid_columns_made_by_sqlalchemy_2_0_need_care_on_2_1(engine: AsyncEngine, backend: str) -> None:
    """Upgrade hazard: 2.0 made CHAR(32) (hex) columns on MariaDB; 2.1 binds Uuid values as
    36-character strings there, so old rows are not found and inserts fail. Pinning the storage
    with Uuid().with_variant(Uuid(native_uuid=False), "mysql", "mariadb") keeps both lines alike.
    Only MariaDB >= 10.7 under SQLAlchemy 2.1 changes the storage: on 2.0 (and on MySQL) plain
    Uuid still means CHAR(32) and finds the old rows, which is asserted instead."""
    native = mariadb_native_uuid_by_default(engine, backend)
    assert Uuid().compile(dialect=engine.dialect).upper() == ("UUID" if native else "CHAR(32)")
    key = uuid.uuid4()
    legacy = Table("bm_legacy_ids", MetaData(), Column("id", Uuid, primary_key=True))
    pinned = Table(
        "bm_legacy_ids",
        MetaData(),
        Column("id", Uuid().with_variant(Uuid(native_uuid=False), "mysql", "mariadb"), primary_key=True),
    )
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS bm_legacy_ids"))
        await conn.execute(text("CREATE TABLE bm_legacy_ids (id CHAR(32) NOT NULL PRIMARY KEY)"))  # as 2.0 made it
        await conn.execute(text("INSERT INTO bm_legacy_ids (id) VALUES (:hex)"), {"hex": key.hex})
    try:
        async with engine.connect() as conn:
            found = (await conn.execute(select(legacy.c.id).where(legacy.c.id == key))).scalars().all()
            assert found == ([] if native else [key])  # 2.1 on MariaDB >= 10.7: silently missed
            assert (await conn.execute(select(pinned.c.id).where(pinned.c.id == key))).scalar_one() == key
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DROP TABLE bm_legacy_ids"))


# --- Timestamps ----------------------------------------------------------------------------


async def test_timestamps_read_back_as_aware_utc(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    thing = await insert_thing(sessionmaker)
    assert_aware_utc(thing.created_at)
    again = await read_thing(sessionmaker, thing.id)
    assert_aware_utc(again.created_at)
    assert_aware_utc(again.updated_at)
    assert again.deleted_at is None and again.due_at is None


async def test_other_offsets_are_stored_as_the_same_instant_in_utc(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    local = datetime(2024, 5, 1, 12, 30, 15, tzinfo=PLUS_FIVE)
    thing = await insert_thing(sessionmaker, created_at=local, due_at=local)
    again = await read_thing(sessionmaker, thing.id)
    for value in (again.created_at, again.due_at):
        assert_aware_utc(value)
        assert value == local and value.hour == 7  # same instant, shown in UTC

    # Core queries go through the type as well (filters and results).
    async with sessionmaker() as session:
        found = await session.scalar(
            select(BmThing.due_at).where(
                BmThing.id == thing.id, BmThing.due_at == datetime(2024, 5, 1, 7, 30, 15, tzinfo=timezone.utc)
            )
        )
    assert_aware_utc(found)


MYSQL_FRACTIONS = (
    "MySQL/MariaDB DATETIME keeps no fractional seconds unless declared DATETIME(fsp=6): microseconds are "
    "lost (MariaDB truncates, MySQL rounds). Fix in UTCDateTime: "
    "impl = DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), 'mysql', 'mariadb')"
)


async def test_microseconds_survive_the_round_trip(
    sessionmaker: async_sessionmaker[AsyncSession], backend: str
) -> None:
    # MYSQL_FRACTIONS explains why UTCDateTime declares DATETIME(fsp=6) on MySQL/MariaDB.
    precise = datetime(2024, 5, 1, 7, 30, 15, 987654, tzinfo=timezone.utc)
    thing = await insert_thing(sessionmaker, due_at=precise)
    assert (await read_thing(sessionmaker, thing.id)).due_at == precise


async def test_naive_datetime_is_rejected_and_nothing_is_written(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    code = new_code()
    async with sessionmaker() as session:
        session.add(BmThing(code=code, due_at=datetime(2024, 5, 1, 12, 0)))
        with pytest.raises(StatementError, match="naive datetime") as caught:
            await session.flush()
        assert isinstance(caught.value.orig, ValueError)
        await session.rollback()
        # Naive values in filters are refused too, instead of being compared as if they were UTC.
        with pytest.raises(StatementError, match="naive datetime"):
            await session.scalar(select(BmThing).where(BmThing.created_at < datetime(2030, 1, 1)))
        await session.rollback()
        assert await session.scalar(select(BmThing).where(BmThing.code == code)) is None


def test_utcdatetime_bind_processing_without_a_database() -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    kind = UTCDateTime()
    local = datetime(2024, 1, 1, 5, 0, tzinfo=PLUS_FIVE)
    assert kind.process_bind_param(local, postgresql.dialect()) == datetime(2024, 1, 1, 0, 0, tzinfo=timezone.utc)
    for dialect in (sqlite.dialect(), mysql.dialect()):
        stored = kind.process_bind_param(local, dialect)
        assert stored == datetime(2024, 1, 1, 0, 0) and stored is not None and stored.tzinfo is None
    assert kind.process_bind_param(None, sqlite.dialect()) is None
    with pytest.raises(ValueError, match="naive"):
        kind.process_bind_param(datetime(2024, 1, 1), sqlite.dialect())


async def test_updated_at_moves_on_orm_and_core_updates(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    old = datetime(2020, 1, 1, tzinfo=timezone.utc)
    thing = await insert_thing(sessionmaker, created_at=old, updated_at=old)

    async with sessionmaker() as session, session.begin():
        loaded = await session.get(BmThing, thing.id)
        assert loaded is not None and loaded.updated_at == old
        loaded.qty = 1
    after_orm = await read_thing(sessionmaker, thing.id)
    assert after_orm.updated_at > old and after_orm.created_at == old

    # A Core/bulk UPDATE also applies the column's onupdate (but not the version counter).
    async with sessionmaker() as session, session.begin():
        await session.execute(update(BmThing).where(BmThing.id == thing.id).values(updated_at=old))
        await session.execute(update(BmThing).where(BmThing.id == thing.id).values(qty=2))
    after_core = await read_thing(sessionmaker, thing.id)
    assert after_core.qty == 2 and after_core.updated_at > old
    assert after_core.version_id == after_orm.version_id  # bulk UPDATE bypasses optimistic locking


async def test_no_change_no_update(engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    thing = await insert_thing(sessionmaker)
    async with sessionmaker() as session, session.begin():
        loaded = await session.get(BmThing, thing.id)
        assert loaded is not None
        stored_updated_at = loaded.updated_at  # as stored (MySQL/MariaDB: whole seconds)
        loaded.qty = loaded.qty  # same value: not a change
        with capture_parameters(engine) as seen:
            await session.flush()
    assert not [s for s, _ in seen if s.lstrip().upper().startswith("UPDATE")]
    assert (await read_thing(sessionmaker, thing.id)).updated_at == stored_updated_at


# --- Soft delete ---------------------------------------------------------------------------


async def test_soft_delete_hides_rows_from_live(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    prefix = new_code()
    async with sessionmaker() as session, session.begin():
        things = [BmThing(code=f"{prefix}-{i}") for i in range(3)]
        session.add_all(things)
        await session.flush()
        things[1].soft_delete()
    async with sessionmaker() as session:
        mine = BmThing.code.startswith(prefix)
        live = (await session.scalars(select(BmThing.code).where(mine, BmThing.live()).order_by(BmThing.code))).all()
        everything = (await session.scalars(select(BmThing).where(mine))).all()
    assert live == [f"{prefix}-0", f"{prefix}-2"]
    assert len(everything) == 3  # still in the table
    deleted = [t for t in everything if t.deleted_at is not None]
    assert [t.code for t in deleted] == [f"{prefix}-1"]
    assert_aware_utc(deleted[0].deleted_at)


# --- Optimistic locking --------------------------------------------------------------------


async def test_stale_update_raises_stale_data_error(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    thing = await insert_thing(sessionmaker, qty=1)
    # Two users load the same row (e.g. two requests); each read transaction has ended.
    async with sessionmaker() as alice, sessionmaker() as bob:
        async with alice.begin():
            mine = await alice.get(BmThing, thing.id)
        async with bob.begin():
            theirs = await bob.get(BmThing, thing.id)
        assert mine is not None and theirs is not None and mine.version_id == theirs.version_id == 1

        async with alice.begin():
            mine.qty = 10
        assert mine.version_id == 2

        with pytest.raises(StaleDataError):
            async with bob.begin():
                theirs.qty = 20  # based on version 1: UPDATE ... WHERE version_id = 1 matches 0 rows

    stored = await read_thing(sessionmaker, thing.id)
    assert (stored.qty, stored.version_id) == (10, 2)  # Alice's write kept, Bob's refused


async def test_stale_update_with_both_transactions_open(
    sessionmaker: async_sessionmaker[AsyncSession], backend: str
) -> None:
    """Both sessions keep their read transaction open. PostgreSQL (READ COMMITTED) and MariaDB
    (REPEATABLE READ; UPDATE sees the latest committed row) match 0 rows -> StaleDataError.
    SQLite (WAL) cannot upgrade Bob's older read snapshot to a write: "database is locked".
    Either way Bob's write is refused."""
    thing = await insert_thing(sessionmaker, qty=1)
    async with sessionmaker() as alice, sessionmaker() as bob:
        mine = await alice.get(BmThing, thing.id)
        theirs = await bob.get(BmThing, thing.id)
        assert mine is not None and theirs is not None
        mine.qty = 10
        await alice.commit()
        theirs.qty = 20
        expected = OperationalError if backend == "sqlite" else StaleDataError
        with pytest.raises(expected):
            await bob.commit()
        await bob.rollback()
    stored = await read_thing(sessionmaker, thing.id)
    assert (stored.qty, stored.version_id) == (10, 2)


async def test_stale_delete_raises_stale_data_error(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    thing = await insert_thing(sessionmaker)
    async with sessionmaker() as alice, sessionmaker() as bob:
        async with bob.begin():
            theirs = await bob.get(BmThing, thing.id)
        async with alice.begin():
            mine = await alice.get(BmThing, thing.id)
            assert mine is not None
            mine.qty = 5
        with pytest.raises(StaleDataError):
            async with bob.begin():
                await bob.delete(theirs)
    assert (await read_thing(sessionmaker, thing.id)).qty == 5


# --- Naming convention ---------------------------------------------------------------------

EXPECTED_NAMES = {
    "pk": "pk_bm_things",
    "uq": "uq_bm_things_code",
    "fk": "fk_bm_things_owner_id_bm_owners",
    "ix": "ix_bm_things_owner_id",
    "ck": "ck_bm_things_qty_non_negative",
}


def test_naming_convention_in_metadata() -> None:
    table = BmThing.__table__
    names = {type(c).__name__: c.name for c in table.constraints}
    assert names["PrimaryKeyConstraint"] == EXPECTED_NAMES["pk"]
    assert names["UniqueConstraint"] == EXPECTED_NAMES["uq"]
    assert names["ForeignKeyConstraint"] == EXPECTED_NAMES["fk"]
    assert names["CheckConstraint"] == EXPECTED_NAMES["ck"]
    assert {i.name for i in table.indexes} == {EXPECTED_NAMES["ix"]}


async def test_naming_convention_in_the_database(engine: AsyncEngine, sessionmaker: Any, backend: str) -> None:
    def reflect(sync: Any) -> dict[str, Any]:
        insp = inspect(sync)
        return {
            "pk": insp.get_pk_constraint("bm_things")["name"],
            "uq": {u["name"] for u in insp.get_unique_constraints("bm_things")},
            "fk": {f["name"] for f in insp.get_foreign_keys("bm_things")},
            "ix": {i["name"] for i in insp.get_indexes("bm_things")},
            "ck": {c["name"] for c in insp.get_check_constraints("bm_things")},
        }

    async with engine.connect() as conn:
        found = await conn.run_sync(reflect)
    # MySQL/MariaDB ignore a primary key's name (it is always PRIMARY; reflection reports None).
    assert found["pk"] == (None if backend == "mysql" else EXPECTED_NAMES["pk"])
    assert EXPECTED_NAMES["uq"] in found["uq"]
    assert found["fk"] == {EXPECTED_NAMES["fk"]}
    assert EXPECTED_NAMES["ix"] in found["ix"]
    assert EXPECTED_NAMES["ck"] in found["ck"]


async def test_check_constraint_is_enforced(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        session.add(BmThing(code=new_code(), qty=-1))
        # MariaDB reports a violated CHECK as error 4025 (IntegrityError in aiomysql/pymysql >= 1.1,
        # OperationalError in older versions); the others raise IntegrityError.
        with pytest.raises((IntegrityError, OperationalError), match="(?i)check|qty_non_negative"):
            await session.flush()
        await session.rollback()


async def test_raw_sql_bypasses_the_type(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession], backend: str
) -> None:
    """text() results are not processed by UTCDateTime: naive on SQLite/MySQL (a str on SQLite)."""
    thing = await insert_thing(sessionmaker)
    key = thing.id if backend == "postgresql" else thing.id.hex
    async with engine.connect() as conn:
        raw = (await conn.execute(text("SELECT created_at FROM bm_things WHERE id = :id"), {"id": key})).scalar_one()
    if backend == "postgresql":
        assert raw.tzinfo is not None
    else:
        assert isinstance(raw, str) or raw.tzinfo is None

"""A schema made by the skill's Alembic setup equals the one ``create_all`` makes, on every backend.

The user's models use every type and mixin of templates/base_model.py. One fresh database gets
``setup-alembic`` + ``generate-migration`` + ``alembic upgrade head``, another
``Base.metadata.create_all``; their columns (type, nullability), indexes and unique constraints
must match. This caught env.py's ``render_item`` writing ``UTCDateTime`` as a bare
``sa.DateTime(timezone=True)``: on MySQL/MariaDB the migrated columns were ``DATETIME`` (whole
seconds) instead of ``DATETIME(6)``, and ``alembic check`` did not notice.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_project.harness import SCRIPTS, SKILL, alembic, script

sys.path.insert(0, str(SCRIPTS))
from scratch_db import scratch_database

pytestmark = pytest.mark.slow

MODELS = """\
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from parity_app.base_model import Base, SoftDeleteMixin, TimestampMixin, UUIDPrimaryKeyMixin, VersionedMixin


class ApItem(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, VersionedMixin, Base):
    __tablename__ = "ap_items"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    due: Mapped[datetime | None]


class ApNote(Base):
    __tablename__ = "ap_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ap_items.id", ondelete="CASCADE"), index=True)
    written_at: Mapped[datetime]
"""


def make_project(tmp: Path) -> Path:
    project = tmp / "parity project"
    package = project / "parity_app"
    package.mkdir(parents=True)
    (package / "base_model.py").write_text((SKILL / "templates" / "base_model.py").read_text())
    (package / "models.py").write_text(MODELS)
    return project


def describe_schema(conn: Connection) -> dict[str, Any]:
    """Per table: columns (type as the database reports it, rendered in its dialect: ``str()`` would
    print a MySQL ``DATETIME(6)`` as ``DATETIME``; nullability), index and unique names."""
    insp = inspect(conn)
    schema: dict[str, Any] = {}
    for table in sorted(t for t in insp.get_table_names() if t.startswith("ap_")):
        schema[table] = {
            "columns": {
                c["name"]: (c["type"].compile(dialect=conn.dialect), c["nullable"]) for c in insp.get_columns(table)
            },
            "indexes": sorted(str(i["name"]) for i in insp.get_indexes(table)),
            "unique": sorted(str(u["name"]) for u in insp.get_unique_constraints(table)),
        }
    return schema


async def schema_of(url: str, create_all: bool) -> dict[str, Any]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        if create_all:
            from parity_app.models import Base  # type: ignore[import-not-found]

            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
        async with engine.connect() as conn:
            return await conn.run_sync(describe_schema)
    finally:
        await engine.dispose()


async def microseconds_round_trip(url: str) -> tuple[datetime, datetime]:
    """Store an aware datetime with microseconds through the model; read it back from the row."""
    from parity_app.models import ApItem  # type: ignore[import-not-found]

    from templates.database import DatabaseSettings, create_db_engine, create_sessionmaker

    engine = create_db_engine(DatabaseSettings(url=url))
    try:
        sessions = create_sessionmaker(engine)
        due = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
        async with sessions() as session, session.begin():
            item = ApItem(name=f"rt-{uuid.uuid4().hex[:8]}", due=due)
            session.add(item)
        async with sessions() as session:
            stored = await session.scalar(select(ApItem.due).where(ApItem.id == item.id))
        assert stored is not None
        return due, stored
    finally:
        await engine.dispose()


def test_alembic_schema_matches_create_all(server_url: str, backend: str, tmp_path: Path) -> None:
    project = make_project(tmp_path)
    sys.path.insert(0, str(project))
    try:
        setup = script("setup-alembic", "--metadata", "parity_app.models:Base.metadata", "--json", cwd=project)
        assert setup.code == 0, setup.describe()
        base = make_url(server_url)
        with scratch_database(base) as migrated_url, scratch_database(base) as created_url:
            migrated = migrated_url.render_as_string(hide_password=False)
            created = created_url.render_as_string(hide_password=False)
            generated = script("generate-migration", "initial schema", "--json", cwd=project, url=migrated)
            assert generated.code == 0, generated.describe()
            revision = Path(generated.json["revision_file"]).read_text()
            assert "parity_app" not in revision  # types rendered from SQLAlchemy, no app import
            upgraded = alembic("upgrade", "head", cwd=project, url=migrated)
            assert upgraded.code == 0, upgraded.describe()
            checked = alembic("check", cwd=project, url=migrated)
            assert checked.code == 0 and "No new upgrade operations detected" in checked.text, checked.describe()

            by_alembic = asyncio.run(schema_of(migrated, create_all=False))
            by_create_all = asyncio.run(schema_of(created, create_all=True))
            assert set(by_alembic) == {"ap_items", "ap_notes"}
            assert by_alembic == by_create_all
            if backend == "mysql":
                assert by_alembic["ap_items"]["columns"]["created_at"][0] == "DATETIME(6)"
                assert by_alembic["ap_items"]["columns"]["id"][0] == "CHAR(32)"

            sent, stored = asyncio.run(microseconds_round_trip(migrated))
            assert stored == sent and stored.microsecond == 123456 and stored.tzinfo is not None
    finally:
        sys.path.remove(str(project))
        for name in [m for m in sys.modules if m == "parity_app" or m.startswith("parity_app.")]:
            del sys.modules[name]

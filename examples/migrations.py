"""Alembic with async SQLAlchemy, end to end, on a throwaway project.

Shows, against DATABASE_URL (default: embedded SQLite) inside a scratch namespace:

1. setup (scripts/setup-alembic.py writes alembic.ini + the async env.py), autogenerate a first
   revision, review it (scripts/migration_tools.review_revision), upgrade;
2. change a model -> autogenerate exactly one ``add_column`` -> upgrade;
3. a data migration that backfills the new column in batches through ``op.get_bind()``;
4. a column type change: on SQLite it is rendered in batch mode (copy the table); downgrade
   and upgrade again, rows intact;
5. an async app (FastAPI lifespan) running ``upgrade head`` at startup from inside its event
   loop, by handing Alembic a connection (``config.attributes["connection"]``). The app's own
   SQLite engine (PRAGMA foreign_keys=ON) is refused by env.py: batch mode would cascade-delete.

Use when: adding Alembic to an async project, writing a data migration, or migrating at startup.
Run: ``python examples/migrations.py`` (DATABASE_URL optional).
"""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, redirect_stdout
from pathlib import Path
from typing import Any

SKILL = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(SKILL))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from sqlalchemy import inspect, text  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from scripts.migration_tools import review_revision  # noqa: E402
from templates.query_counter import count_queries  # noqa: E402
from templates.scratch import scratch_url  # noqa: E402
from templates.session_manager import DatabaseSettings, create_engine  # noqa: E402

MODELS = '''\
from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mig_app.base_model import Base


class MigNote(Base):
    __tablename__ = "mig_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str | None] = mapped_column(Text)
'''
SLUG_COLUMN = "    slug: Mapped[str | None] = mapped_column(String(120))\n"

# The body of a hand-written revision: fill mig_notes.slug in batches. One UPDATE ... SET
# slug = f(title) is better when SQL can compute the value; batches are for Python-side logic.
# Everything still runs in the migration's transaction (PostgreSQL: all or nothing).
BACKFILL = '''
import re

BATCH_SIZE = 100
notes = sa.table("mig_notes", sa.column("id", sa.Integer), sa.column("title", sa.String), sa.column("slug", sa.String))


def slugify(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def upgrade() -> None:
    bind = op.get_bind()  # the migration's connection (sync API inside env.py's run_sync)
    last_id = 0
    while True:  # keyset pagination: each batch starts after the last id seen
        rows = bind.execute(
            sa.select(notes.c.id, notes.c.title)
            .where(notes.c.id > last_id, notes.c.slug.is_(None))
            .order_by(notes.c.id)
            .limit(BATCH_SIZE)
        ).all()
        if not rows:
            break
        bind.execute(
            notes.update().where(notes.c.id == sa.bindparam("row_id")).values(slug=sa.bindparam("new_slug")),
            [{"row_id": row.id, "new_slug": slugify(row.title)} for row in rows],
        )
        last_id = rows[-1].id


def downgrade() -> None:
    op.execute(notes.update().values(slug=None))
'''


def upgrade_to_head(connection: Connection, config: Config) -> None:
    """Runs inside ``AsyncConnection.run_sync``: env.py uses this connection, starts no event loop."""
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate_at_startup(url: str, connect_args: dict[str, Any], config: Config) -> None:
    """``alembic upgrade head`` from async code, on a plain NullPool engine of its own."""
    engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to_head, config)
    finally:
        await engine.dispose()


def make_app(url: str, connect_args: dict[str, Any], config: Config) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await migrate_at_startup(url, connect_args, config)  # before the first request
        app.state.engine = create_engine(DatabaseSettings(url=url, connect_args=connect_args))
        try:
            yield
        finally:
            await app.state.engine.dispose()

    return FastAPI(lifespan=lifespan)


class Project:
    """A user's project in a temp folder, driven through Alembic's Python API."""

    def __init__(self, root: Path, engine: AsyncEngine) -> None:
        self.root, self.engine = root, engine
        (root / "mig_app").mkdir(parents=True)
        shutil.copy(SKILL / "templates" / "base_model.py", root / "mig_app" / "base_model.py")
        self.write_models(MODELS)

    def write_models(self, source: str) -> None:
        (self.root / "mig_app" / "models.py").write_text(source)
        for name in [m for m in sys.modules if m == "mig_app" or m.startswith("mig_app.")]:
            del sys.modules[name]  # env.py imports the models afresh, like a new `alembic` process

    def config(self) -> Config:
        return Config(str(self.root / "alembic.ini"), stdout=io.StringIO())

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def call(connection: Connection) -> Any:
            config = self.config()
            config.attributes["connection"] = connection
            return fn(config, *args, **kwargs)

        async with self.engine.begin() as conn:
            with redirect_stdout(io.StringIO()):  # alembic prints "Generating ... done"
                return await conn.run_sync(call)

    async def generate(self, message: str) -> Any:
        script = await self.run(command.revision, message=message, autogenerate=True)
        review = review_revision(script.path, self.engine.dialect.name)
        print(f"  {Path(script.path).name}: {[o.describe() for o in review.operations]}"
              f" warnings={[w.rule for w in review.warnings]}")
        return script, review

    async def columns(self, table: str) -> dict[str, str]:
        async with self.engine.connect() as conn:
            cols = await conn.run_sync(lambda c: inspect(c).get_columns(table))
        return {c["name"]: str(c["type"]) for c in cols}

    async def current(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


async def main() -> None:
    async with scratch_url() as (url_obj, connect_args):
        url = url_obj.render_as_string(hide_password=False)
        # Migrations get a plain engine: no pool, and on SQLite no PRAGMA foreign_keys=ON.
        engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
        try:
            with tempfile.TemporaryDirectory(prefix="asp-alembic-") as tmp:
                await walkthrough(Project(Path(tmp) / "demo project", engine), url, connect_args)
        finally:
            await engine.dispose()
    print("migrations: ok")


async def walkthrough(project: Project, url: str, connect_args: dict[str, Any]) -> None:
    dialect = project.engine.dialect.name
    setup = subprocess.run(
        [sys.executable, str(SKILL / "scripts" / "setup-alembic.py"), "--metadata", "mig_app.models:Base.metadata",
         "--project", str(project.root), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    if setup.returncode != 0:
        raise AssertionError(f"setup-alembic failed: {setup.stderr}")
    print(f"1. setup-alembic wrote {[f['path'] for f in json.loads(setup.stdout)['files']]} ({dialect})")

    first, review = await project.generate("create notes")
    assert [o.op for o in review.operations] == ["create_table"], review.operations
    await project.run(command.upgrade, "head")
    assert await project.current() == first.revision

    print("2. model change: add MigNote.slug")
    project.write_models(MODELS + SLUG_COLUMN)
    second, review = await project.generate("add note slug")
    assert [o.op for o in review.operations] == ["add_column"] and not review.warnings, review
    await project.run(command.upgrade, "head")
    assert "slug" in await project.columns("mig_notes")

    async with project.engine.begin() as conn:
        await conn.execute(text("INSERT INTO mig_notes (title) VALUES (:title)"),
                           [{"title": f"Note number {i}!"} for i in range(250)])
    backfill = await project.run(command.revision, message="backfill note slugs")
    source = Path(backfill.path).read_text()
    head, _, _ = source.partition("\ndef upgrade() -> None:")
    Path(backfill.path).write_text(head + BACKFILL)
    with count_queries(project.engine) as queries:
        await project.run(command.upgrade, "head")
    updates = [s for s in queries.statements if s.lstrip().upper().startswith("UPDATE MIG_NOTES")]
    async with project.engine.connect() as conn:
        missing = await conn.scalar(text("SELECT count(*) FROM mig_notes WHERE slug IS NULL"))
        sample = await conn.scalar(text("SELECT slug FROM mig_notes WHERE title = 'Note number 7!'"))
    assert missing == 0 and sample == "note-number-7", (missing, sample)
    assert len(updates) == 3, updates  # 250 rows, batches of 100 -> 3 executemany UPDATEs
    print(f"3. data migration: 250 slugs backfilled with {len(updates)} batched UPDATEs via op.get_bind()")

    project.write_models((MODELS + SLUG_COLUMN).replace("String(100)", "String(200)"))
    widen, review = await project.generate("widen note title")
    batch = "batch_alter_table" in Path(widen.path).read_text()
    assert batch == (dialect == "sqlite"), "render_as_batch is on for SQLite only"
    assert [w.rule for w in review.warnings] == ["type_change"], review.warnings
    await project.run(command.upgrade, "head")
    assert "200" in (await project.columns("mig_notes"))["title"]
    await project.run(command.downgrade, "-1")
    assert "100" in (await project.columns("mig_notes"))["title"]
    await project.run(command.upgrade, "head")
    async with project.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM mig_notes WHERE slug IS NOT NULL")) == 250
    how = "batch mode (table copied)" if batch else "ALTER TABLE"
    print(f"4. title VARCHAR(100) -> VARCHAR(200) by {how}; downgrade -1 and upgrade again kept all 250 rows")

    await project.run(command.downgrade, "base")
    assert await project.current() is None
    app = make_app(url, connect_args, project.config())
    async with app.router.lifespan_context(app):
        async with app.state.engine.connect() as conn:
            rows = await conn.scalar(text("SELECT count(*) FROM mig_notes"))
        assert rows == 0 and await project.current() == widen.revision
    print(f"5. FastAPI lifespan ran upgrade head at startup: base -> {widen.revision}")

    if dialect == "sqlite":  # the app's engine (templates.session_manager) turns foreign keys on
        app_engine = create_engine(DatabaseSettings(url=url, connect_args=connect_args))
        try:
            async with app_engine.begin() as conn:
                await conn.run_sync(upgrade_to_head, project.config())
        except RuntimeError as exc:
            assert "foreign_keys=ON" in str(exc)
            print("   env.py refused the app's SQLite engine: PRAGMA foreign_keys=ON + batch mode = cascade deletes")
        else:
            raise AssertionError("env.py should refuse a SQLite connection with foreign keys on")
        finally:
            await app_engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())

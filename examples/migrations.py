"""Alembic with async SQLAlchemy, end to end, on a throwaway project.

Shows, against DATABASE_URL (default: embedded SQLite) inside a scratch namespace:

1. setup (``scripts/setup-alembic.sh`` writes alembic.ini + the async env.py), see what
   autogenerate will find (Alembic's ``compare_metadata``), generate the first revision, upgrade;
2. change a model -> autogenerate exactly one ``add_column`` -> upgrade;
3. a data migration that backfills the new column in batches through ``op.get_bind()``;
4. a column type change: on SQLite it is rendered in batch mode (copy the table); downgrade
   and upgrade again, rows intact;
5. migrating at start-up (``templates/migrate_at_startup.py``): a FastAPI lifespan runs
   ``upgrade head`` from inside its event loop by handing Alembic a connection, under a database
   lock (PostgreSQL advisory lock, MariaDB ``GET_LOCK``), so with several workers exactly one
   migrates and the others wait and find the schema at head - shown here with three workers
   starting at once on the server backends. The app's own SQLite engine (PRAGMA foreign_keys=ON)
   is refused by env.py: batch mode would cascade-delete.

Several real processes: ``create_app`` is the factory for ``uvicorn --workers 4 --factory
examples.migrations:create_app`` with ``DATABASE_URL`` and ``ALEMBIC_CONFIG`` (the path of an
alembic.ini) set; each worker prints one line saying whether it migrated.

Use when: adding Alembic to an async project, writing a data migration, or migrating at startup.
Run: ``python examples/migrations.py`` (DATABASE_URL optional).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import io
import json
import os
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

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from templates.database import DatabaseSettings, create_db_engine
from templates.migrate_at_startup import MigrationRun, migrate_at_startup, upgrade
from templates.query_counter import count_queries
from templates.scratch import scratch_url

MODELS = """\
from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mig_app.base_model import Base


class MigNote(Base):
    __tablename__ = "mig_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str | None] = mapped_column(Text)
"""
SLUG_COLUMN = "    slug: Mapped[str | None] = mapped_column(String(120))\n"

# The body of a hand-written revision: fill mig_notes.slug in batches. One UPDATE ... SET
# slug = f(title) is better when SQL can compute the value; batches are for Python-side logic.
# Everything still runs in the migration's transaction (PostgreSQL: all or nothing).
BACKFILL = """
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
"""


def make_app(url: str, connect_args: dict[str, Any], config: Config, runs: list[MigrationRun] | None = None) -> FastAPI:
    """An app whose lifespan migrates before the first request (under the migration lock)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        migrations = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)  # a plain engine
        try:
            run = await migrate_at_startup(migrations, config)
        finally:
            await migrations.dispose()
        if runs is not None:
            runs.append(run)
        print(
            f"worker {os.getpid()}: {'migrated' if run.migrated else 'found head'} {run.before} -> {run.after}"
            f" after waiting {run.waited:.2f} s for the lock",
            flush=True,
        )
        app.state.engine = create_db_engine(DatabaseSettings(url=url, connect_args=connect_args))
        try:
            yield
        finally:
            await app.state.engine.dispose()

    return FastAPI(lifespan=lifespan)


def create_app() -> FastAPI:
    """``uvicorn --workers N --factory examples.migrations:create_app``: DATABASE_URL, ALEMBIC_CONFIG."""
    return make_app(os.environ["DATABASE_URL"], {}, Config(os.environ["ALEMBIC_CONFIG"], stdout=io.StringIO()))


def change_kinds(diffs: list[Any]) -> list[str]:
    """``compare_metadata`` output as operation names (column changes come as a nested list)."""
    return [diff[0] if isinstance(diff, tuple) else diff[0][0] for diff in diffs]


class Project:
    """A user's project in a temp folder, driven through Alembic's Python API."""

    def __init__(self, root: Path, engine: AsyncEngine) -> None:
        self.root, self.engine = root, engine
        sys.path.insert(0, str(root))  # env.py does the same: the project root imports mig_app
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

    def metadata(self) -> MetaData:
        metadata: MetaData = importlib.import_module("mig_app.models").Base.metadata
        return metadata

    async def changes(self) -> list[str]:
        """What autogenerate will find: the models compared with the database (Alembic's own API)."""

        def compare(connection: Connection) -> list[Any]:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, self.metadata())

        async with self.engine.connect() as conn:
            return change_kinds(await conn.run_sync(compare))

    async def generate(self, message: str) -> tuple[Any, list[str]]:
        changes = await self.changes()
        script = await self.run(command.revision, message=message, autogenerate=True)
        print(f"  {Path(script.path).name}: {changes}")
        return script, changes

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
        [
            sys.executable,
            str(SKILL / "scripts" / "setup-alembic.py"),
            "--metadata",
            "mig_app.models:Base.metadata",
            "--project",
            str(project.root),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if setup.returncode != 0:
        raise AssertionError(f"setup-alembic failed: {setup.stderr}")
    print(f"1. setup-alembic wrote {[f['path'] for f in json.loads(setup.stdout)['files']]} ({dialect})")

    first, changes = await project.generate("create notes")
    assert changes == ["add_table"], changes
    await project.run(command.upgrade, "head")
    assert await project.current() == first.revision

    print("2. model change: add MigNote.slug")
    project.write_models(MODELS + SLUG_COLUMN)
    second, changes = await project.generate("add note slug")
    assert changes == ["add_column"], changes
    await project.run(command.upgrade, "head")
    assert "slug" in await project.columns("mig_notes")

    async with project.engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO mig_notes (title) VALUES (:title)"), [{"title": f"Note number {i}!"} for i in range(250)]
        )
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
    widen, changes = await project.generate("widen note title")
    batch = "batch_alter_table" in Path(widen.path).read_text()
    assert batch == (dialect == "sqlite"), "render_as_batch is on for SQLite only"
    assert changes == ["modify_type"], changes  # review type changes: they can rewrite or truncate
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
    runs: list[MigrationRun] = []
    workers = 1 if dialect == "sqlite" else 3  # SQLite takes no lock: one process migrates it
    apps = [make_app(url, connect_args, project.config(), runs) for _ in range(workers)]
    async with contextlib.AsyncExitStack() as started:  # every "worker" starts at the same time
        await asyncio.gather(*(started.enter_async_context(app.router.lifespan_context(app)) for app in apps))
        async with apps[0].state.engine.connect() as conn:
            rows = await conn.scalar(text("SELECT count(*) FROM mig_notes"))
            versions = await conn.scalar(text("SELECT count(*) FROM alembic_version"))
        assert rows == 0 and versions == 1 and await project.current() == widen.revision
    assert [run.migrated for run in runs].count(True) == 1, runs
    print(
        f"5. {workers} app lifespan(s) started at once: one ran upgrade head base -> {widen.revision}, "
        f"{workers - 1} waited for the lock and found head; alembic_version has 1 row"
    )

    if dialect == "sqlite":  # the app's engine (templates.database) turns foreign keys on
        app_engine = create_db_engine(DatabaseSettings(url=url, connect_args=connect_args))
        try:
            async with app_engine.begin() as conn:
                await conn.run_sync(upgrade, project.config(), "head")
        except RuntimeError as exc:
            assert "foreign_keys=ON" in str(exc)
            print("   env.py refused the app's SQLite engine: PRAGMA foreign_keys=ON + batch mode = cascade deletes")
        else:
            raise AssertionError("env.py should refuse a SQLite connection with foreign keys on")
        finally:
            await app_engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())

"""Alembic environment for an async SQLAlchemy 2.x project (copied by scripts/setup-alembic.sh).

Where things come from:
- target metadata: ``target_metadata = MODULE:ATTR`` in alembic.ini (``setup-alembic.sh --metadata``);
  models spread over several modules (SQLModel's ``SQLModel.metadata`` starts empty) are imported
  first from ``import_models = PACKAGE ...`` (every submodule; tests and migrations skipped);
- database URL: ``sqlalchemy.url`` if a caller set it (``config.set_main_option``), else the
  ``DATABASE_URL`` environment variable at migration time. It is never stored in alembic.ini.
- a live connection: an async app can hand one in via ``config.attributes["connection"]`` and run
  ``command.upgrade`` from inside its event loop (see templates/migrate_at_startup.py).

Autogenerate compares column types (``compare_type``), uses batch mode (table copy) on SQLite,
renders TypeDecorators as their SQLAlchemy implementation type, dialect variants included (so
revision files never import application code) and writes no file when nothing changed.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import pkgutil
import sys
from logging.config import fileConfig
from pathlib import Path
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import async_engine_from_config
from sqlalchemy.types import TypeDecorator, TypeEngine

config = context.config
handed_in: Connection | None = config.attributes.get("connection")

# The project root (the folder holding alembic.ini) must be importable for the metadata module.
if config.config_file_name is not None:
    project_root = str(Path(config.config_file_name).resolve().parent)
    if project_root not in sys.path:
        sys.path.insert(0, project_root)
    # An app that hands in its connection owns logging; don't reconfigure (or silence) its loggers.
    if handed_in is None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)


SKIPPED_PARTS = ("test", "tests", "conftest", "alembic", "migrations", "__main__")


def import_models(names: str | None) -> None:
    """Import each module of ``import_models`` and, for a package, every submodule in it, so every
    model class has registered its table in the metadata before autogenerate compares."""
    for name in (names or "").replace(",", " ").split():
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), prefix=f"{name}."):
            parts = info.name.split(".")
            if not any(part in SKIPPED_PARTS or part.startswith("test_") for part in parts):
                importlib.import_module(info.name)


def load_metadata(spec: str | None) -> MetaData | list[MetaData]:
    """Import ``MODULE:ATTR`` (ATTR may be dotted, e.g. ``Base.metadata``)."""
    if not spec or ":" not in spec:
        raise RuntimeError("alembic.ini needs 'target_metadata = MODULE:ATTR' (e.g. app.models:Base.metadata)")
    module_name, _, attr = spec.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, MetaData):
        return obj
    if isinstance(getattr(obj, "metadata", None), MetaData):  # a declarative Base was named
        return obj.metadata  # type: ignore[no-any-return]
    if isinstance(obj, (list, tuple)) and all(isinstance(m, MetaData) for m in obj):
        return list(obj)
    raise RuntimeError(f"target_metadata {spec!r} is a {type(obj).__name__}, not a MetaData")


import_models(config.get_main_option("import_models"))
target_metadata = load_metadata(config.get_main_option("target_metadata"))


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("set DATABASE_URL (e.g. postgresql+asyncpg://user:pass@host/db) to run migrations")
    # ConfigParser treats '%' as interpolation: escape it (URL-encoded passwords contain '%').
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return url


def public_type(type_: TypeEngine[Any]) -> TypeEngine[Any]:
    """``type_`` as its nearest public SQLAlchemy class: a driver's internal type (``PGUuid``, what an
    older SQLModel's GUID hands back on PostgreSQL) becomes ``UUID``, which a revision can name."""
    for cls in type(type_).__mro__:
        module = cls.__module__
        home = (
            f"sqlalchemy.dialects.{module.split('.')[2]}"
            if module.startswith("sqlalchemy.dialects.")
            else "sqlalchemy"
            if module.startswith("sqlalchemy.")
            else None
        )
        if home is not None and getattr(importlib.import_module(home), cls.__name__, None) is cls:
            return type_ if cls is type(type_) else type_.adapt(cls)
    return type_


def render_sqlalchemy_type(type_: TypeEngine[Any], autogen_context: AutogenContext) -> str | None:
    """``sa.X(...)`` / ``mysql.X(...)`` for a SQLAlchemy type, including its ``.with_variant()``
    parts (``repr()`` leaves them out); None for a type defined outside SQLAlchemy."""
    type_ = public_type(type_)
    module = type(type_).__module__
    if module.startswith("sqlalchemy.dialects."):
        dialect = module.split(".")[2]
        autogen_context.imports.add(f"from sqlalchemy.dialects import {dialect}")
        rendered = f"{dialect}.{type_!r}"
    elif module.startswith("sqlalchemy."):
        rendered = f"sa.{type_!r}"
    else:
        return None
    # _variant_mapping: what with_variant() filled in (SQLAlchemy 2.0/2.1; Alembic reads it too).
    for dialect_name, variant in sorted(getattr(type_, "_variant_mapping", {}).items()):
        variant_rendered = render_sqlalchemy_type(variant, autogen_context)
        if variant_rendered is None:
            return None
        rendered += f".with_variant({variant_rendered}, {dialect_name!r})"
    return rendered


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Render a TypeDecorator (e.g. UTCDateTime, SQLModel's AutoString) as its implementation type, ``sa.DateTime(...)``,
    with the impl's dialect variants (UTCDateTime: ``DATETIME(fsp=6)`` on MySQL/MariaDB; without
    it the migrated column would keep whole seconds only).

    Revision files then do not import application modules, which may change or vanish later.
    """
    if type_ == "type" and isinstance(obj, TypeDecorator):
        impl = obj.impl_instance
        if type(obj).load_dialect_impl is not TypeDecorator.load_dialect_impl and autogen_context.dialect is not None:
            # the type picks its implementation per database: SQLModel's AutoString is VARCHAR(255) on
            # MySQL/MariaDB (which need a length), an unbounded VARCHAR elsewhere
            impl = obj.load_dialect_impl(autogen_context.dialect)
        return render_sqlalchemy_type(impl, autogen_context) or False
    return False


def skip_empty(ctx: Any, revision: Any, directives: list[Any]) -> None:
    """``alembic revision --autogenerate`` with no detected change writes no file.

    Only for that command: ``alembic check`` goes through this hook too and fails on an empty list.
    """
    if not getattr(config.cmd_opts, "autogenerate", False):
        return
    script = directives[0] if directives else None
    if script is not None and script.upgrade_ops.is_empty():
        directives[:] = []


def configure_options(dialect_name: str) -> dict[str, Any]:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_as_batch": dialect_name == "sqlite",  # SQLite cannot ALTER most things: copy the table
        "render_item": render_item,
        "process_revision_directives": skip_empty,
    }


def run_migrations_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    url = database_url()
    dialect_name = url.split(":", 1)[0].split("+", 1)[0]
    context.configure(
        url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **configure_options(dialect_name)
    )
    with context.begin_transaction():
        context.run_migrations()


def refuse_sqlite_foreign_keys(connection: Connection) -> None:
    """Batch mode re-creates a table (copy, DROP, rename). With ``PRAGMA foreign_keys=ON`` that
    DROP deletes the rows of every ``ON DELETE CASCADE`` child table. The pragma cannot change
    inside a transaction, so refuse instead of losing data."""
    if connection.dialect.name != "sqlite":
        return
    autobegun = not connection.in_transaction()
    enabled = connection.exec_driver_sql("PRAGMA foreign_keys").scalar()
    if autobegun:  # end the transaction the PRAGMA opened, or Alembic treats it as the caller's and never commits
        connection.rollback()
    if enabled:
        raise RuntimeError(
            "SQLite connection has PRAGMA foreign_keys=ON: batch migrations would cascade-delete child rows. "
            "Run migrations on a plain engine (create_async_engine(url, poolclass=NullPool)), not the app's."
        )


def do_run_migrations(connection: Connection) -> None:
    refuse_sqlite_foreign_keys(connection)
    context.configure(connection=connection, **configure_options(connection.dialect.name))
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    database_url()
    engine = async_engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif handed_in is not None:
    do_run_migrations(handed_in)  # called from inside Connection.run_sync(): no new event loop
else:
    asyncio.run(run_async_migrations())

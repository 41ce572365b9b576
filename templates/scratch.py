"""A throw-away database namespace for demos and test suites.

``async with scratch_engine(url) as engine:`` yields an engine that works in a namespace made for
it and removed afterwards, so nothing outside it is read, altered or dropped:

- PostgreSQL: a new schema ``scratch_<random>`` set as the connection's ``search_path``
  (needs CREATE on the database, not CREATEDB);
- MySQL / MariaDB: a new database ``scratch_<random>`` (needs CREATE and DROP);
- SQLite: a new file in a temporary directory (the file in ``url``, if any, is never opened).

``url`` defaults to ``DATABASE_URL``; without it, SQLite is used.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from .database import DatabaseSettings, create_db_engine


def default_url() -> str:
    return os.environ.get("DATABASE_URL") or "sqlite+aiosqlite://"


def backend_of(url: str | URL) -> str:
    return make_url(url).get_backend_name()


@asynccontextmanager
async def scratch_url(url: str | URL | None = None) -> AsyncIterator[tuple[URL, dict[str, Any]]]:
    """Create the namespace; yield ``(url, connect_args)`` for engines that should use it."""
    base = make_url(url or default_url())
    name = f"scratch_{secrets.token_hex(4)}"
    backend = base.get_backend_name()
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="asp-") as tmp:
            yield base.set(database=str(Path(tmp) / f"{name}.db")), {}
        return
    admin = create_async_engine(base, poolclass=NullPool)
    try:
        if backend == "postgresql":
            async with admin.begin() as conn:
                await conn.execute(text(f'CREATE SCHEMA "{name}"'))
            if base.get_driver_name() == "asyncpg":
                connect_args: dict[str, Any] = {"server_settings": {"search_path": name}}
            else:  # psycopg
                connect_args = {"options": f"-csearch_path={name}"}
            try:
                yield base, connect_args
            finally:
                async with admin.begin() as conn:
                    await conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        elif backend in ("mysql", "mariadb"):
            async with admin.begin() as conn:
                await conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
            try:
                yield base.set(database=name), {}
            finally:
                async with admin.begin() as conn:
                    await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        else:
            raise ValueError(f"unsupported backend {backend!r} (use postgresql, mysql or sqlite)")
    finally:
        await admin.dispose()


@asynccontextmanager
async def scratch_engine(url: str | URL | None = None, **overrides: Any) -> AsyncIterator[AsyncEngine]:
    """An engine (from ``database.create_db_engine``) inside a fresh namespace."""
    async with scratch_url(url) as (target, connect_args):
        settings = DatabaseSettings(url=target.render_as_string(hide_password=False), connect_args=connect_args)
        engine = create_db_engine(settings, **overrides)
        try:
            yield engine
        finally:
            await engine.dispose()

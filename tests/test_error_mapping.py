"""install_error_handlers maps only client-caused integrity errors to 409, /health never hangs,
and the FastAPI example's serve mode never writes into a database's existing tables."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import ForeignKey, String, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.pool import NullPool

from templates.base_model import Base
from templates.database import DatabaseSettings, create_db_engine
from templates.fastapi_integration import SessionDep, create_lifespan, health_router, install_error_handlers


class EmParent(Base):
    __tablename__ = "em_parents"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    note: Mapped[str] = mapped_column(String(40))  # NOT NULL


class EmChild(Base):
    __tablename__ = "em_children"

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("em_parents.id"), index=True)


def build_app(db_url: tuple[URL, dict[str, Any]], **settings: Any) -> FastAPI:
    url, connect_args = db_url

    async def create(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all, tables=[EmParent.__table__, EmChild.__table__])

    app = FastAPI(
        lifespan=create_lifespan(
            DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args, **settings),
            on_startup=create,
        )
    )
    install_error_handlers(app)
    app.include_router(health_router)

    @app.post("/parents/{code}")
    async def add_parent(code: str, session: SessionDep) -> dict[str, str]:
        session.add(EmParent(code=code, note="n"))
        return {"code": code}

    @app.post("/buggy-parents/{code}")
    async def add_buggy_parent(code: str, session: SessionDep) -> dict[str, str]:
        session.add(EmParent(code=code, note=None))  # type: ignore[arg-type]  # the bug: NOT NULL column
        return {"code": code}

    @app.post("/children/{parent_id}")
    async def add_child(parent_id: int, session: SessionDep) -> dict[str, int]:
        session.add(EmChild(parent_id=parent_id))
        return {"parent_id": parent_id}

    return app


async def test_duplicate_and_missing_parent_are_409_but_a_not_null_bug_is_500(
    db_url: tuple[URL, dict[str, Any]],
) -> None:
    app = build_app(db_url)
    code = f"c-{uuid.uuid4().hex[:8]}"
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.post(f"/parents/{code}")).status_code == 200
            assert (await client.post(f"/parents/{code}")).status_code == 409  # unique violation
            assert (await client.post("/children/999999999")).status_code == 409  # foreign key violation
            # A NOT NULL violation is the app's bug, not a conflict: it must not look like one.
            assert (await client.post(f"/buggy-parents/{code}-2")).status_code == 500
            assert (await client.post(f"/parents/{code}-3")).status_code == 200  # and the app keeps serving


async def test_not_null_violation_is_not_reported_as_conflict(db_url: tuple[URL, dict[str, Any]]) -> None:
    from sqlalchemy.exc import IntegrityError

    from templates.db_errors import is_conflict

    url, connect_args = db_url
    engine = create_db_engine(
        DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args)
    )
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all, tables=[EmParent.__table__, EmChild.__table__])
        code = f"n-{uuid.uuid4().hex[:8]}"
        errors: dict[str, IntegrityError] = {}
        for name, sql, params in [
            ("not_null", "INSERT INTO em_parents (code, note) VALUES (:c, NULL)", {"c": code}),
            ("unique", "INSERT INTO em_parents (code, note) VALUES (:c, 'x')", {"c": code}),
            ("foreign_key", "INSERT INTO em_children (parent_id) VALUES (:p)", {"p": 987654321}),
        ]:
            if name == "unique":
                async with engine.begin() as conn:
                    await conn.execute(text(sql), params)
            with pytest.raises(IntegrityError) as caught:
                async with engine.begin() as conn:
                    await conn.execute(text(sql), params)
            errors[name] = caught.value
        assert not is_conflict(errors["not_null"])
        assert is_conflict(errors["unique"])
        assert is_conflict(errors["foreign_key"])
    finally:
        await engine.dispose()


async def test_health_answers_503_quickly_when_the_pool_is_exhausted(
    db_url: tuple[URL, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import templates.fastapi_integration as sm

    monkeypatch.setattr(sm, "HEALTH_TIMEOUT_SECONDS", 0.5)
    app = build_app(db_url, pool_size=1, max_overflow=0, pool_timeout=30)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health")).status_code == 200
            held = await app.state.engine.connect()  # the only connection
            try:
                start = time.monotonic()
                answer = await client.get("/health")
                waited = time.monotonic() - start
            finally:
                await held.close()
            assert answer.status_code == 503
            assert waited < 10, f"/health waited {waited:.1f}s for a connection"  # not the 30 s pool_timeout
            assert (await client.get("/health")).status_code == 200


async def test_health_lets_a_bug_be_a_500_not_a_503(
    db_url: tuple[URL, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe that fails for a reason other than an unreachable database is a bug: the load
    balancer still sees a failure, and the log gets the traceback a silent 503 would hide."""
    import templates.fastapi_integration as sm

    async def broken(engine: AsyncEngine) -> None:
        raise ZeroDivisionError("a bug in the probe")

    app = build_app(db_url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/health")).status_code == 200
            monkeypatch.setattr(sm, "select_one", broken)
            assert (await client.get("/health")).status_code == 500


def test_env_settings_name_the_bad_variable() -> None:
    with pytest.raises(ValueError, match="DB_POOL_SIZE='ten'"):
        DatabaseSettings.from_env({"DATABASE_URL": "sqlite+aiosqlite://", "DB_POOL_SIZE": "ten"})
    settings = DatabaseSettings.from_env({"DATABASE_URL": "sqlite+aiosqlite://", "DB_POOL_TIMEOUT": "0.5"})
    assert settings.pool_timeout == 0.5 and settings.pool_size == 5


async def test_demo_serve_mode_never_writes_into_existing_tables(
    server_url: str, backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``uvicorn examples.fastapi_app:app`` with a user's DATABASE_URL: their ``users`` table is
    neither written to nor altered; the demo's tables live in a scratch namespace."""
    from sqlalchemy.engine import make_url

    name = f"own_{uuid.uuid4().hex[:8]}"
    base = make_url(server_url)
    admin = create_async_engine(base, poolclass=NullPool)
    if backend == "sqlite":
        own = base.set(database=str(tmp_path / f"{name}.db"))
    else:
        quote = '"' if backend == "postgresql" else "`"
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(f"CREATE DATABASE {quote}{name}{quote}"))
        own = base.set(database=name)
    user_engine = create_async_engine(own, poolclass=NullPool)
    try:
        async with user_engine.begin() as conn:
            await conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, label VARCHAR(20))"))
            await conn.execute(text("INSERT INTO users (id, label) VALUES (1, 'mine')"))
        monkeypatch.setenv("DATABASE_URL", own.render_as_string(hide_password=False))
        from examples.fastapi_app import create_app, demo_lifespan

        app = create_app(lifespan=demo_lifespan)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                made = await client.post("/users", json={"email": "demo@example.com", "name": "Demo"})
                assert made.status_code == 201
                assert (await client.get(f"/users/{made.json()['id']}")).status_code == 200
        async with user_engine.connect() as conn:
            assert (await conn.execute(text("SELECT id, label FROM users"))).all() == [(1, "mine")]
    finally:
        await user_engine.dispose()
        if backend != "sqlite":
            async with admin.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}"))
        await admin.dispose()

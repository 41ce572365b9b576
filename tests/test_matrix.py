"""The backend matrix itself: every backend answers, and works in its own namespace."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_engine_round_trip(engine: AsyncEngine, backend: str) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    assert engine.dialect.name == {"sqlite": "sqlite", "postgresql": "postgresql", "mysql": "mysql"}[backend] or (
        backend == "mysql" and engine.dialect.name == "mariadb"
    )


async def test_namespace_is_fresh(engine: AsyncEngine, backend: str) -> None:
    async with engine.connect() as conn:
        if backend == "postgresql":
            schema = (await conn.execute(text("SELECT current_schema()"))).scalar_one()
            assert schema.startswith("scratch_")
        elif backend == "mysql":
            db = (await conn.execute(text("SELECT DATABASE()"))).scalar_one()
            assert db.startswith("scratch_")
        else:
            assert engine.url.database and "/scratch_" in engine.url.database, engine.url.database

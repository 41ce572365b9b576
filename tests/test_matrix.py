"""The backend matrix itself: every backend answers, works in its own namespace, and
``only_backends`` deselects (never skips) the backends a test does not apply to."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

pytest_plugins = ["pytester"]


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


@pytest.mark.only_backends("postgresql", "mysql")
async def test_only_backends_deselects_the_rest(backend: str) -> None:
    assert backend in ("postgresql", "mysql")  # the sqlite parameter is deselected, never run


def test_only_backends_deselection_is_reported(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = session\n")
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.only_backends("sqlite")
        def test_x(backend):
            assert backend == "sqlite"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=2)

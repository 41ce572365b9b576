"""Test-only counter-example for test_workers_migrate.py: an app whose every worker runs
``alembic upgrade head`` at start-up WITHOUT a lock (what templates/migrate_at_startup.py prevents).
``uvicorn --workers 4 --factory naive_migrate_app:create_app`` with DATABASE_URL and ALEMBIC_CONFIG.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alembic.config import Config
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from templates.migrate_at_startup import upgrade


def create_app() -> FastAPI:
    config = Config(os.environ["ALEMBIC_CONFIG"], stdout=io.StringIO())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(os.environ["DATABASE_URL"], poolclass=NullPool)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(upgrade, config, "head")
        finally:
            await engine.dispose()
        yield

    return FastAPI(lifespan=lifespan)

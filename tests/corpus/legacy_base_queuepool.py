# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: 1.x-era setup carried into async code.

- `declarative_base()` (legacy; 2.x uses `class Base(DeclarativeBase)`),
- `relationship()` without `lazy=` (default lazy="select": attribute access does I/O, which
  async code cannot do -> MissingGreenlet),
- `create_async_engine(..., poolclass=QueuePool)`: QueuePool is not asyncio-compatible;
  SQLAlchemy refuses it (the default AsyncAdaptedQueuePool is right).
"""
# expect-runtime:
# expect-static: legacy_declarative_base, relationship_without_lazy, queuepool_on_async_engine

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import Column, ForeignKey, Integer, String, select
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import declarative_base, relationship, selectinload
from sqlalchemy.pool import QueuePool

from templates.database import create_sessionmaker
from templates.scratch import default_url, scratch_engine

LegacyBase = declarative_base()  # static: legacy_declarative_base


class CpiFolder(LegacyBase):
    __tablename__ = "cpi_folders"
    id = Column(Integer, primary_key=True)
    name = Column(String(50))
    files = relationship("CpiFile")  # static: relationship_without_lazy


class CpiFile(LegacyBase):
    __tablename__ = "cpi_files"
    id = Column(Integer, primary_key=True)
    folder_id = Column(ForeignKey("cpi_folders.id"), index=True)


def queuepool_engine(url: str) -> str:
    try:
        create_async_engine(url, poolclass=QueuePool)  # static: queuepool_on_async_engine
    except ArgumentError:
        return "refused"
    return "accepted"


async def main() -> None:
    print(f"QueuePool on an async engine: {queuepool_engine(default_url())}")
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(LegacyBase.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add(CpiFolder(name="docs", files=[CpiFile(), CpiFile()]))
        async with sessionmaker() as session:
            folder = (await session.scalars(select(CpiFolder).options(selectinload(CpiFolder.files)))).one()
            if len(folder.files) != 2:
                raise AssertionError(folder.files)
    print("legacy_base_queuepool: ok")


if __name__ == "__main__":
    asyncio.run(main())

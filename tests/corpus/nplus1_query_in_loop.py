# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: N+1 written by hand - one explicit SELECT per parent inside a loop.

Each iteration runs `select(CpbTask).where(CpbTask.project_id == project.id)`. Fix: one query for
all projects (`CpbTask.project_id.in_(ids)`) or `selectinload(CpbProject.tasks)`.
"""
# expect-runtime: n_plus_one
# expect-static: query_in_loop

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpbProject(Base):
    __tablename__ = "cpb_projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    tasks: Mapped[list[CpbTask]] = relationship(lazy="raise")


class CpbTask(Base):
    __tablename__ = "cpb_tasks"
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("cpb_projects.id"), index=True)
    done: Mapped[bool] = mapped_column(default=False)


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            session.add_all(CpbProject(name=f"p{i}", tasks=[CpbTask(done=j == 0) for j in range(3)]) for i in range(6))
        async with sessionmaker() as session:
            projects = (await session.scalars(select(CpbProject))).all()
            open_tasks = 0
            for project in projects:
                tasks = await session.scalars(select(CpbTask).where(CpbTask.project_id == project.id))  # runtime: n_plus_one  static: query_in_loop
                open_tasks += sum(1 for t in tasks if not t.done)
            if open_tasks != 12:
                raise AssertionError(open_tasks)
    print("nplus1_query_in_loop: ok")


if __name__ == "__main__":
    asyncio.run(main())

# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Corpus app: a FastAPI session dependency that commits after `yield` (default dependency scope)
and a list endpoint that returns every row.

With the default scope, the code after `yield` runs after the response has been sent: a failing
commit (unique violation, lost connection) can no longer change the answer, so the client got
201 for a write that never happened. Fix: `Depends(get_session, scope="function")` (FastAPI
0.121+, as templates/fastapi_integration.SessionDep does). The list endpoint has no LIMIT: add
bounded `limit`/`offset` parameters.
"""
# expect-runtime:
# expect-static: commit_after_yield, unbounded_list_query

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
from fastapi import Depends, FastAPI, Request
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine


class CpjNote(Base):
    __tablename__ = "cpj_notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200))


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session
        await session.commit()  # static: commit_after_yield


Session = Annotated[AsyncSession, Depends(get_session)]
app = FastAPI()


@app.post("/notes", status_code=201)
async def add_note(text: str, session: Session) -> dict[str, str]:
    session.add(CpjNote(text=text))
    return {"text": text}


@app.get("/notes")
async def list_notes(session: Session) -> list[str]:
    return [n.text for n in (await session.scalars(select(CpjNote).order_by(CpjNote.id))).all()]  # static: unbounded_list_query


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.sessionmaker = create_sessionmaker(engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for text in ("a", "b", "c"):
                created = await client.post("/notes", params={"text": text})
                if created.status_code != 201:
                    raise AssertionError(created.text)
            listed = await client.get("/notes")
            if listed.json() != ["a", "b", "c"]:
                raise AssertionError(listed.text)
    print("fastapi_commit_after_yield: ok")


if __name__ == "__main__":
    asyncio.run(main())

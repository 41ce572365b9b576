# DELIBERATELY WRONG example for the evals (naive/ of mariadb-timestamps): never copy it.
"""The event log API: ``uvicorn eventlog.main:app`` with DATABASE_URL set.

The schema comes from the Alembic migrations (``alembic upgrade head``), run on deploy.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from pydantic import AwareDatetime, BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from .models import Event


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
app = FastAPI(lifespan=lifespan)


class EventIn(BaseModel):
    name: str
    occurred_at: AwareDatetime  # a time without an offset is ambiguous: 422


class EventOut(EventIn):
    id: int


@app.post("/events", status_code=201)
async def record_event(body: EventIn, session: SessionDep) -> EventOut:
    event = Event(name=body.name, occurred_at=body.occurred_at)
    session.add(event)
    await session.commit()
    return EventOut(id=event.id, name=event.name, occurred_at=event.occurred_at)


@app.get("/events")
async def list_events(session: SessionDep, since: AwareDatetime | None = None, limit: int = 100) -> list[EventOut]:
    query = select(Event).order_by(Event.occurred_at, Event.id).limit(limit)
    if since is not None:
        query = query.where(Event.occurred_at > since)
    events = await session.scalars(query)
    return [EventOut(id=e.id, name=e.name, occurred_at=e.occurred_at) for e in events]

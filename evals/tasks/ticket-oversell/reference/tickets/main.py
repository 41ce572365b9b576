"""The ticketing API: ``uvicorn tickets.main:app`` (DATABASE_URL picks the database)."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from .db import SessionDep, lifespan
from .models import Event, Reservation

app = FastAPI(lifespan=lifespan)


class EventIn(BaseModel):
    name: str
    capacity: int = Field(ge=0)


class EventOut(BaseModel):
    id: int
    name: str
    capacity: int
    reserved: int


class ReservationIn(BaseModel):
    customer: str
    seats: int = Field(gt=0, le=10)


class ReservationOut(BaseModel):
    id: int
    event_id: int
    customer: str
    seats: int


async def seats_taken(session: SessionDep, event_id: int) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Reservation.seats), 0)).where(Reservation.event_id == event_id)
    )
    return int(total or 0)


@app.post("/events", status_code=201)
async def create_event(body: EventIn, session: SessionDep) -> EventOut:
    event = Event(name=body.name, capacity=body.capacity)
    session.add(event)
    await session.commit()
    return EventOut(id=event.id, name=event.name, capacity=event.capacity, reserved=0)


@app.get("/events/{event_id}")
async def get_event(event_id: int, session: SessionDep) -> EventOut:
    event = await session.get(Event, event_id)
    if event is None:
        raise HTTPException(404, "no such event")
    return EventOut(id=event.id, name=event.name, capacity=event.capacity, reserved=await seats_taken(session, event_id))


@app.post("/events/{event_id}/reservations", status_code=201)
async def reserve(event_id: int, body: ReservationIn, session: SessionDep) -> ReservationOut:
    # SQLite has no row locks: take its write lock before the first read.
    await session.connection(execution_options={"sqlite_begin": "IMMEDIATE"})
    # PostgreSQL / MariaDB: lock the event row first, so reservations for one event queue here and
    # each reads the seats taken after the previous one committed. It must be the transaction's
    # first read: on MariaDB (REPEATABLE READ) an earlier plain read fixes the snapshot.
    event = await session.get(Event, event_id, with_for_update=True)
    if event is None:
        raise HTTPException(404, "no such event")
    if await seats_taken(session, event_id) + body.seats > event.capacity:
        raise HTTPException(409, "not enough seats left")
    reservation = Reservation(event_id=event_id, customer=body.customer, seats=body.seats)
    session.add(reservation)
    await session.commit()
    return ReservationOut(id=reservation.id, event_id=event_id, customer=reservation.customer, seats=reservation.seats)


@app.delete("/reservations/{reservation_id}", status_code=204)
async def cancel(reservation_id: int, session: SessionDep) -> None:
    reservation = await session.get(Reservation, reservation_id)
    if reservation is None:
        raise HTTPException(404, "no such reservation")
    await session.delete(reservation)
    await session.commit()

# DELIBERATELY WRONG example for the evals (naive/ of enum-new-value): never copy it.
"""The orders API: ``uvicorn orders.main:app`` with DATABASE_URL set.

The schema comes from the Alembic migrations (``alembic upgrade head``), run on deploy.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from .models import Order, OrderStatus


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


class OrderIn(BaseModel):
    customer: str
    total_cents: int


class OrderOut(OrderIn):
    id: int
    status: OrderStatus
    refunded_at: datetime | None


def out(order: Order) -> OrderOut:
    return OrderOut(id=order.id, customer=order.customer, total_cents=order.total_cents, status=order.status,
                    refunded_at=order.refunded_at)


async def find(session: AsyncSession, order_id: int) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    return order


@app.post("/orders", status_code=201)
async def place(body: OrderIn, session: SessionDep) -> OrderOut:
    order = Order(customer=body.customer, total_cents=body.total_cents, status=OrderStatus.PENDING)
    session.add(order)
    await session.commit()
    return out(order)


@app.get("/orders/{order_id}")
async def show(order_id: int, session: SessionDep) -> OrderOut:
    return out(await find(session, order_id))


@app.post("/orders/{order_id}/pay")
async def pay(order_id: int, session: SessionDep) -> OrderOut:
    order = await find(session, order_id)
    if order.status is not OrderStatus.PENDING:
        raise HTTPException(409, f"order is {order.status.value}")
    order.status = OrderStatus.PAID
    await session.commit()
    return out(order)


@app.post("/orders/{order_id}/refund")
async def refund(order_id: int, session: SessionDep) -> OrderOut:
    order = await find(session, order_id)
    if order.status not in (OrderStatus.PAID, OrderStatus.SHIPPED):
        raise HTTPException(409, f"order is {order.status.value}")
    order.status = OrderStatus.REFUNDED
    order.refunded_at = datetime.now(timezone.utc)
    await session.commit()
    return out(order)

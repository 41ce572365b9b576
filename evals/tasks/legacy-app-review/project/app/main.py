"""The shop API: ``uvicorn app.main:app`` with DATABASE_URL set."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .db import SessionDep, lifespan
from .models import Order, OrderItem, User

app = FastAPI(lifespan=lifespan)


@app.exception_handler(IntegrityError)
async def conflict(request: Request, exc: IntegrityError) -> JSONResponse:
    return JSONResponse({"detail": "already exists"}, status_code=409)


class SignUp(BaseModel):
    email: str
    name: str


class UserOut(BaseModel):
    email: str
    name: str


class LineIn(BaseModel):
    sku: str
    quantity: int
    price_cents: int


class OrderIn(BaseModel):
    email: str
    lines: list[LineIn]


class LineOut(LineIn):
    pass


class OrderOut(BaseModel):
    id: int
    customer: str
    status: str
    total_cents: int
    lines: list[LineOut]


class Stats(BaseModel):
    users: int
    orders: int
    revenue_cents: int


@app.post("/users", status_code=201)
async def sign_up(body: SignUp, session: SessionDep) -> UserOut:
    user = User(email=body.email.strip().lower(), name=body.name)
    session.add(user)
    return UserOut(email=user.email, name=user.name)


@app.post("/orders", status_code=201)
async def place_order(body: OrderIn, session: SessionDep) -> dict[str, int]:
    user = await session.scalar(select(User).where(User.email == body.email.strip().lower()))
    if user is None:
        raise HTTPException(404, "unknown customer")
    order = Order(user=user, items=[OrderItem(**line.model_dump()) for line in body.lines])
    session.add(order)
    await session.flush()
    return {"id": order.id}


@app.get("/orders")
async def list_orders(session: SessionDep, limit: int = 20) -> list[OrderOut]:
    orders = await session.scalars(select(Order).order_by(Order.id.desc()).limit(limit))
    result = []
    for order in orders:
        user = await order.awaitable_attrs.user
        items = await order.awaitable_attrs.items
        result.append(OrderOut(
            id=order.id,
            customer=user.name,
            status=order.status,
            total_cents=sum(i.quantity * i.price_cents for i in items),
            lines=[LineOut(sku=i.sku, quantity=i.quantity, price_cents=i.price_cents) for i in items],
        ))
    return result


@app.get("/stats")
async def stats(session: SessionDep) -> Stats:
    users, orders, revenue = await asyncio.gather(
        session.scalar(select(func.count()).select_from(User)),
        session.scalar(select(func.count()).select_from(Order)),
        session.scalar(select(func.coalesce(func.sum(OrderItem.quantity * OrderItem.price_cents), 0))),
    )
    return Stats(users=users or 0, orders=orders or 0, revenue_cents=int(revenue or 0))

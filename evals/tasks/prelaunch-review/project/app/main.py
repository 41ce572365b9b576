"""The shop API: ``uvicorn app.main:app`` with DATABASE_URL set.

POST   /users                      sign up: {"email", "name"} -> 201 {"email", "name"}; 409 if the e-mail is taken
POST   /orders                     {"email", "lines": [{"sku", "quantity", "price_cents"}]} -> 201 {"id"}
GET    /orders?limit=20            the newest orders, with customer name, total and lines
GET    /orders/{id}?expand=customer one order (with "customer": {"email", "name"} when expanded)
PATCH  /orders/{id}                {"status"} -> 200 {"id", "status", "updated_at"}
DELETE /orders/{id}                cancel an order -> 204
GET    /search?sku=...             order lines whose SKU starts with the given text
GET    /stats                      counts and revenue for the admin dashboard
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

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


class OrderDetail(BaseModel):
    id: int
    status: str
    total_cents: int
    lines: list[LineOut]
    customer: UserOut | None = None


class StatusIn(BaseModel):
    status: str


class StatusOut(BaseModel):
    id: int
    status: str
    updated_at: datetime


class SearchHit(BaseModel):
    order_id: int
    sku: str
    quantity: int


class Stats(BaseModel):
    users: int
    orders: int
    revenue_cents: int


def lines_of(order: Order) -> list[LineOut]:
    return [LineOut(sku=i.sku, quantity=i.quantity, price_cents=i.price_cents) for i in order.items]


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


@app.get("/orders/{order_id}")
async def get_order(order_id: int, session: SessionDep, expand: str | None = None) -> OrderDetail:
    order = await session.scalar(select(Order).where(Order.id == order_id).options(selectinload(Order.items)))
    if order is None:
        raise HTTPException(404, "no such order")
    detail = OrderDetail(
        id=order.id,
        status=order.status,
        total_cents=sum(i.quantity * i.price_cents for i in order.items),
        lines=lines_of(order),
    )
    if expand == "customer":
        detail.customer = UserOut(email=order.user.email, name=order.user.name)
    return detail


@app.patch("/orders/{order_id}")
async def set_status(order_id: int, body: StatusIn, session: SessionDep) -> StatusOut:
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    order.status = body.status
    await session.flush()
    return StatusOut(id=order.id, status=order.status, updated_at=order.updated_at)


@app.delete("/orders/{order_id}", status_code=204)
async def cancel_order(order_id: int, session: SessionDep) -> Response:
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    session.delete(order)
    return Response(status_code=204)


@app.get("/search")
async def search(sku: str, session: SessionDep) -> list[SearchHit]:
    rows = await session.execute(
        text(f"SELECT order_id, sku, quantity FROM order_items WHERE sku LIKE '{sku}%' ORDER BY id LIMIT 50")
    )
    return [SearchHit(order_id=r.order_id, sku=r.sku, quantity=r.quantity) for r in rows]


@app.get("/stats")
async def stats(session: SessionDep) -> Stats:
    users, orders, revenue = await asyncio.gather(
        session.scalar(select(func.count()).select_from(User)),
        session.scalar(select(func.count()).select_from(Order)),
        session.scalar(select(func.coalesce(func.sum(OrderItem.quantity * OrderItem.price_cents), 0))),
    )
    return Stats(users=users or 0, orders=orders or 0, revenue_cents=int(revenue or 0))

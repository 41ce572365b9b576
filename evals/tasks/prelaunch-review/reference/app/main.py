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

from datetime import datetime

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import func, select
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
    try:
        await session.commit()  # before the 201: the unique index decides, also for a double click
    except IntegrityError:
        await session.rollback()
        raise HTTPException(409, "email already registered") from None
    return UserOut(email=user.email, name=user.name)


@app.post("/orders", status_code=201)
async def place_order(body: OrderIn, session: SessionDep) -> dict[str, int]:
    user = await session.scalar(select(User).where(User.email == body.email.strip().lower()))
    if user is None:
        raise HTTPException(404, "unknown customer")
    order = Order(user=user, items=[OrderItem(**line.model_dump()) for line in body.lines])
    session.add(order)
    await session.commit()
    return {"id": order.id}


@app.get("/orders")
async def list_orders(session: SessionDep, limit: int = 20) -> list[OrderOut]:
    stmt = (
        select(Order)
        .options(selectinload(Order.user), selectinload(Order.items))  # 3 statements for any limit
        .order_by(Order.id.desc())
        .limit(limit)
    )
    return [
        OrderOut(
            id=order.id,
            customer=order.user.name,
            status=order.status,
            total_cents=sum(i.quantity * i.price_cents for i in order.items),
            lines=lines_of(order),
        )
        for order in await session.scalars(stmt)
    ]


@app.get("/orders/{order_id}")
async def get_order(order_id: int, session: SessionDep, expand: str | None = None) -> OrderDetail:
    order = await session.scalar(
        select(Order).where(Order.id == order_id).options(selectinload(Order.items), selectinload(Order.user))
    )
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
    await session.commit()
    await session.refresh(order, ["updated_at"])  # set by the database (onupdate=func.now()): expired
    return StatusOut(id=order.id, status=order.status, updated_at=order.updated_at)


@app.delete("/orders/{order_id}", status_code=204)
async def cancel_order(order_id: int, session: SessionDep) -> Response:
    order = await session.get(Order, order_id)
    if order is None:
        raise HTTPException(404, "no such order")
    await session.delete(order)  # AsyncSession.delete is a coroutine: without await nothing is deleted
    await session.commit()
    return Response(status_code=204)


@app.get("/search")
async def search(sku: str, session: SessionDep) -> list[SearchHit]:
    stmt = (
        select(OrderItem.order_id, OrderItem.sku, OrderItem.quantity)
        .where(OrderItem.sku.startswith(sku, autoescape=True))  # a bound value, % and _ escaped
        .order_by(OrderItem.id)
        .limit(50)
    )
    return [SearchHit(order_id=r.order_id, sku=r.sku, quantity=r.quantity) for r in await session.execute(stmt)]


@app.get("/stats")
async def stats(session: SessionDep) -> Stats:
    # One session runs one statement at a time: sequential awaits, not asyncio.gather.
    users = await session.scalar(select(func.count()).select_from(User))
    orders = await session.scalar(select(func.count()).select_from(Order))
    revenue = await session.scalar(select(func.coalesce(func.sum(OrderItem.quantity * OrderItem.price_cents), 0)))
    return Stats(users=users or 0, orders=orders or 0, revenue_cents=int(revenue or 0))

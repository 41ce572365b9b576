# DELIBERATELY WRONG example for the evals (naive/ of db-restart-503): never copy it.
"""The catalog API: ``uvicorn shop.main:app`` with DATABASE_URL set."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from .db import SessionDep, lifespan
from .errors import install_database_error_handlers, unavailable_response
from .models import Item

app = FastAPI(lifespan=lifespan)
install_database_error_handlers(app)


class ItemIn(BaseModel):
    name: str
    price_cents: int


class ItemOut(ItemIn):
    id: int


@app.get("/health", response_model=None)
async def health(request: Request) -> dict[str, str] | JSONResponse:
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except DBAPIError:
        return unavailable_response()
    return {"status": "ok"}


@app.get("/items")
async def list_items(session: SessionDep, limit: int = 50) -> list[ItemOut]:
    items = await session.scalars(select(Item).order_by(Item.id).limit(limit))
    return [ItemOut(id=i.id, name=i.name, price_cents=i.price_cents) for i in items]


@app.get("/items/{item_id}")
async def get_item(item_id: int, session: SessionDep) -> ItemOut:
    item = await session.get(Item, item_id)
    if item is None:
        raise HTTPException(404, "no such item")
    return ItemOut(id=item.id, name=item.name, price_cents=item.price_cents)


@app.post("/items", status_code=201)
async def create_item(body: ItemIn, session: SessionDep) -> ItemOut:
    item = Item(name=body.name, price_cents=body.price_cents)
    session.add(item)
    await session.commit()
    return ItemOut(id=item.id, name=item.name, price_cents=item.price_cents)

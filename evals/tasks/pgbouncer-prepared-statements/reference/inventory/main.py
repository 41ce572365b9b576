"""The inventory API: ``uvicorn inventory.main:app`` with DATABASE_URL set.

The tables are created by ``python -m inventory.schema`` (run against the database directly).
"""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy import select

from .db import SessionDep, lifespan
from .models import Movement, Product

app = FastAPI(lifespan=lifespan)


class ProductIn(BaseModel):
    name: str


class ProductOut(BaseModel):
    id: int
    name: str
    quantity: int


class MovementIn(BaseModel):
    delta: int


@app.post("/products", status_code=201)
async def create_product(body: ProductIn, session: SessionDep) -> ProductOut:
    product = Product(name=body.name, quantity=0)
    session.add(product)
    await session.commit()
    return ProductOut(id=product.id, name=product.name, quantity=product.quantity)


@app.get("/products/{product_id}")
async def get_product(product_id: int, session: SessionDep) -> ProductOut:
    product = await session.get(Product, product_id)
    if product is None:
        raise HTTPException(404, "no such product")
    return ProductOut(id=product.id, name=product.name, quantity=product.quantity)


@app.get("/products")
async def list_products(session: SessionDep, limit: int = 50) -> list[ProductOut]:
    products = await session.scalars(select(Product).order_by(Product.id).limit(limit))
    return [ProductOut(id=p.id, name=p.name, quantity=p.quantity) for p in products]


@app.post("/products/{product_id}/movements", status_code=201)
async def move_stock(product_id: int, body: MovementIn, session: SessionDep) -> ProductOut:
    product = await session.get(Product, product_id, with_for_update=True)
    if product is None:
        raise HTTPException(404, "no such product")
    product.quantity += body.delta
    session.add(Movement(product_id=product.id, delta=body.delta))
    await session.commit()
    return ProductOut(id=product.id, name=product.name, quantity=product.quantity)

# CLEAN example for the optimize-queries checker's tests (no finding expected): a fixture, never copy it.
"""Clean corpus app: FastAPI wired with the template's SessionDep (commit before the response),
a bounded list endpoint, and a detail endpoint that eager-loads what it returns.
"""
# expect-runtime:
# expect-static:

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
from fastapi import FastAPI, HTTPException, Query
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.orm import Mapped, mapped_column, relationship, selectinload

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.fastapi_integration import SessionDep, install_error_handlers
from templates.scratch import scratch_engine


class CqbShelf(Base):
    __tablename__ = "cqb_shelves"
    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(String(50), unique=True)
    items: Mapped[list[CqbItem]] = relationship(lazy="raise", order_by="CqbItem.id")


class CqbItem(Base):
    __tablename__ = "cqb_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("cqb_shelves.id"), index=True)
    name: Mapped[str] = mapped_column(String(50))


app = FastAPI()
install_error_handlers(app)


@app.post("/shelves", status_code=201)
async def add_shelf(label: str, session: SessionDep) -> dict[str, str]:
    session.add(CqbShelf(label=label, items=[CqbItem(name=f"{label}-{n}") for n in range(3)]))
    return {"label": label}


@app.get("/shelves")
async def list_shelves(
    session: SessionDep, limit: int = Query(20, ge=1, le=100), offset: int = Query(0, ge=0)
) -> list[str]:
    rows = await session.scalars(select(CqbShelf.label).order_by(CqbShelf.id).limit(limit).offset(offset))
    return list(rows.all())


@app.get("/shelves/{label}")
async def shelf_detail(label: str, session: SessionDep) -> dict[str, object]:
    shelf = await session.scalar(select(CqbShelf).where(CqbShelf.label == label).options(selectinload(CqbShelf.items)))
    if shelf is None:
        raise HTTPException(404)
    return {"label": shelf.label, "items": [item.name for item in shelf.items]}


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            for label in ("a", "b", "c"):
                if (await client.post("/shelves", params={"label": label})).status_code != 201:
                    raise AssertionError(label)
            duplicate = await client.post("/shelves", params={"label": "a"})
            page = await client.get("/shelves", params={"limit": 2})
            detail = await client.get("/shelves/b")
        if duplicate.status_code != 409 or page.json() != ["a", "b"] or detail.json()["items"] != ["b-0", "b-1", "b-2"]:
            raise AssertionError((duplicate.status_code, page.text, detail.text))
    print("clean_fastapi_app: ok")


if __name__ == "__main__":
    asyncio.run(main())

"""FastAPI + async SQLAlchemy: a users/posts JSON API wired the safe way.

Shows: one engine per process (template lifespan), one session per request that commits *before*
the response is sent (``SessionDep``, ``Depends(..., scope="function")``), a unique-email clash
answered with 409 (never a 2xx that stored nothing), 404 for missing or soft-deleted rows, a
keyset-paginated list that eager-loads posts in a fixed number of statements (models are
``lazy="raise"``), malformed cursors answered with 422, and ``GET /health``.

Use when: building or reviewing FastAPI endpoints on async SQLAlchemy.
Run:   ``python examples/fastapi_app.py`` - drives the app through httpx ``ASGITransport`` in a
       scratch namespace of ``DATABASE_URL`` (default: embedded SQLite) and checks every answer.
Serve: ``DATABASE_URL=postgresql+asyncpg://... uvicorn examples.fastapi_app:app`` (a demo: it
       works in a scratch schema/database made at startup and dropped at shutdown, so it never
       writes into existing tables; without DATABASE_URL it uses a SQLite file in the temp dir).
Tests: ``create_app(settings)`` builds the same app on any database, so a test suite can run it on its own server.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload

from templates.base_model import Base
from templates.database import DatabaseSettings
from templates.fastapi_integration import SessionDep, create_lifespan, health_router, install_error_handlers
from templates.models import Post, PostTag, Tag, User
from templates.query_counter import count_queries
from templates.repository import MAX_PAGE_SIZE, InvalidCursor, Repository
from templates.scratch import scratch_url

# --- API schemas -----------------------------------------------------------------------------


def storable(value: str) -> str:
    """NUL is refused with a 422: PostgreSQL cannot store it in text (a 500 there), while SQLite and
    MySQL keep it - the same request must not mean different things per backend."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


CleanStr = Annotated[str, AfterValidator(storable)]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: CleanStr = Field(min_length=3, max_length=255, pattern=r"^[^@\s]+@[^@\s]+$")
    name: CleanStr = Field(min_length=1, max_length=100)

    @field_validator("email")
    @classmethod
    def normalise_email(cls, value: str) -> str:
        # One spelling per address: PostgreSQL compares case-sensitively, MySQL's default
        # collation does not, so without this the same data behaves differently per backend.
        return value.strip().lower()


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: CleanStr = Field(min_length=1, max_length=200)
    body: CleanStr = Field(default="", max_length=10_000)


class PostOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    body: str
    created_at: datetime


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    created_at: datetime


class UserWithPosts(UserOut):
    posts: list[PostOut]


class UserPage(BaseModel):
    items: list[UserWithPosts]
    next_cursor: str | None


# --- endpoints -------------------------------------------------------------------------------

router = APIRouter()


@router.post("/users", status_code=201, response_model=UserOut)
async def create_user(body: UserIn, session: SessionDep) -> User:
    # create() flushes: a duplicate email raises IntegrityError here -> 409 (install_error_handlers).
    return await Repository(session, User).create(email=body.email, name=body.name)


@router.get("/users", response_model=UserPage)
async def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> UserPage:
    try:
        # 1 SELECT for the users + 1 for all their posts (selectinload), whatever limit is.
        page = await Repository(session, User).page(limit=limit, cursor=cursor, options=[selectinload(User.posts)])
    except InvalidCursor as exc:
        raise HTTPException(status_code=422, detail=f"invalid cursor: {exc}") from None
    return UserPage(items=[UserWithPosts.model_validate(u) for u in page.items], next_cursor=page.next_cursor)


@router.get("/users/{user_id}", response_model=UserWithPosts)
async def get_user(user_id: uuid.UUID, session: SessionDep) -> User:
    user = await Repository(session, User).get(user_id, options=[selectinload(User.posts)])
    if user is None:
        raise HTTPException(status_code=404, detail="user not found")
    return user


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: uuid.UUID, session: SessionDep) -> Response:
    users = Repository(session, User)
    user = await users.get(user_id)
    if user is None:
        raise HTTPException(status_code=404, detail="user not found")
    await users.soft_delete(user)
    return Response(status_code=204)


@router.post("/users/{user_id}/posts", status_code=201, response_model=PostOut)
async def create_post(user_id: uuid.UUID, body: PostIn, session: SessionDep) -> Post:
    if await Repository(session, User).get(user_id) is None:
        raise HTTPException(status_code=404, detail="user not found")
    return await Repository(session, Post).create(author_id=user_id, title=body.title, body=body.body)


# --- application -----------------------------------------------------------------------------

TABLES = [User.__table__, Post.__table__, Tag.__table__, PostTag.__table__]


async def create_tables(engine: AsyncEngine) -> None:
    """Demo convenience; a real deployment runs Alembic migrations instead."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=TABLES)


def settings_from_env() -> DatabaseSettings:
    if os.environ.get("DATABASE_URL"):
        return DatabaseSettings.from_env()
    path = Path(tempfile.gettempdir()) / "async-sqlalchemy-patterns-fastapi_app.db"
    return DatabaseSettings(url=f"sqlite+aiosqlite:///{path}")


async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 without echoing the input: FastAPI's default handler copies each bad value into the
    answer (a 1 MB string comes back whole) and answers 500 when it cannot render it (NaN, a lone
    surrogate)."""
    errors = [
        {
            "loc": [part if isinstance(part, int) else str(part)[:100] for part in e.get("loc", ())],
            "msg": str(e.get("msg", ""))[:300],
            "type": e.get("type"),
        }
        for e in exc.errors()[:20]  # loc is cut too: an unknown 1 MB key is part of it
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def create_app(
    settings: DatabaseSettings | None = None,
    *,
    with_tables: bool = True,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The application; ``settings`` default to ``DATABASE_URL``, read at startup."""
    app = FastAPI(
        title="users",
        lifespan=lifespan
        or create_lifespan(settings or settings_from_env, on_startup=create_tables if with_tables else None),
    )
    install_error_handlers(app)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.include_router(health_router)
    app.include_router(router)
    return app


@asynccontextmanager
async def demo_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Serve mode never touches existing tables: with ``DATABASE_URL`` set, the demo runs in a
    scratch namespace (``templates.scratch``) that is removed at shutdown."""
    if not os.environ.get("DATABASE_URL"):
        async with create_lifespan(settings_from_env(), on_startup=create_tables)(app):
            yield
        return
    async with scratch_url(os.environ["DATABASE_URL"]) as (url, connect_args):
        settings = replace(
            DatabaseSettings.from_env(), url=url.render_as_string(hide_password=False), connect_args=connect_args
        )
        async with create_lifespan(settings, on_startup=create_tables)(app):
            yield


app = create_app(lifespan=demo_lifespan)


# --- self-test -------------------------------------------------------------------------------


def expect(response: httpx.Response, status: int) -> httpx.Response:
    if response.status_code != status:
        raise AssertionError(
            f"{response.request.method} {response.request.url.path}: expected {status}, "
            f"got {response.status_code} {response.text[:300]}"
        )
    return response


async def main() -> None:
    async with scratch_url() as (url, connect_args):
        settings = DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args)
        demo = create_app(settings)
        # ASGITransport does not run the lifespan: enter it ourselves (engine, tables, dispose).
        async with demo.router.lifespan_context(demo):
            engine: AsyncEngine = demo.state.engine
            transport = httpx.ASGITransport(app=demo)
            async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
                ada = expect(await client.post("/users", json={"email": "ada@example.com", "name": "Ada"}), 201).json()
                uuid.UUID(ada["id"])
                dup = await client.post("/users", json={"email": "ADA@example.com", "name": "Ada again"})
                expect(dup, 409)
                async with engine.connect() as conn:
                    stored = await conn.scalar(
                        select(func.count()).select_from(User).where(User.email == "ada@example.com")
                    )
                if stored != 1:
                    raise AssertionError(f"expected 1 row for ada@example.com, found {stored}")
                print(
                    f"POST /users 201, same email again {dup.status_code}, rows stored: {stored} ({engine.dialect.name})"
                )

                expect(await client.post("/users", json={"email": "not-an-email", "name": "x"}), 422)
                expect(await client.post("/users", json={"email": "b@example.com"}), 422)
                expect(await client.get("/users/not-a-uuid"), 422)

                hostile = "x'); DROP TABLE users; --"
                bobby = expect(
                    await client.post("/users", json={"email": "bobby@example.com", "name": hostile}), 201
                ).json()
                fetched = expect(await client.get(f"/users/{bobby['id']}"), 200).json()
                if fetched["name"] != hostile:
                    raise AssertionError(f"name changed on the way: {fetched['name']!r}")
                print(f"invalid bodies 422; name {hostile!r} stored verbatim")

                expect(await client.post(f"/users/{ada['id']}/posts", json={"title": "Hello", "body": "first"}), 201)
                expect(await client.post(f"/users/{uuid.uuid4()}/posts", json={"title": "orphan"}), 404)
                for i in range(5):
                    expect(await client.post("/users", json={"email": f"u{i}@example.com", "name": f"User {i}"}), 201)

                items: list[dict[str, object]] = []
                cursor: str | None = None
                with count_queries(engine) as queries:
                    while True:
                        params: dict[str, str | int] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
                        page = expect(await client.get("/users", params=params), 200).json()
                        items += page["items"]
                        cursor = page["next_cursor"]
                        if cursor is None:
                            break
                seen = [str(item["id"]) for item in items]
                pages = (len(seen) + 2) // 3
                if len(seen) != 7 or len(set(seen)) != 7:
                    raise AssertionError(f"pagination returned {len(seen)} ids ({len(set(seen))} distinct), expected 7")
                if len(queries.selects()) > 2 * pages:
                    raise AssertionError(
                        f"{len(queries.selects())} SELECTs for {pages} pages: expected at most 2 per page"
                    )
                ada_posts = [post["title"] for item in items if item["id"] == ada["id"] for post in item["posts"]]
                if ada_posts != ["Hello"]:
                    raise AssertionError(f"Ada's posts in the list: {ada_posts}")
                expect(await client.get("/users", params={"cursor": "definitely-not-a-cursor"}), 422)
                expect(await client.get("/users", params={"limit": 0}), 422)
                print(f"GET /users: 7 users in {pages} pages, {len(queries.selects())} SELECTs; bad cursor/limit 422")

                expect(await client.delete(f"/users/{bobby['id']}"), 204)
                expect(await client.get(f"/users/{bobby['id']}"), 404)
                expect(await client.delete(f"/users/{bobby['id']}"), 404)
                health = expect(await client.get("/health"), 200).json()
                print(f"DELETE 204 then GET 404 (soft delete); /health {health['status']}")
    print("fastapi_app: ok")


if __name__ == "__main__":
    asyncio.run(main())

"""FastAPI + SQLModel, async: the users/posts API of fastapi_app.py on SQLModel models.

Shows: ``table=True`` models for the database and plain SQLModel models for request bodies and
responses (table models skip validation), SQLModel's ``AsyncSession`` plugged into the template's
request-scoped session (commit before the response, ``Depends(..., scope="function")``) so endpoints
call ``session.exec()``, relationships declared ``lazy="raise"`` through ``sa_relationship_kwargs``
and loaded with ``selectinload``, UUID keys and aware UTC datetimes that behave the same on SQLite,
PostgreSQL and MariaDB, and the same answers as fastapi_app.py: 201, 409 for a duplicate email,
422 for bad input or cursors, 404 for missing or soft-deleted users, 204 for a soft delete, and a
keyset-paginated list that loads every user's posts in a fixed number of statements.

Use when: building or reviewing async FastAPI endpoints on SQLModel.
Run:   ``python examples/sqlmodel_app.py`` - drives the app through httpx ``ASGITransport`` in a
       scratch namespace of ``DATABASE_URL`` (default: embedded SQLite) and checks every answer.
Tests: ``create_app(settings)`` builds an app on any database; ``tests/test_sqlmodel_app.py``.
"""

import asyncio
import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Response
from pydantic import ConfigDict, field_validator
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import selectinload
from sqlmodel import Field, Relationship, SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from templates.base_model import NAMING_CONVENTION, UTCDateTime, UUIDType, utcnow
from templates.database import DatabaseSettings
from templates.fastapi_integration import create_lifespan, get_session, install_error_handlers
from templates.query_counter import count_queries
from templates.repository import MAX_PAGE_SIZE, InvalidCursor
from templates.scratch import scratch_url
from templates.sqlmodel_session import create_sqlmodel_sessionmaker, exec_page

# No `from __future__ import annotations` in a module with table models: SQLModel would see
# list["Post"] as the string "list['Post']" and the relationship could not be resolved.

SQLModel.metadata.naming_convention = NAMING_CONVENTION  # before the first table class

# --- models: one table class per table, plain SQLModel classes for the API -------------------


class UserBase(SQLModel):
    email: str = Field(max_length=255, unique=True)
    name: str = Field(max_length=100)


class User(UserBase, table=True):
    __tablename__ = "users"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True, sa_type=UUIDType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    posts: list["Post"] = Relationship(back_populates="author", sa_relationship_kwargs={"lazy": "raise"})


class PostBase(SQLModel):
    title: str = Field(max_length=200)
    body: str = Field(default="", max_length=10_000)


class Post(PostBase, table=True):
    __tablename__ = "posts"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True, sa_type=UUIDType)
    author_id: uuid.UUID = Field(foreign_key="users.id", index=True, sa_type=UUIDType)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    author: User = Relationship(back_populates="posts", sa_relationship_kwargs={"lazy": "raise"})


def storable(value: str) -> str:
    """NUL is refused with a 422: PostgreSQL cannot store it in text (a 500 there)."""
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    return value


class UserCreate(UserBase):
    model_config = ConfigDict(extra="forbid")

    @field_validator("email")
    @classmethod
    def normalise_email(cls, value: str) -> str:
        value = storable(value).strip().lower()
        if value.count("@") != 1 or value.startswith("@") or value.endswith("@") or any(c.isspace() for c in value):
            raise ValueError("not an email address")
        return value

    @field_validator("name")
    @classmethod
    def clean_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be empty")
        return storable(value)


class PostCreate(PostBase):
    model_config = ConfigDict(extra="forbid")

    @field_validator("title", "body")
    @classmethod
    def clean_text(cls, value: str) -> str:
        return storable(value)


class PostPublic(PostBase):
    id: uuid.UUID
    created_at: datetime


class UserPublic(UserBase):
    id: uuid.UUID
    created_at: datetime


class UserWithPosts(UserPublic):
    posts: list[PostPublic]


class UserPage(SQLModel):
    items: list[UserWithPosts]
    next_cursor: str | None


# SQLModel's AsyncSession from the template's request-scoped dependency: the lifespan below makes
# the app's sessionmaker produce them; the commit still runs before the response is sent.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

# --- endpoints -------------------------------------------------------------------------------

router = APIRouter()


async def live_user(session: AsyncSession, user_id: uuid.UUID, *, with_posts: bool = False) -> User:
    stmt = select(User).where(User.id == user_id, col(User.deleted_at).is_(None))
    if with_posts:
        stmt = stmt.options(selectinload(User.posts))
    user = (await session.exec(stmt)).one_or_none()
    if user is None:
        raise HTTPException(status_code=404, detail="user not found")
    return user


@router.post("/users", status_code=201, response_model=UserPublic)
async def create_user(body: UserCreate, session: SessionDep) -> User:
    user = User.model_validate(body)
    session.add(user)
    await session.flush()  # a duplicate email raises IntegrityError here -> 409 (install_error_handlers)
    return user


@router.get("/users", response_model=UserPage)
async def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> UserPage:
    try:
        # 1 SELECT for the users + 1 for all their posts (selectinload), whatever limit is.
        page = await exec_page(session, User, limit=limit, cursor=cursor, options=[selectinload(User.posts)])
    except InvalidCursor as exc:
        raise HTTPException(status_code=422, detail=f"invalid cursor: {exc}") from None
    return UserPage(items=[UserWithPosts.model_validate(u) for u in page.items], next_cursor=page.next_cursor)


@router.get("/users/{user_id}", response_model=UserWithPosts)
async def get_user(user_id: uuid.UUID, session: SessionDep) -> User:
    return await live_user(session, user_id, with_posts=True)


@router.delete("/users/{user_id}", status_code=204)
async def delete_user(user_id: uuid.UUID, session: SessionDep) -> Response:
    user = await live_user(session, user_id)
    user.deleted_at = utcnow()
    await session.flush()
    return Response(status_code=204)


@router.post("/users/{user_id}/posts", status_code=201, response_model=PostPublic)
async def create_post(user_id: uuid.UUID, body: PostCreate, session: SessionDep) -> Post:
    await live_user(session, user_id)
    post = Post.model_validate(body, update={"author_id": user_id})
    session.add(post)
    await session.flush()
    return post


# --- application -----------------------------------------------------------------------------


def create_app(settings: DatabaseSettings, *, with_tables: bool = True) -> FastAPI:
    """The application on ``settings``; ``with_tables`` creates the demo tables at startup."""

    async def on_startup(engine: AsyncEngine) -> None:
        # The template's lifespan made app.state.sessionmaker with SQLAlchemy's AsyncSession;
        # swap in SQLModel's, so get_session yields sessions with exec().
        app.state.sessionmaker = create_sqlmodel_sessionmaker(engine)
        if with_tables:  # demo convenience; a real deployment runs Alembic migrations instead
            async with engine.begin() as conn:
                await conn.run_sync(SQLModel.metadata.create_all, tables=[User.__table__, Post.__table__])

    app = FastAPI(title="users (SQLModel)", lifespan=create_lifespan(settings, on_startup=on_startup))
    install_error_handlers(app)
    app.include_router(router)
    return app


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
        demo = create_app(DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args))
        async with demo.router.lifespan_context(demo):  # ASGITransport does not run the lifespan
            engine: AsyncEngine = demo.state.engine
            transport = httpx.ASGITransport(app=demo)
            async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
                ada = expect(await client.post("/users", json={"email": "Ada@Example.com", "name": "Ada"}), 201).json()
                if ada["email"] != "ada@example.com" or not ada["created_at"].endswith(("+00:00", "Z")):
                    raise AssertionError(f"unexpected user {ada}")
                dup = await client.post("/users", json={"email": "ada@example.com", "name": "Ada again"})
                expect(dup, 409)
                async with demo.state.sessionmaker() as session:
                    stored = (await session.exec(select(func.count()).select_from(User))).one()
                if stored != 1:
                    raise AssertionError(f"expected 1 user stored, found {stored}")
                print(
                    f"POST /users 201, same email again {dup.status_code}, rows stored: {stored} ({engine.dialect.name})"
                )

                expect(await client.post("/users", json={"email": "not-an-email", "name": "x"}), 422)
                expect(await client.post("/users", json={"email": "b@example.com"}), 422)
                expect(
                    await client.post("/users", json={"email": "b@example.com", "name": "B", "id": str(uuid.uuid4())}),
                    422,
                )
                expect(await client.post("/users", json={"email": "b@example.com", "name": "B\x00"}), 422)
                expect(await client.get("/users/not-a-uuid"), 422)
                print("invalid bodies, unknown fields, NUL and malformed ids: 422")

                expect(await client.post(f"/users/{ada['id']}/posts", json={"title": "Hello", "body": "first"}), 201)
                expect(await client.post(f"/users/{uuid.uuid4()}/posts", json={"title": "orphan"}), 404)
                others = [
                    expect(
                        await client.post("/users", json={"email": f"u{i}@example.com", "name": f"User {i}"}), 201
                    ).json()
                    for i in range(5)
                ]
                for other in others[:2]:
                    expect(await client.post(f"/users/{other['id']}/posts", json={"title": "hi"}), 201)

                items: list[dict[str, object]] = []
                cursor: str | None = None
                with count_queries(engine) as queries:
                    while True:
                        params: dict[str, str | int] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
                        page = expect(await client.get("/users", params=params), 200).json()
                        items += page["items"]
                        cursor = page["next_cursor"]
                        if cursor is None:
                            break
                seen = [str(item["id"]) for item in items]
                pages = (len(seen) + 1) // 2
                if len(seen) != 6 or len(set(seen)) != 6:
                    raise AssertionError(f"pagination returned {len(seen)} ids ({len(set(seen))} distinct), expected 6")
                if len(queries.selects()) > 2 * pages:
                    raise AssertionError(
                        f"{len(queries.selects())} SELECTs for {pages} pages: expected at most 2 per page"
                    )
                ada_posts = [post["title"] for item in items if item["id"] == ada["id"] for post in item["posts"]]
                if ada_posts != ["Hello"]:
                    raise AssertionError(f"Ada's posts in the list: {ada_posts}")
                expect(await client.get("/users", params={"cursor": "definitely-not-a-cursor"}), 422)
                expect(await client.get("/users", params={"limit": 0}), 422)
                print(f"GET /users: 6 users in {pages} pages, {len(queries.selects())} SELECTs; bad cursor/limit 422")

                victim = others[-1]["id"]
                expect(await client.delete(f"/users/{victim}"), 204)
                expect(await client.get(f"/users/{victim}"), 404)
                expect(await client.delete(f"/users/{victim}"), 404)
                async with demo.state.sessionmaker() as session:
                    kept = (await session.exec(select(User).where(User.id == uuid.UUID(victim)))).one()
                if kept.deleted_at is None or kept.deleted_at.tzinfo is None:
                    raise AssertionError(f"soft delete did not keep the row with an aware deleted_at: {kept}")
                fetched = expect(await client.get(f"/users/{ada['id']}"), 200).json()
                if [p["title"] for p in fetched["posts"]] != ["Hello"]:
                    raise AssertionError(f"GET /users/{{id}} posts: {fetched['posts']}")
                print("DELETE 204 then GET 404; the row stays with deleted_at set (soft delete)")
    print("sqlmodel_app: ok")


if __name__ == "__main__":
    asyncio.run(main())

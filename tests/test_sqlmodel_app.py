"""examples/sqlmodel_app.py on every backend, beyond its own self-test (tests/test_examples.py runs
that): the endpoints get SQLModel's AsyncSession, the list costs the same number of statements
however many users and posts there are, and the duplicate check holds under concurrency.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import func, select

from examples.sqlmodel_app import SessionDep, User, create_app
from templates.database import DatabaseSettings
from templates.query_counter import count_queries
from templates.scratch import scratch_url


@asynccontextmanager
async def running_app(server_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with scratch_url(server_url) as (url, connect_args):
        app = create_app(DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args))

        @app.get("/session-class")
        async def session_class(session: SessionDep) -> dict[str, str]:
            return {"class": f"{type(session).__module__}.{type(session).__qualname__}"}

        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield app, client


@pytest.fixture(scope="module")
async def api(server_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(server_url) as pair:
        yield pair


async def add_users(client: httpx.AsyncClient, n: int, posts_each: int) -> None:
    for _ in range(n):
        user = (await client.post("/users", json={"email": f"{uuid.uuid4().hex[:12]}@example.com", "name": "N"})).json()
        for j in range(posts_each):
            assert (await client.post(f"/users/{user['id']}/posts", json={"title": f"t{j}"})).status_code == 201


async def test_endpoints_get_sqlmodel_sessions(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    response = await api[1].get("/session-class")
    assert response.json() == {"class": "sqlmodel.ext.asyncio.session.AsyncSession"}


async def test_list_statement_count_does_not_grow_with_rows(server_url: str) -> None:
    async with running_app(server_url) as (app, client):
        engine = app.state.engine
        counts: list[int] = []
        stored = 0
        for n in (2, 10):
            await add_users(client, n - stored, posts_each=3)
            stored = n
            with count_queries(engine) as queries:
                page = (await client.get("/users", params={"limit": 50})).json()
            assert len(page["items"]) == n and all(len(item["posts"]) == 3 for item in page["items"])
            counts.append(len(queries.selects()))
        assert counts == [2, 2], counts  # users + one selectinload for all their posts


async def test_concurrent_duplicates_one_201_rest_409(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = api
    email = f"race-{uuid.uuid4().hex[:8]}@example.com"
    answers = await asyncio.gather(*(client.post("/users", json={"email": email, "name": "R"}) for _ in range(5)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409, 409]
    async with app.state.sessionmaker() as session:
        assert (await session.exec(select(func.count()).select_from(User).where(User.email == email))).one() == 1


async def test_soft_deleted_user_leaves_the_list(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    client = api[1]
    gone = (await client.post("/users", json={"email": f"{uuid.uuid4().hex[:8]}@example.com", "name": "G"})).json()
    assert (await client.delete(f"/users/{gone['id']}")).status_code == 204
    ids: list[str] = []
    cursor = None
    while True:
        page = (await client.get("/users", params={"limit": 200} | ({"cursor": cursor} if cursor else {}))).json()
        ids += [item["id"] for item in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert gone["id"] not in ids
    assert (await client.post(f"/users/{gone['id']}/posts", json={"title": "late"})).status_code == 404

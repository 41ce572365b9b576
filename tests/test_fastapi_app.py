"""examples/fastapi_app.py on every backend, plus the failure that ``scope="function"`` prevents.

Each app here runs in its own scratch namespace of the backend's server (``server_url`` +
``templates.scratch``), so rows written by other test modules cannot change what is counted.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, Depends, FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from examples.fastapi_app import UserIn, create_app
from templates.base_model import utcnow
from templates.database import DatabaseSettings, commit_or_rollback
from templates.fastapi_integration import SessionDep, get_session, install_error_handlers
from templates.models import Post, User
from templates.query_counter import count_queries
from templates.scratch import scratch_url


@asynccontextmanager
async def running_app(server_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The example app with its lifespan entered, in a fresh namespace, and a client for it."""
    async with scratch_url(server_url) as (url, connect_args):
        app = create_app(DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield app, client


@pytest.fixture(scope="module")
async def api(server_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(server_url) as pair:
        yield pair


@pytest.fixture
def client(api: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return api[1]


@pytest.fixture
def app_engine(api: tuple[FastAPI, httpx.AsyncClient]) -> AsyncEngine:
    engine: AsyncEngine = api[0].state.engine
    return engine


def unique_email(tag: str = "u") -> str:
    return f"{tag}-{uuid.uuid4().hex[:12]}@example.com"


async def rows_with_email(engine: AsyncEngine, email: str) -> int:
    async with engine.connect() as conn:
        return (await conn.scalar(select(func.count()).select_from(User).where(User.email == email))) or 0


# --- creating users ------------------------------------------------------------------------


async def test_create_user_returns_201_with_uuid(client: httpx.AsyncClient, app_engine: AsyncEngine) -> None:
    email = unique_email()
    response = await client.post("/users", json={"email": email, "name": "Ada"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert uuid.UUID(body["id"]) and body["email"] == email and body["name"] == "Ada"
    assert await rows_with_email(app_engine, email) == 1


async def test_duplicate_email_is_409_and_one_row(client: httpx.AsyncClient, app_engine: AsyncEngine) -> None:
    email = unique_email("dup")
    assert (await client.post("/users", json={"email": email, "name": "first"})).status_code == 201
    again = await client.post("/users", json={"email": email.upper(), "name": "second"})
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "conflict with existing data"}  # no SQL, no constraint names
    assert await rows_with_email(app_engine, email) == 1
    # The failed request left nothing behind: the next one on the same pool works.
    assert (await client.post("/users", json={"email": unique_email(), "name": "next"})).status_code == 201


async def test_concurrent_duplicates_one_201_rest_409(client: httpx.AsyncClient, app_engine: AsyncEngine) -> None:
    """Five simultaneous sign-ups with one email (separate sessions and connections): the unique
    index decides, exactly one wins, the others get 409 - no 500, no second row."""
    email = unique_email("race")
    responses = await asyncio.gather(
        *(client.post("/users", json={"email": email, "name": f"racer {i}"}) for i in range(5))
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409], [r.text for r in responses]
    assert await rows_with_email(app_engine, email) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"email": "no-at-sign", "name": "x"},
        {"email": "a@example.com"},
        {"name": "no email"},
        {"email": "a@example.com", "name": ""},
        {"email": "a@example.com", "name": "n" * 101},
        {"email": "a@example.com", "name": "x", "is_admin": True},
        {"email": 42, "name": "x"},
        [],
    ],
    ids=[
        "bad-email",
        "no-name",
        "no-email",
        "empty-name",
        "name-too-long",
        "extra-field",
        "email-not-str",
        "not-object",
    ],
)
async def test_invalid_body_is_422(client: httpx.AsyncClient, body: Any) -> None:
    response = await client.post("/users", json=body)
    assert response.status_code == 422, response.text


async def test_non_json_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/users", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


@pytest.mark.parametrize(
    "name", ["x'); DROP TABLE users; --", "\\' OR 1=1 -- ", "100% _wild_ %s %(name)s", "Zoë 🚀 名前"]
)
async def test_text_is_data(client: httpx.AsyncClient, app_engine: AsyncEngine, name: str) -> None:
    email = unique_email("text")
    created = await client.post("/users", json={"email": email, "name": name})
    assert created.status_code == 201, created.text
    assert created.json()["name"] == name
    fetched = await client.get(f"/users/{created.json()['id']}")
    assert fetched.status_code == 200 and fetched.json()["name"] == name
    async with app_engine.connect() as conn:
        assert await conn.scalar(select(User.name).where(User.email == email)) == name
        assert await conn.scalar(select(func.count()).select_from(User)) >= 1  # table still there


# --- the guard is real: scope="function" vs the default request scope -------------------------

# The naive wiring: default scope ("request"), so get_session's commit runs after the response
# has been sent. No flush in the endpoint, so the INSERT (and its unique violation) happen at commit.
NaiveSessionDep = Annotated[AsyncSession, Depends(get_session)]

naive_router = APIRouter()


@naive_router.post("/signup", status_code=201)
async def naive_signup(body: UserIn, session: NaiveSessionDep) -> dict[str, str]:
    user = User(id=uuid.uuid4(), email=body.email, name=body.name)
    session.add(user)  # INSERT happens at commit, after this function returns
    return {"id": str(user.id)}


guarded_router = APIRouter()


@guarded_router.post("/signup", status_code=201)
async def guarded_signup(body: UserIn, session: SessionDep) -> dict[str, str]:
    user = User(id=uuid.uuid4(), email=body.email, name=body.name)
    session.add(user)  # same code; SessionDep commits before the response is sent
    return {"id": str(user.id)}


def app_with(router: APIRouter, shared: FastAPI) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    app.state.engine, app.state.sessionmaker = shared.state.engine, shared.state.sessionmaker
    return app


async def test_naive_dependency_answers_201_for_a_duplicate_it_did_not_store(
    api: tuple[FastAPI, httpx.AsyncClient], app_engine: AsyncEngine
) -> None:
    naive = app_with(naive_router, api[0])
    email = unique_email("naive")
    # raise_app_exceptions=False: the client sees what a real HTTP client sees.
    transport = httpx.ASGITransport(app=naive, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.post("/signup", json={"email": email, "name": "first"})
        second = await client.post("/signup", json={"email": email, "name": "second"})
    assert first.status_code == 201
    assert second.status_code == 201  # the client is told "created" ...
    assert second.json()["id"] != first.json()["id"]
    assert await rows_with_email(app_engine, email) == 1  # ... but only the first row exists


async def test_naive_dependency_in_a_test_client_raises_instead(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """httpx's default (raise_app_exceptions=True) re-raises what the server only logs."""
    naive = app_with(naive_router, api[0])
    email = unique_email("naive-raise")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=naive), base_url="http://test") as client:
        assert (await client.post("/signup", json={"email": email, "name": "first"})).status_code == 201
        with pytest.raises(RuntimeError, match="response already started"):
            await client.post("/signup", json={"email": email, "name": "second"})


async def test_naive_dependency_over_real_http_answers_201(
    api: tuple[FastAPI, httpx.AsyncClient], app_engine: AsyncEngine
) -> None:
    """Same with uvicorn on a loopback port: the 201 has already gone out when the commit fails."""
    naive = app_with(naive_router, api[0])
    server = uvicorn.Server(uvicorn.Config(naive, host="127.0.0.1", port=0, log_level="critical", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(3000):  # bounded: 30 s, for a loaded CI machine
            if server.started:
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        port = server.servers[0].sockets[0].getsockname()[1]
        email = unique_email("naive-http")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            first = await client.post("/signup", json={"email": email, "name": "first"})
            second = await client.post("/signup", json={"email": email, "name": "second"})
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
    assert (first.status_code, second.status_code) == (201, 201)
    assert await rows_with_email(app_engine, email) == 1


async def test_function_scope_turns_the_same_commit_failure_into_409(
    api: tuple[FastAPI, httpx.AsyncClient], app_engine: AsyncEngine
) -> None:
    guarded = app_with(guarded_router, api[0])
    email = unique_email("guarded")
    transport = httpx.ASGITransport(app=guarded, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        first = await client.post("/signup", json={"email": email, "name": "first"})
        second = await client.post("/signup", json={"email": email, "name": "second"})
    assert (first.status_code, second.status_code) == (201, 409)
    assert await rows_with_email(app_engine, email) == 1


async def test_dependency_override_keeps_the_declared_scope(
    api: tuple[FastAPI, httpx.AsyncClient], app_engine: AsyncEngine
) -> None:
    """An override of get_session (as templates/conftest.py installs) still commits before the
    response: the commit-time duplicate is a 409, not a 201."""
    guarded = app_with(guarded_router, api[0])
    sessions = api[0].state.sessionmaker

    async def replacement() -> AsyncIterator[AsyncSession]:
        async with commit_or_rollback(sessions) as s:
            yield s

    guarded.dependency_overrides[get_session] = replacement
    email = unique_email("override")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://test") as client:
        first = await client.post("/signup", json={"email": email, "name": "first"})
        second = await client.post("/signup", json={"email": email, "name": "second"})
    assert (first.status_code, second.status_code) == (201, 409)
    assert await rows_with_email(app_engine, email) == 1


# --- reading, posts, soft delete -------------------------------------------------------------


async def test_posts_and_get_user(client: httpx.AsyncClient) -> None:
    user = (await client.post("/users", json={"email": unique_email("poster"), "name": "Poster"})).json()
    for title in ("one", "two"):
        created = await client.post(f"/users/{user['id']}/posts", json={"title": title, "body": f"body {title}"})
        assert created.status_code == 201, created.text
        assert uuid.UUID(created.json()["id"]) and created.json()["title"] == title
    fetched = await client.get(f"/users/{user['id']}")
    assert fetched.status_code == 200
    assert [p["title"] for p in fetched.json()["posts"]] == ["one", "two"]  # User.posts order_by created_at
    assert (await client.post(f"/users/{uuid.uuid4()}/posts", json={"title": "x"})).status_code == 404
    assert (await client.post(f"/users/{user['id']}/posts", json={"title": ""})).status_code == 422


async def test_get_missing_or_malformed_id(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/users/{uuid.uuid4()}")).status_code == 404
    assert (await client.get("/users/42")).status_code == 422
    assert (await client.delete("/users/not-a-uuid")).status_code == 422


async def test_soft_delete_hides_but_keeps_the_row(client: httpx.AsyncClient, app_engine: AsyncEngine) -> None:
    email = unique_email("gone")
    user = (await client.post("/users", json={"email": email, "name": "Gone"})).json()
    deleted = await client.delete(f"/users/{user['id']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await client.get(f"/users/{user['id']}")).status_code == 404
    assert (await client.delete(f"/users/{user['id']}")).status_code == 404
    assert (await client.post(f"/users/{user['id']}/posts", json={"title": "late"})).status_code == 404
    async with app_engine.connect() as conn:
        deleted_at = await conn.scalar(select(User.deleted_at).where(User.email == email))
    assert deleted_at is not None  # nothing lost: the row is still there, marked
    # The address stays taken (the unique index covers soft-deleted rows too).
    assert (await client.post("/users", json={"email": email, "name": "Again"})).status_code == 409


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_health_reports_503_without_leaking_details(api: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = api
    real = app.state.engine
    dead = create_async_engine("postgresql+asyncpg://nobody:s3cret@127.0.0.1:1/nothing", poolclass=NullPool)
    app.state.engine = dead
    try:
        response = await client.get("/health")
    finally:
        app.state.engine = real
        await dead.dispose()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    assert "s3cret" not in response.text and "127.0.0.1" not in response.text


async def test_pool_exhausted_is_503_with_retry_after(server_url: str) -> None:
    async with scratch_url(server_url) as (url, connect_args):
        settings = DatabaseSettings(
            url=url.render_as_string(hide_password=False),
            connect_args=connect_args,
            pool_size=1,
            max_overflow=0,
            pool_timeout=0.2,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                async with app.state.engine.connect() as held:  # the only connection is busy
                    await held.execute(select(1))
                    busy = await client.get(f"/users/{uuid.uuid4()}")
                free = await client.get(f"/users/{uuid.uuid4()}")
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert busy.json() == {"detail": "database unavailable, retry later"}
    assert free.status_code == 404  # the pool recovers once the connection is back


# --- listing: keyset pagination and a fixed number of statements --------------------------------


@pytest.fixture(scope="module")
async def listing(server_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """210 users in a namespace of their own: the 10 oldest have 50 posts each, the rest none."""
    async with running_app(server_url) as (app, client):
        base = utcnow() - timedelta(days=1)
        users = [
            User(email=f"list{i:03d}@example.com", name=f"L{i:03d}", created_at=base + timedelta(seconds=i))
            for i in range(210)
        ]
        for user in users[:10]:
            user.posts = [Post(title=f"p{j}", created_at=base + timedelta(seconds=j)) for j in range(50)]
        async with app.state.sessionmaker() as session, session.begin():
            session.add_all(users)
        yield app, client


async def statements_for(app: FastAPI, client: httpx.AsyncClient, params: dict[str, Any]) -> tuple[int, int, dict]:
    with count_queries(app.state.engine) as queries:
        response = await client.get("/users", params=params)
    assert response.status_code == 200, response.text
    return len(queries), len(queries.selects()), response.json()


async def test_list_statement_count_is_fixed(listing: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = listing
    busy = await statements_for(app, client, {"limit": 10})
    assert [len(u["posts"]) for u in busy[2]["items"]] == [50] * 10
    quiet = await statements_for(app, client, {"limit": 10, "cursor": busy[2]["next_cursor"]})
    assert [len(u["posts"]) for u in quiet[2]["items"]] == [0] * 10
    wide = await statements_for(app, client, {"limit": 200})
    assert len(wide[2]["items"]) == 200 and sum(len(u["posts"]) for u in wide[2]["items"]) == 500
    # 10 users x 50 posts, 10 users x 0 posts, 200 users: the same statements, at most 3
    # (SELECT users, SELECT their posts; SQLite adds the explicit BEGIN of the template's hook).
    assert busy[:2] == quiet[:2] == wide[:2], (busy[:2], quiet[:2], wide[:2])
    assert busy[0] <= 3 and busy[1] == 2


async def test_pagination_walks_every_row_once_in_order(listing: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = listing
    names: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 7} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/users", params=params)).json()
        names += [u["name"] for u in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if pages == 2:  # a row inserted mid-walk (older than everything) neither repeats nor shifts rows
            async with app.state.sessionmaker() as session, session.begin():
                session.add(User(email=unique_email("late"), name="late", created_at=utcnow() - timedelta(days=2)))
        if cursor is None:
            break
    assert names == [f"L{i:03d}" for i in range(210)]
    assert pages == 30


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "definitely not a cursor"},
        {"cursor": "%%%"},
        {"cursor": b64(b"\xff\xfe")},
        {"cursor": b64(b"{}")},
        {"cursor": b64(b"[1]")},
        {"cursor": b64(b'["yesterday", "nope"]')},
        {"cursor": b64(b'["2024-01-01T00:00:00", "0" ]')},  # naive datetime
        {"cursor": b64(b"[1, 2]")},
        {"cursor": "A" * 513},
        {"limit": 0},
        {"limit": 201},
        {"limit": -1},
        {"limit": "ten"},
    ],
)
async def test_bad_cursor_or_limit_is_422(client: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await client.get("/users", params=params)
    assert response.status_code == 422, response.text


async def test_module_app_reads_database_url_at_startup(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``create_app()`` without settings: DATABASE_URL is read when the lifespan starts, not at import."""
    from examples.fastapi_app import settings_from_env

    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert settings_from_env().url.endswith("async-sqlalchemy-patterns-fastapi_app.db")
    app = create_app()  # built before the variable is set
    target = tmp_path / "app db.sqlite"
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{target}")
    async with app.router.lifespan_context(app):
        assert app.state.engine.url.database == str(target)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            assert (await client.post("/users", json={"email": "env@example.com", "name": "env"})).status_code == 201
    assert target.exists()

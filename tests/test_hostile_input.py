"""examples/fastapi_app.py under hostile input, on every backend.

SQL metacharacters, 1 MB strings, invalid UTF-8, NUL and lone surrogates, negative or huge
``limit``, malformed and forged cursors, unknown fields, wrong types, odd content types and paths:
every answer is a 4xx (never a 500; a forged cursor that decodes to valid values may list a page),
no answer echoes a large input back, nothing is stored except what a 201 acknowledged (text with
SQL metacharacters is data and is stored verbatim), and afterwards the app keeps serving with no
connection checked out.

Fixes this test forced (see git log): NUL in text was a 500 on PostgreSQL and stored on SQLite and
MySQL (now 422 everywhere); FastAPI's default 422 handler echoed each bad value (a 1 MB name came
back whole) and turned into a 500 for NaN or a lone surrogate (now a 422 without the input); a
cursor datetime near ``datetime.max`` / ``datetime.min`` raised OverflowError (a 500, now 422).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from examples.fastapi_app import create_app
from templates.database import DatabaseSettings
from templates.models import Post, User
from templates.scratch import scratch_url

MB = 1_000_000
JSON = {"content-type": "application/json"}
MAX_ANSWER = 20_000  # bytes; an answer that repeats a 1 MB input is a finding


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_of(values: Any) -> str:
    return b64(json.dumps(values).encode())


@dataclass
class Case:
    id: str
    method: str
    path: str  # "{user}" is replaced by an existing user's id
    kwargs: dict[str, Any] = field(default_factory=dict)
    expect: frozenset[int] = frozenset({422})


def body(raw: bytes) -> dict[str, Any]:
    return {"content": raw, "headers": JSON}


CASES = [
    # --- 1 MB strings (and larger) ---------------------------------------------------------
    Case("1mb-name", "POST", "/users", {"json": {"email": "big@example.com", "name": "x" * MB}}),
    Case("1mb-email", "POST", "/users", {"json": {"email": "a" * MB + "@example.com", "name": "x"}}),
    Case("1mb-unknown-field", "POST", "/users", {"json": {"email": "u@example.com", "name": "x", "junk": "j" * MB}}),
    Case("1mb-key", "POST", "/users", {"json": {"email": "k@example.com", "name": "x", "k" * MB: 1}}),
    Case("1mb-post-body", "POST", "/users/{user}/posts", {"json": {"title": "t", "body": "b" * MB}}),
    Case("60kb-cursor", "GET", "/users", {"params": {"cursor": "c" * 60_000}}),  # httpx caps a query at 64 KiB
    Case("10mb-body", "POST", "/users", body(b'{"email": "t@example.com", "name": "' + b"a" * (10 * MB) + b'"}')),
    # --- invalid UTF-8 and unstorable text ---------------------------------------------------
    Case(
        "utf8-invalid-email",
        "POST",
        "/users",
        body(b'{"email": "\xff\xfe@example.com", "name": "a"}'),
        frozenset({400}),
    ),
    Case(
        "utf8-invalid-name", "POST", "/users", body(b'{"email": "v@example.com", "name": "\xc3\x28"}'), frozenset({400})
    ),
    Case("utf8-overlong", "POST", "/users", body(b'{"email": "o@example.com", "name": "\xc0\xaf"}'), frozenset({400})),
    Case("utf8-truncated", "POST", "/users", body(b'{"email": "t@example.com", "name": "\xe2\x82"}'), frozenset({400})),
    Case(
        "utf8-encoded-surrogate",
        "POST",
        "/users",
        body(b'{"email": "s@example.com", "name": "\xed\xa0\x80"}'),
        frozenset({400, 422}),
    ),  # Python's JSON reader lets it through as a surrogate; pydantic refuses it
    Case("json-lone-surrogate", "POST", "/users", body(b'{"email": "ls@example.com", "name": "\\ud800"}')),
    Case("nul-in-name", "POST", "/users", {"json": {"email": "nul@example.com", "name": "a\x00b"}}),
    Case("nul-in-email", "POST", "/users", {"json": {"email": "n\x00l@example.com", "name": "a"}}),
    Case("nul-in-post-title", "POST", "/users/{user}/posts", {"json": {"title": "t\x00"}}),
    Case("nan-as-name", "POST", "/users", body(b'{"email": "nan@example.com", "name": NaN}')),
    Case("infinity-as-email", "POST", "/users", body(b'{"email": Infinity, "name": "a"}')),
    Case("deep-json", "POST", "/users", body(b"[" * 100_000 + b"]" * 100_000), frozenset({400})),
    Case("not-json", "POST", "/users", body(b"{'email': 'a@example.com'}"), frozenset({422})),
    Case("truncated-json", "POST", "/users", body(b'{"email": "a@example.com", "na'), frozenset({422})),
    # --- limit ----------------------------------------------------------------------------------
    *(
        Case(f"limit={v}", "GET", "/users", {"params": {"limit": v}})
        for v in [
            "-1",
            "0",
            "201",
            str(10**40),
            "-" + str(10**40),
            "1e3",
            "5.5",
            "0x10",
            "ten",
            "",
            "1; DROP TABLE users",
        ]
    ),
    # --- cursors: malformed and forged -------------------------------------------------------
    *(
        Case(f"cursor-{name}", "GET", "/users", {"params": {"cursor": value}})
        for name, value in [
            ("sql", "' OR 1=1 --"),
            ("percent", "%%%"),
            ("padding", "===="),
            ("one-char", "a"),
            ("not-json", b64(b"not json")),
            ("invalid-utf8", b64(b"\xff\xfe")),
            ("null", cursor_of(None)),
            ("object", cursor_of({"created_at": "2024-01-01T00:00:00+00:00"})),
            ("empty-list", cursor_of([])),
            ("too-short", cursor_of(["2024-01-01T00:00:00+00:00"])),
            ("too-long", cursor_of(["2024-01-01T00:00:00+00:00", "0" * 32, 1])),
            ("types-swapped", cursor_of(["0" * 32, "2024-01-01T00:00:00+00:00"])),
            ("bools", cursor_of([True, False])),
            ("naive-datetime", cursor_of(["2024-01-01T00:00:00", "0" * 32])),
            ("bad-uuid", cursor_of(["2024-01-01T00:00:00+00:00", "not-a-uuid"])),
            ("nul-uuid", cursor_of(["2024-01-01T00:00:00+00:00", "\x00" * 32])),
            ("sql-uuid", cursor_of(["2024-01-01T00:00:00+00:00", "'; DROP TABLE users; --"])),
            ("overflow-datetime", cursor_of(["9999-12-31T23:59:59-14:00", "0" * 32])),
            ("underflow-datetime", cursor_of(["0001-01-01T00:00:00+14:00", "0" * 32])),
            ("huge-number", b64(b"[1e999, 1]")),
            ("nested", b64(b"[" * 300 + b"]" * 300)),
        ]
    ),
    # Forged but well-formed: a legitimate (empty or full) page, not an error.
    Case(
        "cursor-forged-future",
        "GET",
        "/users",
        {"params": {"cursor": cursor_of(["9999-12-31T23:59:59+00:00", "f" * 32])}},
        frozenset({200}),
    ),
    Case(
        "cursor-forged-past",
        "GET",
        "/users",
        {"params": {"cursor": cursor_of(["0001-01-02T00:00:00+00:00", "0" * 32])}},
        frozenset({200}),
    ),
    # --- unknown fields and wrong types ----------------------------------------------------
    *(
        Case(f"unknown-{k}", "POST", "/users", {"json": {"email": f"{k}@example.com", "name": "x", k: v}})
        for k, v in [
            ("is_admin", True),
            ("id", str(uuid.uuid4())),
            ("created_at", "2000-01-01T00:00:00Z"),
            ("deleted_at", "2000-01-01T00:00:00Z"),
            ("__class__", "User"),
        ]
    ),
    *(
        Case(f"type-{name}", "POST", "/users", {"json": value})
        for name, value in [
            ("email-int", {"email": 42, "name": "x"}),
            ("email-list", {"email": ["a@example.com"], "name": "x"}),
            ("name-null", {"email": "a@example.com", "name": None}),
            ("name-object", {"email": "a@example.com", "name": {"$ne": ""}}),
            ("name-bool", {"email": "a@example.com", "name": True}),
            ("array", [{"email": "a@example.com", "name": "x"}]),
            ("string", "a@example.com"),
            ("number", 1),
            ("null", None),
        ]
    ),
    Case("type-post-title-int", "POST", "/users/{user}/posts", {"json": {"title": 7}}),
    Case("empty-body", "POST", "/users", {"content": b"", "headers": JSON}),
    Case(
        "text-plain",
        "POST",
        "/users",
        {"content": b'{"email": "tp@example.com", "name": "a"}', "headers": {"content-type": "text/plain"}},
    ),
    Case("form-encoded", "POST", "/users", {"data": {"email": "f@example.com", "name": "a"}}),
    # --- paths and methods ------------------------------------------------------------------
    Case("path-sql", "GET", "/users/' OR '1'='1"),
    Case("path-long", "GET", "/users/" + "a" * 10_000),
    Case("path-nul", "GET", "/users/%00"),
    Case("path-int", "DELETE", "/users/1"),
    Case("path-nil-uuid", "GET", f"/users/{uuid.UUID(int=0)}", expect=frozenset({404})),
    Case("path-max-uuid", "DELETE", f"/users/{uuid.UUID(int=2**128 - 1)}", expect=frozenset({404})),
    Case("post-for-missing-user", "POST", f"/users/{uuid.uuid4()}/posts", {"json": {"title": "t"}}, frozenset({404})),
    Case("method-put", "PUT", "/users", {"json": {}}, frozenset({405})),
]

# Text that looks like SQL is data: 201, stored and returned byte for byte.
SQL_TEXT = [
    "x'); DROP TABLE users; --",
    '" OR ""="',
    "`; SHOW TABLES; #",
    "%' OR 1=1 --",
    "\\'; SELECT pg_sleep(10); --",
    "$$; $1 :name ? %s %(name)s",
    "1; DELETE FROM posts WHERE 1=1",
]


@pytest.fixture(scope="module")
async def hostile_api(server_url: str) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient, str]]:
    async with scratch_url(server_url) as (url, connect_args):
        app = create_app(DatabaseSettings(url=url.render_as_string(hide_password=False), connect_args=connect_args))
        async with app.router.lifespan_context(app):
            # raise_app_exceptions=False: an unhandled error is seen as the 500 a real client gets.
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://hostile", timeout=60) as client:
                owner = await client.post("/users", json={"email": "owner@example.com", "name": "Owner"})
                assert owner.status_code == 201, owner.text
                yield app, client, owner.json()["id"]


async def table_counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        users = await conn.scalar(select(func.count()).select_from(User))
        posts = await conn.scalar(select(func.count()).select_from(Post))
    return int(users or 0), int(posts or 0)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_hostile_request_is_refused(hostile_api: tuple[FastAPI, httpx.AsyncClient, str], case: Case) -> None:
    app, client, owner = hostile_api
    before = await table_counts(app.state.engine)
    response = await client.request(case.method, case.path.replace("{user}", owner), **case.kwargs)
    after = await table_counts(app.state.engine)
    assert response.status_code in case.expect, (response.status_code, response.text[:500])
    assert response.status_code != 500
    assert len(response.content) < MAX_ANSWER, f"{len(response.content)} bytes answered (input echoed?)"
    assert after == before, f"rows changed from {before} to {after}"


@pytest.mark.parametrize("text", SQL_TEXT)
async def test_sql_looking_text_is_stored_verbatim(
    hostile_api: tuple[FastAPI, httpx.AsyncClient, str], text: str
) -> None:
    app, client, _ = hostile_api
    before = await table_counts(app.state.engine)
    email = f"sql-{uuid.uuid4().hex[:10]}@example.com"
    created = await client.post("/users", json={"email": email, "name": text})
    assert created.status_code == 201, created.text
    post = await client.post(f"/users/{created.json()['id']}/posts", json={"title": text, "body": text})
    assert post.status_code == 201, post.text
    async with app.state.engine.connect() as conn:
        assert await conn.scalar(select(User.name).where(User.email == email)) == text
        assert await conn.scalar(select(Post.body).where(Post.id == uuid.UUID(post.json()["id"]))) == text
    assert await table_counts(app.state.engine) == (before[0] + 1, before[1] + 1)


async def test_cursor_with_sql_in_the_keys_is_only_a_value(hostile_api: tuple[FastAPI, httpx.AsyncClient, str]) -> None:
    """A forged cursor of the right shape is compared as a value: a page, never injected SQL."""
    _, client, _ = hostile_api
    forged = cursor_of(["2000-01-01T00:00:00+00:00", uuid.UUID(int=0).hex])
    page = await client.get("/users", params={"cursor": forged, "limit": 200})
    assert page.status_code == 200
    assert any(item["email"] == "owner@example.com" for item in page.json()["items"])


async def test_still_serving_after_the_barrage(hostile_api: tuple[FastAPI, httpx.AsyncClient, str]) -> None:
    app, client, owner = hostile_api
    # Runs after the parametrized cases (file order); it repeats the whole barrage once more too.
    statuses = []
    for case in CASES:
        response = await client.request(case.method, case.path.replace("{user}", owner), **case.kwargs)
        statuses.append(response.status_code)
    assert 500 not in statuses
    created = await client.post("/users", json={"email": f"after-{uuid.uuid4().hex[:8]}@example.com", "name": "ok"})
    assert created.status_code == 201, created.text
    assert (await client.get(f"/users/{created.json()['id']}")).status_code == 200
    assert (await client.get("/users", params={"limit": 5})).status_code == 200
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert app.state.engine.pool.checkedout() == 0
    # Nothing but the owner, the SQL-text rows (one post each) and this one was ever stored.
    async with app.state.engine.connect() as conn:
        sql_rows = await conn.scalar(select(func.count()).select_from(User).where(User.email.like("sql-%")))
    assert await table_counts(app.state.engine) == (1 + sql_rows + 1, sql_rows)

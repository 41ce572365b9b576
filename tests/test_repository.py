"""templates/repository.py on every backend (shared ``engine``; each test filters on its own rows)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from templates.base_model import Base, utcnow
from templates.database import create_sessionmaker
from templates.models import Post, Tag, User
from templates.query_counter import count_queries
from templates.repository import InvalidCursor, Repository


@pytest.fixture(scope="module")
async def tables(engine: AsyncEngine) -> AsyncEngine:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all, tables=[User.__table__, Post.__table__, Tag.__table__])
    return engine


@pytest.fixture
async def session(tables: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(tables)() as s:
        yield s


def tag() -> str:
    return uuid.uuid4().hex[:10]


async def test_create_get_update_count(session: AsyncSession) -> None:
    t = tag()
    users = Repository(session, User)
    ada = await users.create(email=f"ada-{t}@example.com", name="Ada")
    assert ada.id is not None  # flushed: defaults applied, row sent
    assert await users.count(User.email.like(f"%{t}%")) == 1
    await users.update(ada, name="Ada L.")
    await session.commit()
    session.expunge_all()
    fetched = await users.get(ada.id)
    assert fetched is not None and fetched.name == "Ada L."
    with pytest.raises(AttributeError, match="no column attribute"):
        await users.update(fetched, nickname="x")
    assert await users.get(uuid.uuid4()) is None


async def test_create_surfaces_integrity_error_at_the_call(session: AsyncSession) -> None:
    email = f"dup-{tag()}@example.com"
    users = Repository(session, User)
    await users.create(email=email, name="one")
    with pytest.raises(IntegrityError):
        await users.create(email=email, name="two")  # flush inside create(), not at a later commit
    await session.rollback()


async def test_soft_delete_hides_from_get_page_count(session: AsyncSession) -> None:
    t = tag()
    users = Repository(session, User)
    keep = await users.create(email=f"keep-{t}@example.com", name="keep")
    gone = await users.create(email=f"gone-{t}@example.com", name="gone")
    await users.soft_delete(gone)
    await session.commit()
    mine = User.email.like(f"%{t}%")
    assert await users.get(gone.id) is None
    assert (await users.get(gone.id, include_deleted=True)) is gone
    assert [u.id for u in (await users.page(where=[mine])).items] == [keep.id]
    assert await users.count(mine) == 1 and await users.count(mine, include_deleted=True) == 2
    with pytest.raises(TypeError, match="deleted_at"):
        await Repository(session, Tag).soft_delete(Tag(name="x"))


async def test_page_counts_one_select_per_loader(tables: AsyncEngine, session: AsyncSession) -> None:
    t = tag()
    users = Repository(session, User)
    for i in range(5):
        user = await users.create(email=f"p{i}-{t}@example.com", name=f"p{i}")
        session.add_all([Post(author_id=user.id, title=f"t{j}") for j in range(i)])
    await session.commit()
    session.expunge_all()
    with count_queries(tables) as queries:
        page = await users.page(where=[User.email.like(f"%{t}%")], options=[selectinload(User.posts)])
    assert sorted(len(u.posts) for u in page.items) == [0, 1, 2, 3, 4]
    assert len(queries.selects()) == 2


@pytest.mark.parametrize("descending", [False, True])
async def test_tied_timestamps_page_exactly_once(session: AsyncSession, descending: bool) -> None:
    """20 rows, four per created_at value, paged 3 at a time (pages split the ties) by the session
    that created them: every row exactly once, in (created_at, id) order."""
    t = tag()
    users = Repository(session, User, descending=descending)
    second = utcnow().replace(microsecond=0) - timedelta(hours=1)
    made = [
        await users.create(
            email=f"c{i:02d}-{t}@example.com",
            name=f"c{i:02d}",
            created_at=second + timedelta(microseconds=37_001 * (i // 4)),
        )
        for i in range(20)
    ]
    await session.commit()
    seen: list[uuid.UUID] = []
    cursor = None
    for _ in range(10):  # 7 pages expected; a cursor that does not advance must not loop forever
        page = await users.page(limit=3, cursor=cursor, where=[User.email.like(f"%{t}%")])
        seen += [u.id for u in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert sorted(seen) == sorted(u.id for u in made) and len(seen) == 20
    by_id = {u.id: u for u in made}
    assert seen == sorted(seen, key=lambda i: (by_id[i].created_at, i), reverse=descending)


@pytest.mark.parametrize("cursor", ["x", "!!!!", "W10", "WyJhIiwiYiJd", "WzEsMl0", "eyJhIjoxfQ", "A" * 600], ids=repr)
async def test_invalid_cursor(session: AsyncSession, cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        await Repository(session, User).page(cursor=cursor)


async def test_limit_bounds(session: AsyncSession) -> None:
    for bad in (0, -1, 201):
        with pytest.raises(ValueError, match="limit"):
            await Repository(session, User).page(limit=bad)


async def test_unique_email_case_depends_on_the_backend(session: AsyncSession) -> None:
    """Why the example lower-cases emails: MySQL/MariaDB's default collation (utf8mb4_general_ci
    here) compares case-insensitively, PostgreSQL and SQLite do not."""
    t = tag()
    users = Repository(session, User)
    await users.create(email=f"Case-{t}@example.com", name="upper")
    if session.bind.dialect.name in ("mysql", "mariadb"):
        with pytest.raises(IntegrityError):
            await users.create(email=f"case-{t}@example.com", name="lower")
        await session.rollback()
    else:
        await users.create(email=f"case-{t}@example.com", name="lower")
        await session.commit()
        assert await users.count(User.email.like(f"%-{t}@example.com")) == 2

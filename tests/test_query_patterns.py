"""examples/query_patterns.py on every backend: exact results, wrong forms fail, statement counts.

The queries aggregate over whole tables (counts per user, NOT EXISTS, org chart), so this module
works in a namespace of its own (``scratch_engine(server_url)``), seeded once with the example's
data; tests that write roll their changes back.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, text, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from examples import query_patterns as qp
from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.models import Post, User
from templates.query_counter import count_queries
from templates.scratch import scratch_engine


@pytest.fixture(scope="module")
async def qp_sessions(server_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with scratch_engine(server_url) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            await qp.seed(session)
        yield sessionmaker


@pytest.fixture
async def session(qp_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with qp_sessions() as s:
        yield s
        await s.rollback()  # nothing a test writes survives it


async def db_order(session: AsyncSession) -> list[Post]:
    """The reference order is the database's own (MariaDB's native UUID sorts unlike Python)."""
    return list((await session.scalars(select(Post).order_by(Post.created_at, Post.id))).all())


async def test_filters_joins_aggregates(session: AsyncSession) -> None:
    assert await qp.titles_by(session, "Grace", qp.T0 + timedelta(hours=2)) == ["g2", "g3"]
    assert await qp.titles_by(session, "Nobody", qp.T0) == []
    assert await qp.post_counts(session) == {
        "Ada": 1, "Grace": 3, "Ken": 2, "Linus": 3, "Guido": 1, "Barbara": 0, "Edsger": 0,
    }  # fmt: skip
    assert await qp.prolific_authors(session, 2) == {"Grace": 3, "Linus": 3, "Ken": 2}
    assert await qp.prolific_authors(session, 4) == {}


async def test_subqueries_and_exists(session: AsyncSession) -> None:
    assert await qp.newest_post_title(session) == "u1"
    last = await qp.last_post_at(session)
    assert last["Grace"] == qp.T0 + timedelta(hours=3) and last["Grace"].tzinfo is not None
    assert last["Barbara"] is None and len(last) == 7
    assert await qp.authors_with_tag(session, "sql") == ["Grace", "Linus"]
    assert await qp.authors_with_tag(session, "python") == ["Grace", "Guido"]  # g1 has both tags: once
    assert await qp.authors_with_tag(session, "rust") == []
    assert await qp.users_without_posts(session) == ["Barbara", "Edsger"]
    # the relationship shortcut renders the same EXISTS
    via_any = select(User.name).where(User.posts.any(Post.title == "g1"))
    assert "EXISTS" in str(via_any)
    assert list(await session.scalars(via_any)) == ["Grace"]


async def test_window_function_in_where_is_rejected(session: AsyncSession) -> None:
    rank = func.row_number().over(partition_by=Post.author_id, order_by=Post.created_at.desc())
    wrong = select(Post).where(rank <= 2)  # WRONG: WHERE is evaluated before window functions
    with pytest.raises(DBAPIError):
        await session.scalars(wrong)
    await session.rollback()
    with pytest.raises(DBAPIError):
        await qp.latest_posts_per_author_wrong(session, 2)
    await session.rollback()  # the session is usable again afterwards
    assert len(await qp.latest_posts_per_author(session, 1)) == 5


@pytest.mark.parametrize("n", [1, 2, 3, 10])
async def test_top_n_per_group_matches_reference(session: AsyncSession, n: int) -> None:
    # reference: every post, in the database's (author, newest first, id) order, cut per author
    every = await session.scalars(select(Post).order_by(Post.author_id, Post.created_at.desc(), Post.id.desc()))
    want: dict[uuid.UUID, list[uuid.UUID]] = {}
    for post in every:
        ids = want.setdefault(post.author_id, [])
        if len(ids) < n:
            ids.append(post.id)
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        got_posts = await qp.latest_posts_per_author(session, n)
    assert len(queries) == 1
    got: dict[uuid.UUID, list[uuid.UUID]] = {}
    for post in got_posts:
        assert isinstance(post, Post)
        got.setdefault(post.author_id, []).append(post.id)
    assert got == want


async def test_ctes(session: AsyncSession) -> None:
    assert await qp.top_authors(session) == [("Grace", 3), ("Linus", 3)]
    assert await qp.org_chart(session, "grace@example.com") == [
        ("Grace", 0), ("Guido", 1), ("Linus", 1), ("Barbara", 2),
    ]  # fmt: skip
    assert await qp.org_chart(session, "barbara@example.com") == [("Barbara", 0)]
    assert await qp.org_chart(session, "nobody@example.com") == []
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        await qp.org_chart(session, "ada@example.com")
    assert len(queries) == 1  # the whole tree in one statement, whatever its depth


@pytest.mark.parametrize("size", [1, 2, 3, 4, 9, 10, 11])
async def test_keyset_pages_cover_everything_once(session: AsyncSession, size: int) -> None:
    want = [p.id for p in await db_order(session)]
    pages = await qp.all_pages(session, size)
    assert [p.id for page in pages for p in page] == want
    assert all(0 < len(page) <= size for page in pages)


async def test_keyset_is_stable_under_inserts_offset_is_not(session: AsyncSession) -> None:
    first, cursor = await qp.posts_page(session, None, 3)
    assert cursor is not None
    offset_stmt = select(Post).order_by(Post.created_at, Post.id).limit(3)
    # a new post sorting before the cursor arrives between the two requests
    ada = (await session.scalars(select(User).where(User.name == "Ada"))).one()
    early = qp.T0 - timedelta(hours=1)
    session.add(Post(author_id=ada.id, title="late arrival", created_at=early, updated_at=early))
    await session.flush()
    second, _ = await qp.posts_page(session, cursor, 3)
    by_offset = list((await session.scalars(offset_stmt.offset(3))).all())
    assert not {p.id for p in first} & {p.id for p in second}
    assert first[-1].id in {p.id for p in by_offset}  # OFFSET shows the last row again


async def test_cursor_on_created_at_alone_loses_tied_rows(session: AsyncSession) -> None:
    want = [p.title for p in await db_order(session)]
    seen: list[str] = []
    after = None
    while page := await qp.posts_page_wrong(session, after, 3):
        seen += [p.title for p in page]
        after = page[-1].created_at
    assert len(seen) < len(want) and set(seen) < set(want)


async def test_tuple_comparison_equals_expanded_form(session: AsyncSession) -> None:
    """Row-value ``>`` and the portable OR form select the same rows on every backend."""
    order = await db_order(session)
    for pivot in order:
        row_value = select(Post.id).where(tuple_(Post.created_at, Post.id) > (pivot.created_at, pivot.id))
        expanded = select(Post.id).where(
            (Post.created_at > pivot.created_at) | ((Post.created_at == pivot.created_at) & (Post.id > pivot.id))
        )
        a = set((await session.scalars(row_value)).all())
        b = set((await session.scalars(expanded)).all())
        assert a == b == {p.id for p in order[order.index(pivot) + 1 :]}


async def test_text_binds_keep_values_out_of_sql(session: AsyncSession) -> None:
    hostile = "nobody@example.com' OR '1'='1"
    with count_queries(session.bind) as queries:  # type: ignore[arg-type]
        assert await qp.user_name_by_email(session, hostile) is None
    assert hostile not in queries.statements[-1] and "OR '1'='1" not in queries.statements[-1]
    assert await qp.user_names_by_email(session, ["ken@example.com", "ada@example.com", hostile]) == ["Ada", "Ken"]
    assert await qp.user_names_by_email(session, []) == []  # an empty expanding IN is valid SQL
    bobby = "Robert'); DROP TABLE users; --"
    session.add(User(email="bobby@example.com", name=bobby))
    await session.flush()
    assert await qp.user_name_by_email(session, "bobby@example.com") == bobby
    assert (await session.execute(text("SELECT COUNT(*) FROM users"))).scalar_one() == 8


async def test_recursive_cte_handles_a_wide_level(session: AsyncSession) -> None:
    ken = (await session.scalars(select(User).where(User.name == "Ken"))).one()
    now = qp.T0
    rows = [
        {"email": f"r{i}@team.example", "name": f"R{i:03d}", "manager_id": ken.id, "created_at": now, "updated_at": now}
        for i in range(150)
    ]
    await session.execute(insert(User), rows)
    chart = await qp.org_chart(session, "ken@example.com")
    assert chart[0] == ("Ken", 0) and len(chart) == 151
    assert sorted(name for name, depth in chart if depth == 1) == [f"R{i:03d}" for i in range(150)]

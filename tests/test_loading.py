"""Statement counts of the loader patterns in examples/loading_strategies.py, on every backend.

The counts are the claims of references/loading.md: if a loader option is swapped for lazy
loading (or dropped), a count here changes or the access raises, and the test fails.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import load_only, raiseload, selectinload

from examples.loading_strategies import (
    LsEvent,
    LsProject,
    add_events,
    bulk_add_events,
    count_events,
    joined_collection_without_unique,
    latest_events,
    load_posts_later,
    post_titles,
    posts_with_author,
    projects_raiseload,
    prune_events,
    raises_missing_greenlet,
    seed,
    seed_projects,
    sent,
    task_counts_awaitable,
    task_counts_selectin,
    users_with_matching_posts,
    users_with_posts,
    users_with_posts_and_tags,
    users_with_posts_joined,
    users_with_posts_matching,
)
from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.models import Post, User
from templates.query_counter import count_queries

USERS = 12
POSTS_PER_USER = 2
PROJECTS = 5


@pytest.fixture(scope="module")
async def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    return create_sessionmaker(engine)


@pytest.fixture(scope="module")
async def user_ids(sessionmaker: async_sessionmaker[AsyncSession]) -> list[uuid.UUID]:
    """USERS users with POSTS_PER_USER posts each, under a marker no other test uses."""
    async with sessionmaker() as session, session.begin():
        return await seed(session, f"tl{uuid.uuid4().hex[:8]}", users=USERS, posts_per_user=POSTS_PER_USER)


@pytest.fixture(scope="module")
async def project_ids(sessionmaker: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessionmaker() as session, session.begin():
        return await seed_projects(session, f"tl{uuid.uuid4().hex[:8]}", projects=PROJECTS, tasks=3)


@pytest.fixture
async def session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


async def test_lazy_raise_refuses_without_sql(engine: AsyncEngine, session: AsyncSession, user_ids: list) -> None:
    user = await session.get(User, user_ids[0])
    assert user is not None
    with count_queries(engine) as queries:
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            _ = user.posts
    assert queries.statements == []


async def test_awaitable_attrs_does_not_bypass_lazy_raise(
    engine: AsyncEngine, session: AsyncSession, user_ids: list
) -> None:
    user = await session.get(User, user_ids[0])
    assert user is not None
    with count_queries(engine) as queries:
        with pytest.raises(InvalidRequestError, match="lazy='raise'"):
            await user.awaitable_attrs.posts
    assert queries.statements == []


async def test_refresh_loads_a_lazy_raise_relationship_later(
    engine: AsyncEngine, session: AsyncSession, user_ids: list
) -> None:
    user = await session.get(User, user_ids[0])
    assert user is not None
    with count_queries(engine) as queries:
        posts = await load_posts_later(session, user)
    assert len(sent(queries)) == 2 and len(posts) == POSTS_PER_USER
    assert user.posts is posts  # now loaded: plain attribute access works


@pytest.mark.parametrize("n", [1, USERS])
async def test_selectinload_is_two_statements_for_any_number_of_users(
    engine: AsyncEngine, session: AsyncSession, user_ids: list, n: int
) -> None:
    with count_queries(engine) as queries:
        users = await users_with_posts(session, user_ids[:n])
        per_user = [len(u.posts) for u in users]
    statements = sent(queries)
    assert len(statements) == 2, statements
    assert "FROM posts" in statements[1] and " IN " in statements[1]
    assert per_user == [POSTS_PER_USER] * n


async def test_selectinload_batches_500_parents_per_statement(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """ "Regardless of N" holds up to 500 parents; each further 500 costs one more SELECT."""
    async with sessionmaker() as session, session.begin():
        ids = await seed(session, f"tl{uuid.uuid4().hex[:8]}", users=501, posts_per_user=0)
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            users = await users_with_posts(session, ids)
        assert len(users) == 501 and all(u.posts == [] for u in users)
    assert len(sent(queries)) == 3, [s.splitlines()[0] for s in sent(queries)]


async def test_nested_selectinload_costs_one_statement_per_level(
    engine: AsyncEngine, session: AsyncSession, user_ids: list
) -> None:
    with count_queries(engine) as queries:
        users = await users_with_posts_and_tags(session, user_ids)
        tag_names = [link.tag.name for u in users for p in u.posts for link in p.tag_links]
    assert len(sent(queries)) == 4
    assert len(tag_names) == USERS * POSTS_PER_USER * 2


async def test_joinedload_many_to_one_is_one_statement(
    engine: AsyncEngine, session: AsyncSession, user_ids: list
) -> None:
    with count_queries(engine) as queries:
        posts = await posts_with_author(session, user_ids)
        authors = {p.author.id for p in posts}
    statements = sent(queries)
    assert len(statements) == 1 and "JOIN" in statements[0]
    assert len(posts) == USERS * POSTS_PER_USER and authors == set(user_ids)


async def test_joinedload_collection_needs_unique(engine: AsyncEngine, session: AsyncSession, user_ids: list) -> None:
    with pytest.raises(InvalidRequestError, match=r"unique\(\)"):
        await joined_collection_without_unique(session, user_ids)
    with count_queries(engine) as queries:
        users = await users_with_posts_joined(session, user_ids)
        per_user = [len(u.posts) for u in users]
    assert len(sent(queries)) == 1
    assert len(users) == USERS and per_user == [POSTS_PER_USER] * USERS  # de-duplicated


async def test_contains_eager_fills_a_filtered_collection(
    engine: AsyncEngine, session: AsyncSession, user_ids: list
) -> None:
    with count_queries(engine) as queries:
        users = await users_with_matching_posts(session, user_ids, "async")
        titles = [p.title for u in users for p in u.posts]
    assert len(sent(queries)) == 1
    assert len(users) == USERS and len(titles) == USERS and all(t.startswith("async") for t in titles)


async def test_contains_eager_needs_populate_existing_for_loaded_collections(
    session: AsyncSession, user_ids: list
) -> None:
    loaded = await users_with_posts(session, user_ids)  # strong references keep them in the session
    stale = await users_with_matching_posts(session, user_ids, "async", refresh=False)
    assert [len(u.posts) for u in stale] == [POSTS_PER_USER] * USERS  # filter silently not applied
    fresh = await users_with_matching_posts(session, user_ids, "async", refresh=True)
    assert [len(u.posts) for u in fresh] == [1] * USERS
    assert all(a is b for a, b in zip(loaded, fresh))  # same identity-map objects, overwritten


async def test_relationship_criteria_filter_a_collection_and_keep_empty_parents(
    engine: AsyncEngine, session: AsyncSession, user_ids: list
) -> None:
    with count_queries(engine) as queries:
        users = await users_with_posts_matching(session, user_ids, "of user 0")
    assert len(sent(queries)) == 2
    assert [len(u.posts) for u in users] == [POSTS_PER_USER] + [0] * (USERS - 1)
    joined = await users_with_matching_posts(session, user_ids, "of user 0")
    assert len(joined) == 1  # the inner JOIN drops users without a matching post


async def test_relationship_criteria_also_need_populate_existing(session: AsyncSession, user_ids: list) -> None:
    loaded = await users_with_posts(session, user_ids)  # full collections, referenced
    criteria = selectinload(User.posts.and_(Post.title.contains("async")))
    stmt = select(User).where(User.id.in_(user_ids)).options(criteria).order_by(User.email)
    stale = (await session.scalars(stmt)).all()
    assert [len(u.posts) for u in stale] == [POSTS_PER_USER] * USERS  # criteria silently not applied
    fresh = await users_with_posts_matching(session, user_ids, "async")  # with populate_existing
    assert [len(u.posts) for u in fresh] == [1] * USERS and fresh[0] is loaded[0]


async def test_load_only_with_raiseload_leaves_columns_out(
    engine: AsyncEngine, session: AsyncSession, user_ids: list
) -> None:
    with count_queries(engine) as queries:
        posts = await post_titles(session, user_ids)
        with pytest.raises(InvalidRequestError, match="raise"):
            _ = posts[0].body
    statements = sent(queries)
    assert len(statements) == 1 and "body" not in statements[0]
    assert len(posts) == USERS * POSTS_PER_USER and all(p.title for p in posts)


async def test_deferred_column_without_raiseload_is_missing_greenlet(session: AsyncSession, user_ids: list) -> None:
    stmt = select(Post).where(Post.author_id == user_ids[0]).options(load_only(Post.id, Post.title))
    post = (await session.scalars(stmt)).first()
    assert post is not None
    assert raises_missing_greenlet(lambda: post.body)
    assert await post.awaitable_attrs.body == ""  # explicit load works


async def test_raiseload_star_refuses_lazy_loads(engine: AsyncEngine, session: AsyncSession, project_ids: list) -> None:
    with count_queries(engine) as queries:
        projects = await projects_raiseload(session, project_ids)
    assert len(sent(queries)) == 1 and len(projects) == PROJECTS
    with count_queries(engine) as queries:
        with pytest.raises(InvalidRequestError, match="raise"):
            _ = projects[0].tasks
    assert queries.statements == []


async def test_raiseload_star_keeps_explicit_loaders(
    engine: AsyncEngine, session: AsyncSession, project_ids: list
) -> None:
    stmt = select(LsProject).where(LsProject.id.in_(project_ids)).options(selectinload(LsProject.tasks), raiseload("*"))
    with count_queries(engine) as queries:
        projects = (await session.scalars(stmt)).all()
        sizes = [len(p.tasks) for p in projects]
    assert len(sent(queries)) == 2 and sizes == [3] * PROJECTS


async def test_implicit_lazy_load_raises_missing_greenlet(session: AsyncSession, project_ids: list) -> None:
    project = await session.get(LsProject, project_ids[0])
    assert project is not None
    assert raises_missing_greenlet(lambda: project.tasks)
    assert len(await project.awaitable_attrs.tasks) == 3  # the session survives the failed attempt


async def test_rollback_expires_objects_so_attribute_access_raises(session: AsyncSession, user_ids: list) -> None:
    user = await session.get(User, user_ids[0])
    assert user is not None
    user.name = "renamed"
    await session.flush()
    await session.rollback()  # expires every object in the session, whatever expire_on_commit says
    assert raises_missing_greenlet(lambda: user.name)
    await session.refresh(user)  # reload explicitly (or query again) before touching it
    assert user.name != "renamed"


async def test_awaitable_attrs_in_a_loop_is_n_plus_one(
    engine: AsyncEngine, session: AsyncSession, project_ids: list
) -> None:
    with count_queries(engine) as queries:
        lazy = await task_counts_awaitable(session, project_ids)
    assert len(sent(queries)) == 1 + PROJECTS
    session.expunge_all()
    with count_queries(engine) as queries:
        eager = await task_counts_selectin(session, project_ids)
    assert len(sent(queries)) == 2
    assert lazy == eager and set(eager.values()) == {3}


async def test_write_only_collection_is_never_loaded(
    engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as session, session.begin():
        project = LsProject(name=f"tl{uuid.uuid4().hex[:8]}-wo")
        session.add(project)
        await session.flush()
        with count_queries(engine) as queries:
            await add_events(session, project, ["created", "opened"])
        assert queries.selects() == [] and len(sent(queries)) >= 1
        with count_queries(engine) as queries:
            await bulk_add_events(session, project, ["debug"] * 300)
        assert len(sent(queries)) == 1  # one executemany
        with count_queries(engine) as queries:
            assert [e.kind for e in await latest_events(session, project, limit=2)] == ["debug", "debug"]
            assert await count_events(session, project) == 302
            assert await count_events(session, project, kind="created") == 1
            assert await prune_events(session, project, "debug") == 300
        assert len(sent(queries)) == 4
        project_id = project.id

    async with sessionmaker() as session, session.begin():
        project = await session.get(LsProject, project_id)
        assert project is not None
        with count_queries(engine) as queries:
            await session.delete(project)
            await session.flush()
        statements = sent(queries)
        assert len(statements) == 1 and statements[0].lstrip().upper().startswith("DELETE")  # ON DELETE CASCADE
        left = await session.scalar(select(func.count()).select_from(LsEvent).where(LsEvent.project_id == project_id))
        assert left == 0

"""Relationship loading in async SQLAlchemy: which loader to use, and how many statements it costs.

Shows nine topics, each with its SQL statement count asserted (``templates.query_counter.count_queries``);
the function that shows it is named after the arrow:

1. ``lazy="raise"`` (the default of templates/models.py): an unloaded relationship raises, 0 SQL
   -> ``demo`` (first block);
2. ``selectinload`` for collections: 1 + 1 statements however many parents (up to 500 per batch)
   -> ``users_with_posts``, ``users_with_posts_and_tags`` (chained);
3. ``joinedload`` for many-to-one: 1 statement -> ``posts_with_author``; on a collection it needs
   ``.unique()`` -> ``users_with_posts_joined`` / ``joined_collection_without_unique``;
4. filtered collections: ``contains_eager`` on your own JOIN -> ``users_with_matching_posts``, or
   ``selectinload(rel.and_(...))`` -> ``users_with_posts_matching`` (and why both need
   ``populate_existing``);
5. loading one relationship later: ``session.refresh(obj, ["rel"])`` -> ``load_posts_later``;
6. ``raiseload("*")`` as a query option, for models whose relationships still lazy-load
   -> ``projects_raiseload``, and ``load_only(..., raiseload=True)`` for columns -> ``post_titles``;
7. ``MissingGreenlet``: what an implicit lazy load does in async code -> ``raises_missing_greenlet``;
8. ``AsyncAttrs.awaitable_attrs``: an explicit lazy load (one statement per object: N+1 in a loop)
   -> ``task_counts_awaitable`` against ``task_counts_selectin``;
9. write-only collections (``WriteOnlyMapped``) for collections too large to load -> ``add_events``,
   ``bulk_add_events``, ``latest_events``, ``count_events``, ``prune_events``.

Use when: choosing loader options for async queries, fixing ``MissingGreenlet`` or an N+1.
Run: ``python examples/loading_strategies.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.exc import InvalidRequestError, MissingGreenlet, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import (
    Mapped,
    WriteOnlyMapped,
    contains_eager,
    joinedload,
    load_only,
    mapped_column,
    raiseload,
    relationship,
    selectinload,
)

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.models import Post, PostTag, Tag, User
from templates.query_counter import QueryLog, count_queries
from templates.scratch import scratch_engine

# --- Models of this example only (ls_ prefix) ----------------------------------------------


class LsProject(Base):
    __tablename__ = "ls_projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)

    # Default lazy loading (lazy="select"), as in many existing code bases: touching it unloaded
    # in async code raises MissingGreenlet. passive_deletes: the database's ON DELETE CASCADE
    # removes the children, the ORM does not load them first.
    tasks: Mapped[list[LsTask]] = relationship(
        back_populates="project", cascade="all, delete-orphan", passive_deletes=True, order_by="LsTask.id"
    )
    # Write-only: never loaded as a whole. Append without loading, read with explicit SELECTs.
    # No order_by here: it would be baked into every events.select(), COUNT(*) included.
    events: WriteOnlyMapped[LsEvent] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class LsTask(Base):
    __tablename__ = "ls_tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("ls_projects.id", ondelete="CASCADE"), index=True)
    title: Mapped[str] = mapped_column(String(100))

    project: Mapped[LsProject] = relationship(back_populates="tasks")


class LsEvent(Base):
    __tablename__ = "ls_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("ls_projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))


# --- Counting helper -----------------------------------------------------------------------


def sent(queries: QueryLog) -> list[str]:
    """The statements a pattern sent, without the ``BEGIN`` that the template's SQLite setup
    emits at the start of each transaction (server backends begin implicitly, without SQL)."""
    return [s for s in queries.statements if s.strip().upper() != "BEGIN"]


def expect(queries: QueryLog, count: int, what: str) -> None:
    statements = sent(queries)
    if len(statements) != count:
        listing = "\n".join(f"  {s.splitlines()[0][:100]}" for s in statements)
        raise AssertionError(f"{what}: expected {count} statement(s), got {len(statements)}:\n{listing}")


# --- Seed data -----------------------------------------------------------------------------


async def seed(session: AsyncSession, marker: str, users: int = 4, posts_per_user: int = 2) -> list[uuid.UUID]:
    """``users`` users (emails ``<marker>-<i>@example.com``), each with posts tagged "sql"/"async".

    Returns the user ids in email order. ``marker`` keeps runs apart in a shared database.
    """
    tags = [Tag(name=f"{marker}-sql"), Tag(name=f"{marker}-async")]
    people = []
    for i in range(users):
        user = User(email=f"{marker}-{i}@example.com", name=f"user {i}")
        for j in range(posts_per_user):
            post = Post(title=f"{'async' if j % 2 else 'sync'} post {j} of user {i}")
            post.tag_links = [PostTag(tag=tag, position=k) for k, tag in enumerate(tags)]
            user.posts.append(post)  # new object: its collection is empty, nothing to load
        people.append(user)
    session.add_all(people)
    await session.flush()
    return [u.id for u in people]


async def seed_projects(session: AsyncSession, marker: str, projects: int = 3, tasks: int = 2) -> list[int]:
    rows = [LsProject(name=f"{marker}-p{i}") for i in range(projects)]
    for project in rows:
        project.tasks = [LsTask(title=f"task {k}") for k in range(tasks)]
    session.add_all(rows)
    await session.flush()
    return [p.id for p in rows]


# --- The patterns --------------------------------------------------------------------------


async def users_with_posts(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[User]:
    """Collections: selectinload -> 1 SELECT for the users + 1 SELECT ... WHERE author_id IN (...)."""
    stmt = select(User).where(User.id.in_(ids)).options(selectinload(User.posts)).order_by(User.email)
    return list((await session.scalars(stmt)).all())


async def load_posts_later(session: AsyncSession, user: User) -> list[Post]:
    """A user loaded without posts: refresh() loads the named relationship even if it is
    lazy="raise" (awaitable_attrs would raise). 2 statements: the user row, then the posts."""
    await session.refresh(user, attribute_names=["posts"])
    return user.posts


async def users_with_posts_and_tags(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[User]:
    """One extra SELECT per relationship level: users, posts, post_tags, tags = 4 statements."""
    stmt = (
        select(User)
        .where(User.id.in_(ids))
        .options(selectinload(User.posts).selectinload(Post.tag_links).selectinload(PostTag.tag))
        .order_by(User.email)
    )
    return list((await session.scalars(stmt)).all())


async def posts_with_author(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[Post]:
    """Many-to-one: joinedload adds a JOIN to the same SELECT -> 1 statement, no .unique() needed."""
    stmt = select(Post).join(Post.author).where(User.id.in_(ids)).options(joinedload(Post.author))
    return list((await session.scalars(stmt.order_by(Post.title))).all())


async def users_with_posts_joined(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[User]:
    """joinedload on a collection: one row per post, so the users must be de-duplicated: .unique()."""
    stmt = select(User).where(User.id.in_(ids)).options(joinedload(User.posts)).order_by(User.email)
    return list((await session.scalars(stmt)).unique().all())


async def joined_collection_without_unique(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[User]:
    """Wrong: SQLAlchemy 2.x refuses to return joined-eager collection rows without .unique()."""
    stmt = select(User).where(User.id.in_(ids)).options(joinedload(User.posts))
    return list((await session.scalars(stmt)).all())  # raises InvalidRequestError


async def users_with_matching_posts(
    session: AsyncSession, ids: Sequence[uuid.UUID], word: str, *, refresh: bool = True
) -> list[User]:
    """contains_eager: fill User.posts from your own JOIN, keeping only the posts that match.

    The collection then holds a *subset*. ``populate_existing`` overwrites collections of users
    already in the session; without it they keep whatever they held before (``refresh=False``).
    """
    stmt = (
        select(User)
        .join(User.posts)
        .where(User.id.in_(ids), Post.title.contains(word))
        .options(contains_eager(User.posts))
        .order_by(User.email, Post.title)
    )
    if refresh:
        stmt = stmt.execution_options(populate_existing=True)
    return list((await session.scalars(stmt)).unique().all())


async def users_with_posts_matching(session: AsyncSession, ids: Sequence[uuid.UUID], word: str) -> list[User]:
    """Filtered collection without a JOIN: relationship criteria in selectinload, 2 statements.

    Unlike JOIN + contains_eager (an inner join), users with no matching post are still returned,
    with an empty collection. The populate_existing caveat applies here as well.
    """
    stmt = (
        select(User)
        .where(User.id.in_(ids))
        .options(selectinload(User.posts.and_(Post.title.contains(word))))
        .order_by(User.email)
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def post_titles(session: AsyncSession, ids: Sequence[uuid.UUID]) -> list[Post]:
    """Columns too: load_only leaves the other columns out of the SELECT. raiseload=True makes
    touching them raise instead of lazy-loading them (which would be MissingGreenlet)."""
    stmt = (
        select(Post)
        .where(Post.author_id.in_(ids))
        .options(load_only(Post.id, Post.title, raiseload=True))
        .order_by(Post.title)
    )
    return list((await session.scalars(stmt)).all())


async def projects_raiseload(session: AsyncSession, ids: Sequence[int]) -> list[LsProject]:
    """raiseload("*"): every relationship not loaded by an option raises instead of lazy-loading."""
    stmt = select(LsProject).where(LsProject.id.in_(ids)).options(raiseload("*")).order_by(LsProject.id)
    return list((await session.scalars(stmt)).all())


def is_missing_greenlet(exc: BaseException) -> bool:
    """MissingGreenlet arrives bare or wrapped in StatementError (``.orig``), by version and driver."""
    return isinstance(exc, MissingGreenlet) or isinstance(getattr(exc, "orig", None), MissingGreenlet)


def raises_missing_greenlet(touch: Callable[[], object]) -> bool:
    """Run ``touch`` (an attribute access that may need I/O) and report whether it raised
    MissingGreenlet. For demos and tests: real code should never get there."""
    with warnings.catch_warnings():
        # aiosqlite under SQLAlchemy 2.1 also warns that the refused coroutine was never awaited.
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            touch()
        except (MissingGreenlet, StatementError) as exc:
            raised = is_missing_greenlet(exc)
        else:
            raised = False
        gc.collect()  # let the refused coroutine go while the warning is ignored
    return raised


async def task_counts_awaitable(session: AsyncSession, ids: Sequence[int]) -> dict[str, int]:
    """awaitable_attrs: an explicit lazy load. In a loop that is N+1: 1 SELECT + 1 per project."""
    projects = (await session.scalars(select(LsProject).where(LsProject.id.in_(ids)).order_by(LsProject.id))).all()
    return {p.name: len(await p.awaitable_attrs.tasks) for p in projects}


async def task_counts_selectin(session: AsyncSession, ids: Sequence[int]) -> dict[str, int]:
    """The same answer with selectinload: 2 statements for any number of projects."""
    stmt = select(LsProject).where(LsProject.id.in_(ids)).options(selectinload(LsProject.tasks)).order_by(LsProject.id)
    return {p.name: len(p.tasks) for p in (await session.scalars(stmt)).all()}


async def add_events(session: AsyncSession, project: LsProject, kinds: Sequence[str]) -> None:
    """Write-only append: INSERTs at flush, the existing collection is never SELECTed."""
    project.events.add_all(LsEvent(kind=kind) for kind in kinds)
    await session.flush()


async def bulk_add_events(session: AsyncSession, project: LsProject, kinds: Sequence[str]) -> None:
    """Many rows at once: one executemany INSERT, project_id filled in by the collection."""
    await session.execute(project.events.insert(), [{"kind": kind} for kind in kinds])


async def latest_events(session: AsyncSession, project: LsProject, limit: int = 3) -> list[LsEvent]:
    """Read a page: the collection's own SELECT (WHERE project_id = ...) plus ORDER BY / LIMIT."""
    stmt = project.events.select().order_by(LsEvent.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


async def count_events(session: AsyncSession, project: LsProject, kind: str | None = None) -> int:
    """COUNT(*) in the database instead of len() of a loaded list."""
    stmt = project.events.select().with_only_columns(func.count())
    if kind is not None:
        stmt = stmt.where(LsEvent.kind == kind)
    return int(await session.scalar(stmt) or 0)


async def prune_events(session: AsyncSession, project: LsProject, kind: str) -> int:
    """DELETE ... WHERE project_id = ... AND kind = ...: one statement, nothing loaded."""
    result = await session.execute(project.events.delete().where(LsEvent.kind == kind))
    return int(result.rowcount)  # type: ignore[attr-defined]


# --- Demo ----------------------------------------------------------------------------------


async def demo(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessionmaker = create_sessionmaker(engine)
    marker = f"ls{uuid.uuid4().hex[:8]}"
    async with sessionmaker() as session, session.begin():
        ids = await seed(session, marker, users=4, posts_per_user=2)
        project_ids = await seed_projects(session, marker, projects=3, tasks=2)

    # lazy="raise": forgetting a loader option fails loudly, without sending SQL.
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            user = (await session.scalars(select(User).where(User.id == ids[0]))).one()
            try:
                _ = user.posts
            except InvalidRequestError:
                pass
            else:
                raise AssertionError("User.posts is lazy='raise' and should have refused to load")
        expect(queries, 1, "lazy='raise' access")
        with count_queries(engine) as queries:
            posts = await load_posts_later(session, user)
        expect(queries, 2, "refresh(user, ['posts'])")
        assert len(posts) == 2
    print("lazy='raise': unloaded User.posts raised, 1 statement; refresh(user, ['posts']) loads it: 2")

    # selectinload: the count does not depend on how many users come back.
    for subset in (ids[:1], ids):
        async with sessionmaker() as session:
            with count_queries(engine) as queries:
                users = await users_with_posts(session, subset)
                assert [len(u.posts) for u in users] == [2] * len(subset)
            expect(queries, 2, f"selectinload over {len(subset)} users")
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            users = await users_with_posts_and_tags(session, ids)
            names = {link.tag.name for u in users for p in u.posts for link in p.tag_links}
        assert names == {f"{marker}-sql", f"{marker}-async"}, names
        expect(queries, 4, "nested selectinload, 3 levels")
    print(f"selectinload: 2 statements for 1 or {len(ids)} users; 3 nested levels = 4 statements")

    # joinedload: many-to-one in the same statement; collections need .unique().
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            posts = await posts_with_author(session, ids)
            authors = {p.author.email for p in posts}
        expect(queries, 1, "joinedload many-to-one")
        assert len(posts) == 8 and len(authors) == 4
    async with sessionmaker() as session:
        try:
            await joined_collection_without_unique(session, ids)
        except InvalidRequestError as exc:
            assert "unique()" in str(exc), exc
        else:
            raise AssertionError("joinedload on a collection without .unique() should raise")
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            users = await users_with_posts_joined(session, ids)
        expect(queries, 1, "joinedload collection + unique()")
        assert len(users) == 4 and all(len(u.posts) == 2 for u in users)
    print("joinedload: many-to-one 1 statement; collection 1 statement with .unique(), raises without")

    # contains_eager: only the posts that matched the JOIN's filter.
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            users = await users_with_matching_posts(session, ids, "async")
        expect(queries, 1, "contains_eager")
        assert len(users) == 4 and all([p.title.startswith("async") for p in u.posts] == [True] for u in users)
    async with sessionmaker() as session:
        loaded = await users_with_posts(session, ids)  # full collections, held in this session
        assert [len(u.posts) for u in loaded] == [2] * 4
        stale = await users_with_matching_posts(session, ids, "async", refresh=False)
        kept = [len(u.posts) for u in stale]
        fresh = await users_with_matching_posts(session, ids, "async", refresh=True)
        assert kept == [2] * 4 and [len(u.posts) for u in fresh] == [1] * 4, (kept, fresh)
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            joined = await users_with_matching_posts(session, ids, "of user 0")
            criteria = await users_with_posts_matching(session, ids, "of user 0")
        expect(queries, 1 + 2, "contains_eager + selectinload(rel.and_())")
        assert len(joined) == 1 and [len(u.posts) for u in criteria] == [2, 0, 0, 0]
    print(
        "filtered collections: contains_eager 1 statement (needs populate_existing; JOIN drops users"
        " without matches), selectinload(User.posts.and_(...)) 2 statements (keeps them)"
    )

    # Columns: load_only(..., raiseload=True) -- the unloaded column raises instead of lazy-loading.
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            posts = await post_titles(session, ids)
            try:
                _ = posts[0].body
            except InvalidRequestError:
                pass
            else:
                raise AssertionError("Post.body was left out by load_only(raiseload=True) and should raise")
        expect(queries, 1, "load_only")
        if "body" in sent(queries)[0]:
            raise AssertionError("load_only should leave posts.body out of the SELECT")
    print("load_only(Post.id, Post.title, raiseload=True): 1 statement without body; post.body raises")

    # Models that still lazy-load: raiseload("*") per query, or MissingGreenlet on access.
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            projects = await projects_raiseload(session, project_ids)
            try:
                _ = projects[0].tasks
            except InvalidRequestError:
                pass
            else:
                raise AssertionError("raiseload('*') should have refused to load LsProject.tasks")
        expect(queries, 1, "raiseload('*')")
    async with sessionmaker() as session:
        project = await session.get(LsProject, project_ids[0])
        assert project is not None
        if not raises_missing_greenlet(lambda: project.tasks):  # wrong: implicit lazy load
            raise AssertionError("an implicit lazy load in async code should raise MissingGreenlet")
        # The failed attempt sent nothing; the session is still usable:
        assert len(await project.awaitable_attrs.tasks) == 2
    print("raiseload('*'): InvalidRequestError, 1 statement; plain lazy load: MissingGreenlet")

    # awaitable_attrs: correct, but one statement per object.
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            lazy_counts = await task_counts_awaitable(session, project_ids)
        expect(queries, 1 + len(project_ids), "awaitable_attrs in a loop")
    async with sessionmaker() as session:
        with count_queries(engine) as queries:
            eager_counts = await task_counts_selectin(session, project_ids)
        expect(queries, 2, "selectinload instead of awaitable_attrs")
    assert lazy_counts == eager_counts and set(eager_counts.values()) == {2}, (lazy_counts, eager_counts)
    print(f"awaitable_attrs over {len(project_ids)} projects: {1 + len(project_ids)} statements; selectinload: 2")

    # Write-only collection: append, page, count, delete -- never load the whole collection.
    async with sessionmaker() as session, session.begin():
        project = await session.get(LsProject, project_ids[0])
        assert project is not None
        with count_queries(engine) as queries:
            await add_events(session, project, ["created", "opened"])
        if queries.selects():
            raise AssertionError(f"appending to a write-only collection loaded it: {queries.selects()}")
        with count_queries(engine) as queries:
            await bulk_add_events(session, project, ["debug"] * 200 + ["closed"])
        expect(queries, 1, "write-only bulk insert of 201 rows")
        with count_queries(engine) as queries:
            page = await latest_events(session, project)
            total = await count_events(session, project)
            removed = await prune_events(session, project, "debug")
        expect(queries, 3, "write-only page + count + delete")
        assert [e.kind for e in page] == ["closed", "debug", "debug"], [e.kind for e in page]
        assert (total, removed) == (203, 200), (total, removed)
        assert await count_events(session, project) == 3
    async with sessionmaker() as session, session.begin():
        project = await session.get(LsProject, project_ids[0])
        assert project is not None
        with count_queries(engine) as queries:
            await session.delete(project)
            await session.flush()
        expect(queries, 1, "delete parent of write-only collection (passive_deletes)")
        left = await session.scalar(
            select(func.count()).select_from(LsEvent).where(LsEvent.project_id == project_ids[0])
        )
        assert left == 0, left
    print("write-only: append without SELECT; 201-row bulk insert, page, count, delete: 1 statement each")


async def main() -> None:
    async with scratch_engine() as engine:
        print(f"backend: {engine.dialect.name}")
        await demo(engine)
    print("loading_strategies: ok")


if __name__ == "__main__":
    asyncio.run(main())

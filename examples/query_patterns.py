"""Query patterns in SQLAlchemy 2.x ``select()`` that return the same rows on SQLite, PostgreSQL and MariaDB.

Shows: filters and joins (inner, outer with zero counts), GROUP BY ... HAVING, an uncorrelated
and a correlated scalar subquery, EXISTS / NOT EXISTS, top-N per group with ``row_number()``
(computed in a subquery, filtered outside: a window function in WHERE is rejected by every
backend), a plain CTE used twice, a recursive CTE over the ``User.manager`` hierarchy, keyset
pagination on ``(created_at, id)`` that stays correct when timestamps tie, and ``text()`` with
bound parameters (a hostile string stays data; an IN list through an expanding parameter).

Use when: writing reports, feeds, "latest N per X", org charts, infinite scroll, or raw SQL.
Run: ``python examples/query_patterns.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Integer, String, bindparam, func, literal, select, text, tuple_
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.models import Post, PostTag, Tag, User
from templates.scratch import scratch_engine

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)  # whole seconds: a plain DATETIME keeps no fraction


# --- filters, joins, aggregates ---------------------------------------------------------------


async def titles_by(session: AsyncSession, author_name: str, since: datetime) -> list[str]:
    """Inner join through the relationship, two filters, deterministic order."""
    stmt = (
        select(Post.title)
        .join(Post.author)
        .where(User.name == author_name, Post.created_at >= since)
        .order_by(Post.created_at, Post.id)
    )
    return list((await session.scalars(stmt)).all())


async def post_counts(session: AsyncSession) -> dict[str, int]:
    """LEFT OUTER JOIN + GROUP BY: users without posts are counted as 0, not dropped."""
    stmt = (
        select(User.name, func.count(Post.id).label("n"))  # count(Post.id), not count(*): NULLs -> 0
        .outerjoin(Post, Post.author_id == User.id)
        .group_by(User.id, User.name)
    )
    return {name: n for name, n in (await session.execute(stmt)).all()}


async def prolific_authors(session: AsyncSession, min_posts: int) -> dict[str, int]:
    """HAVING filters groups (after aggregation); WHERE filters rows (before)."""
    n = func.count(Post.id)
    stmt = (
        select(User.name, n).join(Post, Post.author_id == User.id).group_by(User.id, User.name).having(n >= min_posts)
    )
    return {name: count for name, count in (await session.execute(stmt)).all()}


# --- subqueries and EXISTS --------------------------------------------------------------------


async def newest_post_title(session: AsyncSession) -> str:
    """Uncorrelated scalar subquery: computed once, compared like a value."""
    newest = select(func.max(Post.created_at)).scalar_subquery()
    return (await session.scalars(select(Post.title).where(Post.created_at == newest))).one()


async def last_post_at(session: AsyncSession) -> dict[str, datetime | None]:
    """Correlated scalar subquery as a column: one value per outer row (NULL when none)."""
    latest = select(func.max(Post.created_at)).where(Post.author_id == User.id).correlate(User).scalar_subquery()
    rows = await session.execute(select(User.name, latest.label("last_post_at")))
    return {name: at for name, at in rows.all()}


async def authors_with_tag(session: AsyncSession, tag: str) -> list[str]:
    """EXISTS: each user once, however many matching posts (a JOIN would repeat them)."""
    tagged = (
        select(Post.id)
        .join(PostTag, PostTag.post_id == Post.id)
        .join(Tag, Tag.id == PostTag.tag_id)
        .where(Post.author_id == User.id, Tag.name == tag)
    )
    return list((await session.scalars(select(User.name).where(tagged.exists()).order_by(User.name))).all())


async def users_without_posts(session: AsyncSession) -> list[str]:
    """NOT EXISTS (``~``): safe with NULLs, unlike ``NOT IN (subquery)``."""
    has_post = select(Post.id).where(Post.author_id == User.id).exists()
    return list((await session.scalars(select(User.name).where(~has_post).order_by(User.name))).all())


# --- top-N per group --------------------------------------------------------------------------


def rank_in_author():  # type: ignore[no-untyped-def]
    """Newest first within each author; ``id`` breaks ties so the ranking is deterministic."""
    return func.row_number().over(partition_by=Post.author_id, order_by=(Post.created_at.desc(), Post.id.desc()))


async def latest_posts_per_author_wrong(session: AsyncSession, n: int) -> list[Post]:
    """WRONG: window functions are evaluated after WHERE; every backend rejects this."""
    return list((await session.scalars(select(Post).where(rank_in_author() <= n))).all())


async def latest_posts_per_author(session: AsyncSession, n: int) -> list[Post]:
    """RIGHT: rank in a subquery, filter the rank outside; ``aliased`` maps the rows back to Post."""
    ranked = select(Post, rank_in_author().label("rn")).subquery()
    latest = aliased(Post, ranked)
    stmt = select(latest).where(ranked.c.rn <= n).order_by(latest.author_id, ranked.c.rn)
    return list((await session.scalars(stmt)).all())


# --- CTEs -------------------------------------------------------------------------------------


async def top_authors(session: AsyncSession) -> list[tuple[str, int]]:
    """A CTE is a named subquery; here it is read twice (join + max) without repeating it."""
    counts = select(Post.author_id, func.count(Post.id).label("n")).group_by(Post.author_id).cte("post_counts")
    stmt = (
        select(User.name, counts.c.n)
        .join(counts, counts.c.author_id == User.id)
        .where(counts.c.n == select(func.max(counts.c.n)).scalar_subquery())
        .order_by(User.name)
    )
    return [(name, n) for name, n in (await session.execute(stmt)).all()]


async def org_chart(session: AsyncSession, root_email: str) -> list[tuple[str, int]]:
    """Recursive CTE: everyone under ``root_email`` (transitively) with their depth."""
    anchor = select(User.id, User.name, literal(0, Integer).label("depth")).where(User.email == root_email)
    tree = anchor.cte("org_tree", recursive=True)
    step = select(User.id, User.name, tree.c.depth + 1).join(tree, User.manager_id == tree.c.id)
    tree = tree.union_all(step)
    rows = await session.execute(select(tree.c.name, tree.c.depth).order_by(tree.c.depth, tree.c.name))
    return [(name, depth) for name, depth in rows.all()]


# --- keyset pagination ------------------------------------------------------------------------

Cursor = tuple[datetime, uuid.UUID]


async def posts_page(session: AsyncSession, after: Cursor | None, size: int) -> tuple[list[Post], Cursor | None]:
    """One page ordered by (created_at, id); pass the returned cursor to get the next page.

    The order is total (id is unique), and the row-value comparison continues exactly after the
    last row seen, so ties on created_at are neither skipped nor repeated, and inserts between
    requests do not shift pages the way OFFSET does.
    """
    stmt = select(Post).order_by(Post.created_at, Post.id).limit(size)
    if after is not None:
        stmt = stmt.where(tuple_(Post.created_at, Post.id) > after)
    page = list((await session.scalars(stmt)).all())
    cursor = (page[-1].created_at, page[-1].id) if len(page) == size else None
    return page, cursor


async def posts_page_wrong(session: AsyncSession, after: datetime | None, size: int) -> list[Post]:
    """WRONG: a cursor on created_at alone skips rows that tie with the last row of a page."""
    stmt = select(Post).order_by(Post.created_at, Post.id).limit(size)
    if after is not None:
        stmt = stmt.where(Post.created_at > after)
    return list((await session.scalars(stmt)).all())


async def all_pages(session: AsyncSession, size: int) -> list[list[Post]]:
    pages, cursor = [], None
    while True:
        page, cursor = await posts_page(session, cursor, size)
        if page:
            pages.append(page)
        if cursor is None:
            return pages


# --- raw SQL with text() ----------------------------------------------------------------------


async def user_names_by_email(session: AsyncSession, emails: Sequence[str]) -> list[str]:
    """``text()`` with bound parameters only; an expanding parameter renders ``IN (...)``.

    Give it a type: an empty list renders an empty-set subquery cast to that type; untyped, the
    cast is INTEGER and PostgreSQL rejects ``varchar = integer``.
    """
    stmt = text("SELECT name FROM users WHERE email IN :emails ORDER BY name").bindparams(
        bindparam("emails", expanding=True, type_=String)
    )
    return list((await session.scalars(stmt, {"emails": list(emails)})).all())


async def user_name_by_email(session: AsyncSession, email: str) -> str | None:
    """Never build SQL with f-strings / ``%``: the value travels separately from the statement."""
    result = await session.execute(text("SELECT name FROM users WHERE email = :email"), {"email": email})
    return result.scalar_one_or_none()


# --- demo data and checks ---------------------------------------------------------------------


async def seed(session: AsyncSession) -> dict[str, User]:
    """Org: Ada > (Grace > (Linus, Guido > Barbara), Ken); Edsger alone. Posts with tied timestamps."""
    ada = User(email="ada@example.com", name="Ada")
    grace = User(email="grace@example.com", name="Grace", manager=ada)
    ken = User(email="ken@example.com", name="Ken", manager=ada)
    linus = User(email="linus@example.com", name="Linus", manager=grace)
    guido = User(email="guido@example.com", name="Guido", manager=grace)
    barbara = User(email="barbara@example.com", name="Barbara", manager=guido)
    edsger = User(email="edsger@example.com", name="Edsger")
    users = [ada, grace, ken, linus, guido, barbara, edsger]
    session.add_all(users)
    h = timedelta(hours=1)
    sql, python = Tag(name="sql"), Tag(name="python")
    tags = {"g1": [sql, python], "l3": [sql], "u1": [python]}
    for author, title, at in [
        (ada, "a1", T0),
        (grace, "g1", T0 + h), (grace, "g2", T0 + 2 * h), (grace, "g3", T0 + 3 * h),
        (linus, "l1", T0 + 2 * h), (linus, "l2", T0 + 2 * h), (linus, "l3", T0 + h),
        (guido, "u1", T0 + 5 * h),
        (ken, "k1", T0 + 2 * h), (ken, "k2", T0 + 4 * h),
    ]:  # fmt: skip
        post = Post(author=author, title=title, created_at=at, updated_at=at)
        post.tag_links = [PostTag(tag=tag, position=i) for i, tag in enumerate(tags.get(title, []))]
        session.add(post)
    await session.flush()
    return {u.name: u for u in users}


def check(label: str, got: object, want: object) -> None:
    if got != want:
        raise AssertionError(f"{label}: got {got!r}, want {want!r}")


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            await seed(session)
        print(f"seeded 7 users and 10 posts on {engine.dialect.name}")

        async with sessionmaker() as session:
            check("join+filter", await titles_by(session, "Grace", T0 + timedelta(hours=2)), ["g2", "g3"])
            counts = await post_counts(session)
            want_counts = {"Ada": 1, "Grace": 3, "Ken": 2, "Linus": 3, "Guido": 1, "Barbara": 0, "Edsger": 0}
            check("outer join", counts, want_counts)
            check("having", await prolific_authors(session, 2), {"Grace": 3, "Linus": 3, "Ken": 2})
            print(f"outer join counts zeros: {counts}; HAVING >= 2 keeps Grace, Linus, Ken")

            check("scalar subquery", await newest_post_title(session), "u1")
            last = await last_post_at(session)
            check("correlated", (last["Ken"], last["Edsger"]), (T0 + timedelta(hours=4), None))
            check("exists", await authors_with_tag(session, "sql"), ["Grace", "Linus"])
            check("not exists", await users_without_posts(session), ["Barbara", "Edsger"])
            print("scalar/correlated subqueries, EXISTS and NOT EXISTS: ok")

            try:
                await latest_posts_per_author_wrong(session, 2)
            except DBAPIError as exc:
                print(f"row_number() in WHERE is rejected: {type(exc.orig).__name__}")
                await session.rollback()
            else:
                raise AssertionError("a window function in WHERE should have failed")
            latest = await latest_posts_per_author(session, 2)
            by_author: dict[str, set[str]] = {}
            names = {u.id: u.name for u in (await session.scalars(select(User))).all()}
            for post in latest:
                by_author.setdefault(names[post.author_id], set()).add(post.title)
            want_top2 = {
                "Ada": {"a1"},
                "Grace": {"g2", "g3"},
                "Linus": {"l1", "l2"},
                "Guido": {"u1"},
                "Ken": {"k1", "k2"},
            }
            check("top-2 per author", by_author, want_top2)
            print(f"top-2 per author via subquery: {dict(sorted((k, sorted(v)) for k, v in by_author.items()))}")

            check("cte", await top_authors(session), [("Grace", 3), ("Linus", 3)])
            chart = await org_chart(session, "ada@example.com")
            want_chart = [("Ada", 0), ("Grace", 1), ("Ken", 1), ("Guido", 2), ("Linus", 2), ("Barbara", 3)]
            check("recursive cte", chart, want_chart)
            print(f"recursive CTE under Ada: {chart}")

            # The database's ORDER BY is the reference, not Python's: a plain Uuid column is
            # MariaDB's native UUID under SQLAlchemy 2.1, which does not sort like uuid.UUID.
            want_order = list((await session.scalars(select(Post.title).order_by(Post.created_at, Post.id))).all())
            pages = await all_pages(session, 3)
            check("keyset pages", [p.title for page in pages for p in page], want_order)
            naive, after = [], None
            while page := await posts_page_wrong(session, after, 3):
                naive += [p.title for p in page]
                after = page[-1].created_at
            if len(naive) >= len(want_order):
                raise AssertionError("expected the created_at-only cursor to lose tied rows")
            print(
                f"keyset (created_at, id): {len(pages)} pages, all {len(want_order)} posts once; "
                f"created_at-only cursor lost {len(want_order) - len(naive)} tied posts"
            )

            hostile = "nobody@example.com' OR '1'='1"
            check("text() hostile", await user_name_by_email(session, hostile), None)
            check(
                "text() expanding IN",
                await user_names_by_email(session, ["ken@example.com", "ada@example.com"]),
                ["Ada", "Ken"],
            )
            bobby = "Robert'); DROP TABLE users; --"
            session.add(User(email="bobby@example.com", name=bobby))
            await session.flush()
            check("text() round trip", await user_name_by_email(session, "bobby@example.com"), bobby)
            print("text(): hostile strings stay data; expanding IN binds a list")
    print("query_patterns: ok")


if __name__ == "__main__":
    asyncio.run(main())

# DELIBERATELY WRONG example for the optimize-queries checker's tests: never copy this code.
"""Static regression cases for unbounded_list_query (read, never run): .all() over IN (<ids>),
a DISTINCT of a few values, and paginated endpoints are bounded; a whole-table list is not."""
# expect-static: unbounded_list_query

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Post, Template

router = APIRouter()


@router.get("/posts/by-ids")
async def posts_by_ids(session: AsyncSession, ids: list[int] = Query()) -> list[Post]:
    return list((await session.scalars(select(Post).where(Post.id.in_(ids)))).all())


@router.get("/templates/names")
async def template_names(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(Template.name).distinct())).all())


@router.get("/posts")
async def list_posts(session: AsyncSession, limit: int = Query(50, le=200), after: int = 0) -> list[Post]:
    stmt = select(Post).where(Post.id > after).order_by(Post.id).limit(limit)
    return list((await session.scalars(stmt)).all())


@router.get("/posts/everything")
async def all_posts(session: AsyncSession) -> list[Post]:
    result = await session.scalars(select(Post).order_by(Post.id))
    return list(result.all())  # static: unbounded_list_query


@router.get("/settings")
async def settings(session: AsyncSession) -> list[str]:
    flags = {"a": 1}
    return [k for k in flags if all(flags.values())]

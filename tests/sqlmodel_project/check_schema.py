"""Writes and reads through the models on a migrated schema (no create_all): UUID keys, aware
datetimes with microseconds, AutoString columns and the relationship all work on DATABASE_URL."""

import asyncio
import os
from datetime import datetime, timedelta, timezone

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Post, User


async def main() -> None:
    engine = create_async_engine(os.environ["DATABASE_URL"])
    sessionmaker = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    stamp = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=2)))
    async with sessionmaker() as session:
        user = User(email="ada@example.com", name="Ada " + "x" * 90, created_at=stamp, posts=[Post(title="Hello")])
        session.add(user)
        await session.commit()
    async with sessionmaker() as session:
        stored = (await session.exec(select(User).options(selectinload(User.posts)))).one()
    assert stored.id == user.id, (stored.id, user.id)
    assert stored.created_at == stamp and stored.created_at.tzinfo is not None, repr(stored.created_at)
    assert stored.created_at.microsecond == 123456, repr(stored.created_at)
    assert stored.name == user.name and [p.title for p in stored.posts] == ["Hello"]
    await engine.dispose()
    print("check_schema: ok")


if __name__ == "__main__":
    asyncio.run(main())

"""A SQLModel report with an N+1: one ``session.exec(select(Post)...)`` per user, inside the loop.

Runs on ``DATABASE_URL`` (tables made here); ``report_eager.py`` is the same report in 2 queries.
"""

import asyncio
import os

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Post, SQLModel, User


async def main() -> None:
    engine = create_async_engine(os.environ["DATABASE_URL"])
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)
    sessionmaker = async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
    async with sessionmaker() as session:
        for i in range(6):
            session.add(User(email=f"u{i}@example.com", name=f"User {i}", posts=[Post(title=f"p{i}-{j}") for j in range(i % 3)]))
        await session.commit()
    async with sessionmaker() as session:
        users = (await session.exec(select(User).order_by(User.email))).all()
        counts = {}
        for user in users:
            posts = (await session.exec(select(Post).where(Post.author_id == user.id))).all()  # runtime: n_plus_one  static: query_in_loop
            counts[user.email] = len(posts)
    assert counts == {f"u{i}@example.com": i % 3 for i in range(6)}, counts
    await engine.dispose()
    print("report_nplus1: ok")


if __name__ == "__main__":
    asyncio.run(main())

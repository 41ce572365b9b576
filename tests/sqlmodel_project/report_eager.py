"""The same SQLModel report as ``report_nplus1.py``, with the posts loaded by ``selectinload``: 2 SELECTs."""

import asyncio
import os

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload
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
        users = (await session.exec(select(User).options(selectinload(User.posts)).order_by(User.email))).all()
        counts = {user.email: len(user.posts) for user in users}
    assert counts == {f"u{i}@example.com": i % 3 for i in range(6)}, counts
    await engine.dispose()
    print("report_eager: ok")


if __name__ == "__main__":
    asyncio.run(main())

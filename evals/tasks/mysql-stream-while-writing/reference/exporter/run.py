"""``python -m exporter.run OUT.csv``: the nightly accounting export on DATABASE_URL."""

from __future__ import annotations

import asyncio
import os
import sys

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from .export import export_pending


async def main(path: str) -> None:
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///shop.db"))
    try:
        with open(path, "w", newline="") as out:
            count = await export_pending(async_sessionmaker(engine, expire_on_commit=False), out)
        print(f"exported {count} orders to {path}")
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

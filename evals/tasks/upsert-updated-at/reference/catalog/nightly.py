"""The nightly job: ``python -m catalog.nightly feed.jsonl`` (one JSON product per line)."""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

from .db import make_engine, make_sessionmaker
from .models import Base
from .sync import sync_products

BATCH = 1000


def read_feed(path: Path) -> list[dict[str, object]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            rows.append({"sku": item["sku"], "name": item["name"], "price": Decimal(str(item["price"])),
                         "description": item.get("description")})
    return rows


async def main(path: Path) -> None:
    engine = make_engine()
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        rows = read_feed(path)
        sessions = make_sessionmaker(engine)
        for start in range(0, len(rows), BATCH):
            async with sessions() as session:
                await sync_products(session, rows[start:start + BATCH])
                await session.commit()
        print(f"synced {len(rows)} products")
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))

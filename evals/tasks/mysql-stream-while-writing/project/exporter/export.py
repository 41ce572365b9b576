"""Export the orders the accounting system has not seen yet, as CSV, and mark them exported."""

from __future__ import annotations

import csv
from typing import TextIO

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .models import Order

BATCH_SIZE = 500


async def export_pending(sessions: async_sessionmaker[AsyncSession], out: TextIO) -> int:
    """Write one CSV line per order with ``exported_at IS NULL`` and set ``exported_at``.

    The table is far too big for memory, so rows are streamed in batches. Returns the number of
    orders exported.
    """
    writer = csv.writer(out)
    exported = 0
    async with sessions() as session:
        result = await session.stream_scalars(
            select(Order)
            .where(Order.exported_at.is_(None))
            .order_by(Order.id)
            .execution_options(yield_per=BATCH_SIZE)
        )
        async for batch in result.partitions():
            for order in batch:
                writer.writerow([order.id, order.customer, order.total, order.payload])
            ids = [order.id for order in batch]
            await session.execute(update(Order).where(Order.id.in_(ids)).values(exported_at=func.now()))
            await session.commit()  # a crash half-way keeps what was written so far marked
            exported += len(batch)
    return exported

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

    The table is far too big for memory, so it is read in keyset batches (``id > last``, ``LIMIT``),
    each batch written and marked in its own short transaction. No result stays open while the
    batch is marked: on aiomysql a second statement on a connection with an unfinished streamed
    result silently ends that result. Returns the number of orders exported.
    """
    writer = csv.writer(out)
    exported = 0
    last_id = 0
    while True:
        async with sessions() as session, session.begin():
            batch = (
                await session.scalars(
                    select(Order)
                    .where(Order.exported_at.is_(None), Order.id > last_id)
                    .order_by(Order.id)
                    .limit(BATCH_SIZE)
                )
            ).all()
            if not batch:
                return exported
            for order in batch:
                writer.writerow([order.id, order.customer, order.total, order.payload])
            ids = [order.id for order in batch]
            await session.execute(update(Order).where(Order.id.in_(ids)).values(exported_at=func.now()))
        last_id = ids[-1]
        exported += len(ids)

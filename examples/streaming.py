"""Stream a large result with the async ORM: memory stays flat while 100,000 rows pass.

Shows ``await session.stream(select(M).execution_options(yield_per=N))`` consumed with
``async for batch in result.scalars().partitions()`` (and row by row with
``async for obj in result.scalars()``), closing the result in ``finally``. Measures peak Python
memory with ``tracemalloc`` for streaming and for loading everything at once, and asserts the
ratio (not a time).

What each piece does (checked on aiosqlite, asyncpg and aiomysql):
- ``session.stream()`` sets ``stream_results=True``: a server-side cursor on asyncpg (inside the
  transaction) and aiomysql (an unbuffered ``SSCursor``); aiosqlite steps the statement as rows
  are fetched. ``session.execute()`` / ``session.scalars()`` buffer the whole result first, and
  refuse ``yield_per`` with ``AsyncMethodRequired``.
- ``yield_per=N``: rows are fetched and turned into objects N at a time; ``partitions()`` hands
  out lists of N. Objects you do not keep are released (the identity map holds them weakly).
- Do not run another query on the same session while a stream is open: on aiomysql that query
  silently ends the stream (only a ``UserWarning``: "Previous unbuffered result was left
  incomplete"). Use a second session, or finish the stream first.

Use when: exports, reports, backfills, anything that reads more rows than fit in memory.
Run: ``python examples/streaming.py`` (DATABASE_URL optional; default embedded SQLite).
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import String, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from templates.base_model import Base
from templates.database import create_sessionmaker
from templates.scratch import scratch_engine

T = TypeVar("T")
# How many rows to stream: 100,000 by default; the test suite runs it with STREAMING_ROWS=20000
# (bounded work on a loaded CI machine; the memory ratio holds at either size).
ROWS = int(os.environ.get("STREAMING_ROWS", "100000"))
BATCH = max(100, min(1_000, ROWS // 100))  # rows per fetch; 1,000 at the default size


class StreamEvent(Base):
    __tablename__ = "stream_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    payload: Mapped[str] = mapped_column(String(100))


async def fill(session: AsyncSession, n: int, chunk: int = 20_000) -> None:
    """Bulk insert in chunks (one executemany each), so the parameter list stays bounded too."""
    for start in range(0, n, chunk):
        rows = [
            {"kind": ("click", "view", "buy")[i % 3], "payload": f"event {i:08d} " + "x" * 40}
            for i in range(start, min(n, start + chunk))
        ]
        await session.execute(insert(StreamEvent), rows)


async def stream_partitions(session: AsyncSession, batch: int) -> AsyncIterator[list[StreamEvent]]:
    """Yield lists of up to ``batch`` objects; only one list is alive at a time.

    Consume it inside ``contextlib.aclosing(...)``: an async generator left by ``break`` is only
    finalized later by the event loop, and until then the cursor stays open on the connection.
    """
    stmt = select(StreamEvent).order_by(StreamEvent.id).execution_options(yield_per=batch)
    result = await session.stream(stmt)
    try:
        async for partition in result.scalars().partitions():
            yield list(partition)
    finally:
        await result.close()  # releases the server-side cursor, also after an early stop


async def export_sizes(session: AsyncSession, batch: int) -> tuple[int, int, list[int]]:
    """Consume the stream in partitions: (rows, total payload length, partition sizes)."""
    rows = total = 0
    sizes: list[int] = []
    async with aclosing(stream_partitions(session, batch)) as partitions:
        async for partition in partitions:
            sizes.append(len(partition))
            rows += len(partition)
            total += sum(len(e.payload) for e in partition)
    return rows, total, sizes


async def payload_chars_of_kind(session: AsyncSession, kind: str, max_id: int, batch: int) -> tuple[int, int]:
    """Row by row with ``async for obj in result.scalars()``; rows still arrive ``batch`` at a time.

    Filter in SQL (WHERE), not in the loop: every streamed row costs a fetch and an object.
    """
    stmt = select(StreamEvent).where(StreamEvent.kind == kind, StreamEvent.id <= max_id)
    stmt = stmt.execution_options(yield_per=batch)
    result = await session.stream(stmt)
    rows = chars = 0
    try:
        async for event in result.scalars():
            rows += 1
            chars += len(event.payload)
    finally:
        await result.close()
    return rows, chars


async def export_sizes_buffered(session: AsyncSession) -> tuple[int, int]:
    """For comparison: everything loaded as objects first (what ``session.scalars`` does)."""
    events = (await session.scalars(select(StreamEvent).order_by(StreamEvent.id))).all()
    return len(events), sum(len(e.payload) for e in events)


async def traced_peak(work: Callable[[], Awaitable[T]]) -> tuple[T, int]:
    """Run ``work()`` and return (its result, peak bytes Python allocated meanwhile)."""
    gc.collect()
    tracemalloc.start()
    try:
        result = await work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


async def main() -> None:
    async with scratch_engine() as engine:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        sessionmaker = create_sessionmaker(engine)
        started = time.perf_counter()
        async with sessionmaker() as session, session.begin():
            await fill(session, ROWS)
        print(f"inserted {ROWS} rows on {engine.dialect.name} in {time.perf_counter() - started:.1f}s")

        async with sessionmaker() as session:
            want_total = await session.scalar(select(func.sum(func.length(StreamEvent.payload))))
            (rows, total, sizes), stream_peak = await traced_peak(lambda: export_sizes(session, BATCH))
        if (rows, total) != (ROWS, want_total):
            raise AssertionError(f"streamed {rows} rows / {total} chars, want {ROWS} / {want_total}")
        if sizes != [BATCH] * (ROWS // BATCH) + ([ROWS % BATCH] if ROWS % BATCH else []):
            raise AssertionError(f"unexpected partition sizes {sorted(set(sizes))}")
        print(f"stream + yield_per={BATCH}: {rows} rows in {len(sizes)} partitions, peak {stream_peak / 2**20:.1f} MiB")

        async with sessionmaker() as session:
            (rows, total), all_peak = await traced_peak(lambda: export_sizes_buffered(session))
        if (rows, total) != (ROWS, want_total):
            raise AssertionError(f"buffered read gave {rows} rows / {total} chars")
        ratio = all_peak / stream_peak
        print(f"session.scalars(...).all(): peak {all_peak / 2**20:.1f} MiB ({ratio:.0f}x the streaming peak)")
        if ratio < 10:
            raise AssertionError(f"streaming should use far less memory; ratio only {ratio:.1f}")

        async with sessionmaker() as session:
            got = await payload_chars_of_kind(session, "buy", 30_000, BATCH)
            want = (
                await session.execute(
                    select(func.count(), func.sum(func.length(StreamEvent.payload))).where(
                        StreamEvent.kind == "buy", StreamEvent.id <= 30_000
                    )
                )
            ).one()
        if got != tuple(want):
            raise AssertionError(f"row-by-row stream gave {got}, SQL says {tuple(want)}")
        print(f"async for over result.scalars(): {got[0]} 'buy' rows, matches COUNT/SUM in SQL")
    print("streaming: ok")


if __name__ == "__main__":
    asyncio.run(main())

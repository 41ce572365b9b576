"""Count the SQL statements an engine sends, to assert "this endpoint runs at most 3 queries".

    with count_queries(engine) as queries:  # a plain (sync) context manager, also in async code
        await session.scalars(select(User).options(selectinload(User.posts)))
    assert len(queries.selects()) == 2

Works for async engines (the listener goes on ``engine.sync_engine``). Only statements sent while
the block is open are recorded; ``queries.statements`` holds their SQL text. On SQLite the
template's begin hook sends an explicit ``BEGIN``, which is counted when the block opens a
transaction: compare ``len(queries.selects())`` or start the transaction before the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine


@dataclass
class QueryLog:
    statements: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.statements)

    def selects(self) -> list[str]:
        return [s for s in self.statements if s.lstrip().upper().startswith(("SELECT", "WITH"))]


@contextmanager
def count_queries(engine: AsyncEngine | Engine) -> Iterator[QueryLog]:
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    log = QueryLog()

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        log.statements.append(statement)

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield log
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)

"""Run a unit of work again when the database aborted it for a concurrent one.

Copy beside ``database.py`` and ``db_errors.py``. ``run_in_transaction(sessionmaker, fn)`` runs
``await fn(session)`` in a new session and transaction, commits, and retries (full-jitter
exponential backoff) on serialization failures, deadlocks, lock wait timeouts and SQLite busy
(``db_errors.is_retryable``). In a FastAPI app call it inside the endpoint: a conflict at the
request session's final commit is a 500 and a lost write.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .db_errors import db_error_codes, is_retryable

log = logging.getLogger(__name__)

T = TypeVar("T")


async def run_in_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
    fn: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = 5,
    backoff: float = 0.05,
    max_backoff: float = 2.0,
    isolation_level: str | None = None,
    sqlite_immediate: bool = True,
    retry_if: Callable[[BaseException], bool] = is_retryable,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
) -> T:
    """Run ``await fn(session)`` in a new session and transaction; commit; return its result.

    When the transaction fails with an error ``retry_if`` accepts (default ``is_retryable``:
    serialization failure, deadlock, SQLite busy), it is rolled back and ``fn`` runs again in a
    *new* session after ``uniform(0, min(max_backoff, backoff * 2**(n-1)))`` seconds ("full
    jitter"), up to ``attempts`` runs in total; then the last error is raised. Other errors
    propagate at once.

    ``fn`` must do all its work through ``session`` and must not commit: the helper commits, and
    the commit (where PostgreSQL may report 40001) is inside the retried block. Keep side
    effects outside the database (e-mails, HTTP calls) out of ``fn``; it may run several times.
    ``isolation_level`` (e.g. ``"SERIALIZABLE"``) applies to this transaction only.
    ``sqlite_immediate``: on an engine from ``database.create_db_engine``, SQLite
    starts with BEGIN IMMEDIATE (write lock first: concurrent writers wait up to busy_timeout
    instead of failing with "database is locked" when they upgrade a read). Ignored elsewhere.
    ``on_retry(attempt, error, delay)`` is called before each sleep (metrics, logging).
    """
    if attempts < 1:
        raise ValueError(f"attempts must be >= 1, got {attempts}")
    if backoff < 0 or max_backoff < 0:
        raise ValueError("backoff and max_backoff must be >= 0")
    attempt = 1
    while True:
        try:
            async with sessionmaker() as session, session.begin():
                # Options for this transaction only, given on the first use of its connection
                # (before BEGIN); the pool resets the isolation level when the connection returns.
                options: dict[str, str] = {"sqlite_begin": "IMMEDIATE"} if sqlite_immediate else {}
                if isolation_level is not None:
                    options["isolation_level"] = isolation_level
                if options:
                    await session.connection(execution_options=options)
                return await fn(session)
        except Exception as exc:
            if attempt >= attempts or not retry_if(exc):
                raise
            delay = random.uniform(0, min(max_backoff, backoff * 2 ** (attempt - 1)))
            log.info("attempt %d/%d failed with %s; retrying in %.3fs", attempt, attempts, db_error_codes(exc), delay)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await asyncio.sleep(delay)
            attempt += 1

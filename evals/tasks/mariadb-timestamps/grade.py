"""Grader: event timestamps round-trip exactly (instant, microseconds, time zone), also through Alembic.

``python grade.py SOLUTION_DIR [--backend sqlite|postgresql|mysql]``. On one scratch database the
schema comes from ``alembic upgrade head`` (as on deploy) and ``eventlog.main:app`` is served with
uvicorn; on a second one the database is first at the initial revision 0001 with rows written by
the old version, then upgraded. Finally ``alembic check`` must find the models and the migrated
schema in agreement.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import gradelib  # noqa: E402

from sqlalchemy import text  # noqa: E402
from sqlalchemy.ext.asyncio import create_async_engine  # noqa: E402

API_CHECKS = ["returns_aware_datetimes", "keeps_instant_across_offsets", "keeps_microseconds",
              "orders_within_a_second", "since_filter"]
CHECKS = ["upgrade_from_empty", *API_CHECKS, "alembic_check_clean", "upgrade_existing_database"]
BERLIN = timezone(timedelta(hours=2))
KOLKATA = timezone(timedelta(hours=5, minutes=30))
BASE = datetime(2024, 5, 1, 12, 0, 0, tzinfo=BERLIN)  # 10:00:00 UTC
LEGACY = "2023-03-04 05:06:07"  # what the old version stored (UTC wall time, whole seconds)


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def run(solution: Path, backend: str, report: gradelib.Report) -> None:
    async with gradelib.scratch_database(backend) as url:
        code, out = await gradelib.alembic(solution, url, "upgrade", "head")
        if report.check("upgrade_from_empty", code == 0,
                        f"alembic upgrade head on an empty database failed: {gradelib.tail(out)}"):
            os.environ["DATABASE_URL"] = url
            app = gradelib.load(solution, "eventlog.main:app")
            async with gradelib.served(app) as base, gradelib.http_client(base) as client:
                await api_checks(client, report)
            code, out = await gradelib.alembic(solution, url, "check")
            report.check("alembic_check_clean", code == 0, f"alembic check after upgrade head: {gradelib.tail(out)}")
        else:
            report.fail_rest("not run: upgrade head failed", [*API_CHECKS, "alembic_check_clean"])
    async with gradelib.scratch_database(backend) as url:
        await existing_database(solution, url, backend, report)


async def api_checks(client: Any, report: gradelib.Report) -> None:
    # Five events inside one second, sent out of order, in two different offsets.
    offsets = [BASE + timedelta(microseconds=us) for us in (500_001, 123_456, 999_999, 7, 250_000)]
    sent = [offsets[0], offsets[1].astimezone(KOLKATA), offsets[2], offsets[3].astimezone(timezone.utc), offsets[4]]
    for i, moment in enumerate(sent):
        r = await client.post("/events", json={"name": f"e{i}", "occurred_at": moment.isoformat()})
        if r.status_code != 201:
            report.fail_rest(f"POST /events answered {r.status_code}: {r.text[:200]}", API_CHECKS)
            return
    r = await client.get("/events")
    if r.status_code != 200:
        report.fail_rest(f"GET /events answered {r.status_code}: {r.text[:200]}", API_CHECKS)
        return
    got = {e["name"]: e["occurred_at"] for e in r.json()}
    parsed = {name: parse(value) for name, value in got.items()}
    naive = [got[n] for n, v in parsed.items() if v.tzinfo is None]
    report.check("returns_aware_datetimes", len(parsed) == len(sent) and not naive,
                 f"occurred_at came back without a time zone: {naive[:2]}")
    aware = {n: v for n, v in parsed.items() if v.tzinfo is not None}
    shifted = [(n, got[n], sent[int(n[1:])].isoformat()) for n, v in aware.items()
               if v.replace(microsecond=0) != sent[int(n[1:])].replace(microsecond=0)]
    report.check("keeps_instant_across_offsets", len(aware) == len(sent) and not shifted,
                 f"returned instants differ from those sent (returned, sent): {shifted[:2]}"
                 if shifted else "no timezone-aware values to compare")
    lost = [(n, got[n]) for n, v in parsed.items() if v.microsecond != sent[int(n[1:])].microsecond]
    report.check("keeps_microseconds", len(parsed) == len(sent) and not lost,
                 f"fractional seconds changed for {len(lost)} of {len(sent)} events, e.g. {lost[:2]}")
    order = [e["name"] for e in r.json()]
    wanted = [f"e{i}" for i in sorted(range(len(sent)), key=lambda i: sent[i])]
    report.check("orders_within_a_second", order == wanted,
                 f"GET /events lists {order}, expected {wanted} (by occurred_at)")
    since = offsets[1].astimezone(KOLKATA)  # exactly the second event's instant, in another offset
    r = await client.get("/events", params={"since": since.isoformat()})
    names = sorted(e["name"] for e in r.json()) if r.status_code == 200 else []
    expected = sorted(f"e{i}" for i in range(len(sent)) if sent[i] > since)
    report.check("since_filter", r.status_code == 200 and names == expected,
                 f"GET /events?since={since.isoformat()} answered {r.status_code} with {names}, expected {expected}")


async def existing_database(solution: Path, url: str, backend: str, report: gradelib.Report) -> None:
    """A database migrated to 0001 that holds rows of the old version, then upgraded to head."""
    code, out = await gradelib.alembic(solution, url, "upgrade", "0001")
    if code != 0:
        report.check("upgrade_existing_database", False, f"alembic upgrade 0001 failed: {gradelib.tail(out)}")
        return
    engine = create_async_engine(url)

    def literal(value: str) -> Any:
        """asyncpg wants a datetime for a timestamptz; the others take the text the old version wrote."""
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc) if backend == "postgresql" else value

    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO events (name, occurred_at) VALUES ('legacy', :at)"),
                               {"at": literal(LEGACY)})
        code, out = await gradelib.alembic(solution, url, "upgrade", "head")
        if code != 0:
            report.check("upgrade_existing_database", False,
                         f"alembic upgrade head on a database at 0001 failed: {gradelib.tail(out)}")
            return
        fine = "2024-06-07 08:09:10.654321"
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO events (name, occurred_at) VALUES ('fine', :at)"),
                               {"at": literal(fine)})
        async with engine.connect() as conn:
            rows = dict((await conn.execute(text("SELECT name, occurred_at FROM events"))).all())
    finally:
        await engine.dispose()

    def as_utc(value: Any) -> datetime:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)

    legacy_ok = "legacy" in rows and as_utc(rows["legacy"]) == datetime.fromisoformat(LEGACY).replace(
        tzinfo=timezone.utc)
    fine_ok = "fine" in rows and as_utc(rows["fine"]).microsecond == 654321
    report.check("upgrade_existing_database", legacy_ok and fine_ok,
                 f"after upgrading a database that was at 0001: old row {'kept' if legacy_ok else 'changed'} "
                 f"({rows.get('legacy')!r}), a value with microseconds stored as {rows.get('fine')!r}")


TASK = gradelib.Task(checks=CHECKS, backends=("sqlite", "postgresql", "mysql"), run=run)

if __name__ == "__main__":
    sys.exit(gradelib.main(TASK))

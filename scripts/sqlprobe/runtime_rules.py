"""Turns the per-process record files written by ``recorder.py`` into findings.

Rules: ``n_plus_one``, ``repeated_identical``, ``slow_query`` (reads, and UPDATE/DELETE with a
WHERE: set-up writes and DDL are not query problems) and ``missing_index``,
``unindexed_foreign_key`` (from the plans and catalog data: on by default for SELECTs).

Index findings are judged on the plan: a table the plan reads in full although the statement
filters it, on a column no index leads with. One finding per statement and table (a composite
index when it filters several columns; an expression index for ``lower(email) = ?``); boolean and
discriminator columns are left out (an index rarely helps there); tables whose models exist only
for tests are counted apart (``test_table_findings``) unless ``include_test_tables``.
No parameter value ever reaches a finding: the recorder keeps only hashes of them.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scriptlib import shorten

SEVERITY = {
    "n_plus_one": "warning",
    "missing_index": "warning",
    "unindexed_foreign_key": "warning",
    "slow_query": "warning",
    "repeated_identical": "info",
}
RUNTIME_RULES = tuple(SEVERITY)
SQL_SHOWN = 160


def load_records(directory: Path) -> tuple[list[dict[str, Any]], list[str]]:
    records: list[dict[str, Any]] = []
    problems: list[str] = []
    for f in sorted(directory.glob("*.json")):
        try:
            records.append(json.loads(f.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            problems.append(f"unreadable record {f.name}: {type(exc).__name__}")
    return records, problems


def short_sql(sql: str) -> str:
    return shorten(sql, SQL_SHOWN)


def site_path(site: list[Any], cwd: Path) -> tuple[str, int]:
    file, line = str(site[0]), int(site[1])
    try:
        return str(Path(file).resolve().relative_to(cwd.resolve())), line
    except (ValueError, OSError):
        return file, line


CATALOG_READ = re.compile(r"\b(pg_catalog|information_schema|performance_schema)\s*\.|\bsqlite_(master|schema)\b", re.I)


def reads_catalog(shape: str) -> bool:
    """A statement on the database's own catalog (reflection, ``has_table``): never the app's N+1."""
    return CATALOG_READ.search(shape) is not None


def analyse(
    records: list[dict[str, Any]],
    *,
    threshold: int,
    slow_ms: float | None,
    cwd: Path,
    include_test_tables: bool = False,
) -> dict[str, Any]:
    findings: list[dict[str, Any]] = []
    statements = sum(int(r.get("statements", 0)) for r in records)
    models: dict[str, str | None] = {}
    tables: dict[str, dict[str, Any]] = {}
    for r in records:
        for t, m in (r.get("models") or {}).items():
            models.setdefault(t, m)
        for t, facts in (r.get("tables") or {}).items():
            tables.setdefault(t, facts)

    def finding(
        rule: str, site: list[Any], message: str, fix: str, stack: list[Any] | None = None, **extra: Any
    ) -> None:
        file, line = site_path(site, cwd)
        callers = [
            "{}:{}".format(*site_path(f, cwd)) + (f" in {f[2]}" if len(f) > 2 else "") for f in (stack or [])[:3]
        ]
        findings.append(
            {
                "rule": rule,
                "severity": SEVERITY[rule],
                "file": file,
                "line": line,
                "function": str(site[2]) if len(site) > 2 else "",
                "message": message,
                "fix": fix,
                "called_from": callers,
                **extra,
            }
        )

    for r in records:
        for agg in r.get("aggregates", []):
            kind = agg.get("kind")
            sql = short_sql(agg.get("shape", ""))
            site = agg["site"]
            if reads_catalog(agg.get("shape", "")):
                continue  # SQLAlchemy's own reflection (create_all's has_table per table, Alembic): not the app's queries
            if kind == "SELECT" and agg.get("max_span_distinct", 0) >= threshold:
                rel = agg.get("relationship")
                hints = agg.get("relationship_hints") or []
                filters = agg.get("filters") or []
                if rel:
                    fix = f"eager-load it in the query that loads the parents: .options({rel})"
                    what = f"lazy load of {rel.split('(', 1)[1].rstrip(')')}"
                else:
                    what = "the same query"
                    if len(filters) == 1:
                        t, c = filters[0]
                        model = models.get(t) or t
                        fix = f"one query for all keys: .where({model}.{c}.in_(keys)), then group the rows in Python"
                    else:
                        fix = "one query for all keys with .in_(keys) (or a JOIN) instead of one per item"
                    if hints:
                        fix = f".options({hints[0]}) on the query that loads the parents, or " + fix
                finding(
                    "n_plus_one",
                    site,
                    f"{what} ran {agg['count']} times from this line, up to {agg['max_span_distinct']} times with different parameters on one connection (N+1): {sql}",
                    fix,
                    stack=agg.get("stack"),
                    count=agg["count"],
                    sql=sql,
                )
            if kind == "SELECT" and agg.get("max_same_params", 0) >= threshold:
                finding(
                    "repeated_identical",
                    site,
                    f"the same query with the same parameters ran {agg['max_same_params']} times on one connection: {sql}",
                    "run it once and reuse the result (hoist it out of the loop, or cache it for the request)",
                    stack=agg.get("stack"),
                    count=agg["max_same_params"],
                    sql=sql,
                )
            reads = kind == "SELECT" or (kind in ("UPDATE", "DELETE") and agg.get("has_where", True))
            if slow_ms is not None and agg.get("slow", 0) > 0 and reads:
                finding(
                    "slow_query",
                    site,
                    f"{agg['slow']} of {agg['count']} executions took longer than {slow_ms:g} ms (slowest {agg['max_ms']:.1f} ms): {sql}",
                    "run with --explain to see whether an index is missing; otherwise fetch less (columns, rows) or precompute",
                    stack=agg.get("stack"),
                    count=agg["slow"],
                    max_ms=round(agg["max_ms"], 1),
                    sql=sql,
                )

    test_table_findings = 0
    seen: set[tuple[str, str, tuple[str, ...]]] = set()
    for r in records:
        for ex in r.get("explains", []):
            for item in index_findings(r, ex, tables, models):
                rule, table, columns = item["rule"], item["table"], item["columns"]
                key = (rule, table, tuple(columns))
                if key in seen:
                    continue
                seen.add(key)
                if (tables.get(table) or {}).get("test_only") and not include_test_tables:
                    test_table_findings += 1
                    continue
                finding(
                    rule,
                    ex["site"],
                    item["message"],
                    item["fix"],
                    stack=ex.get("stack"),
                    sql=short_sql(ex.get("shape", "")),
                    table=table,
                    column=columns[0],
                    columns=columns,
                    plan=(ex.get("plan") or [])[:5],
                    test_table=bool((tables.get(table) or {}).get("test_only")),
                )
    explained = sum(len(r.get("explains") or []) for r in records)
    return {
        "statements": statements,
        "findings": findings,
        "processes": len(records),
        "explained": explained,
        "test_table_findings": test_table_findings,
    }


def index_findings(
    record: dict[str, Any], ex: dict[str, Any], tables: dict[str, dict[str, Any]], models: dict[str, str | None]
) -> list[dict[str, Any]]:
    """At most one finding per table the plan scans while the statement filters it on columns no
    index leads with: unindexed_foreign_key when one of them is a foreign key, else missing_index
    (a composite index for several columns, an expression index for ``lower(col)``)."""
    agg = _agg_index(record).get(ex.get("shape", "")) or {}
    catalog = ex.get("catalog") or {}
    scanned = set(ex.get("scanned") or [])
    sql = short_sql(ex.get("shape", ""))
    filters = [tuple(x) for x in agg.get("filters", [])]
    joins = [tuple(x) for x in agg.get("joins", [])]
    exprs = [tuple(x) for x in agg.get("expr_filters", [])]
    out: list[dict[str, Any]] = []
    for table in sorted(scanned):
        cat = catalog.get(table)
        if not cat:
            continue
        indexed = set(cat.get("indexed") or [])
        fks = cat.get("fks") or {}
        low = set((tables.get(table) or {}).get("low_selectivity") or [])
        model = models.get(table) or (tables.get(table) or {}).get("model") or table
        plain = [c for t, c in filters if t == table and c not in indexed and c not in low]
        fk_cols = sorted({c for t, c in filters + joins if t == table and c in fks and c not in indexed})
        if fk_cols:
            cols = fk_cols
            out.append(
                {
                    "rule": "unindexed_foreign_key",
                    "table": table,
                    "columns": cols,
                    "message": f"the plan reads all of {table}: foreign key {', '.join(f'{table}.{c} -> {fks[c]}' for c in cols)} is used to filter or join but no index starts with it: {sql}",
                    "fix": f'index it: mapped_column(ForeignKey(...), index=True) on {model}.{cols[0]}, or Index("ix_{table}_{cols[0]}", "{cols[0]}") in __table_args__',
                }
            )
            continue
        if plain:
            cols = list(dict.fromkeys(plain))
            name = "ix_" + table + "_" + "_".join(cols)
            args = ", ".join(f'"{c}"' for c in cols)
            what = (
                f"on {cols[0]}"
                if len(cols) == 1
                else f"on {', '.join(cols)} (one composite index serves them together)"
            )
            out.append(
                {
                    "rule": "missing_index",
                    "table": table,
                    "columns": cols,
                    "message": f"the {ex.get('dialect')} plan reads all of {table} to filter {what}: no index could serve it: {sql}",
                    "fix": f'Index("{name}", {args}) in __table_args__ of {model}'
                    + (" (or mapped_column(..., index=True))" if len(cols) == 1 else " (equality columns first)")
                    + ", then a migration",
                }
            )
            continue
        expr = [(c, fn) for t, c, fn in exprs if t == table and c not in low]
        if expr:
            c, fn = expr[0]
            out.append(
                {
                    "rule": "missing_index",
                    "table": table,
                    "columns": [f"{fn}({c})"],
                    "message": f"the {ex.get('dialect')} plan reads all of {table} to filter on {fn}({c}): a plain index on {c} cannot serve an expression: {sql}",
                    "fix": f'an expression index: Index("ix_{table}_{fn}_{c}", func.{fn}({model}.{c})) in __table_args__ (PostgreSQL, SQLite >= 3.9, MySQL >= 8.0.13 functional key parts; MariaDB: an indexed generated column), then a migration',
                }
            )
    return out


def _agg_index(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cache = record.get("_by_shape")
    if cache is None:
        cache = {a["shape"]: a for a in record.get("aggregates", [])}
        record["_by_shape"] = cache
    return cache


def record_errors(records: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        for k, v in (r.get("errors") or {}).items():
            out[k] = out.get(k, 0) + int(v)
    return out

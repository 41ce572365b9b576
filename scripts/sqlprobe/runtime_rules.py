"""Turns the per-process record files written by ``recorder.py`` into findings.

Rules: ``n_plus_one``, ``repeated_identical``, ``slow_query`` (always) and ``missing_index``,
``unindexed_foreign_key`` (from the plans and catalog data gathered with ``--explain``).
No parameter value ever reaches a finding: the recorder keeps only hashes of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    one = " ".join(sql.split())
    return one if len(one) <= SQL_SHOWN else one[: SQL_SHOWN - 1] + "…"


def site_path(site: list[Any], cwd: Path) -> tuple[str, int]:
    file, line = str(site[0]), int(site[1])
    try:
        return str(Path(file).resolve().relative_to(cwd.resolve())), line
    except (ValueError, OSError):
        return file, line


def analyse(records: list[dict[str, Any]], *, threshold: int, slow_ms: float | None, cwd: Path) -> dict[str, Any]:
    findings: list[dict[str, Any]] = []
    statements = sum(int(r.get("statements", 0)) for r in records)
    models: dict[str, str | None] = {}
    for r in records:
        for t, m in (r.get("models") or {}).items():
            models.setdefault(t, m)

    def finding(rule: str, site: list[Any], message: str, fix: str, stack: list[Any] | None = None, **extra: Any) -> None:
        file, line = site_path(site, cwd)
        callers = ["{}:{}".format(*site_path(f, cwd)) + (f" in {f[2]}" if len(f) > 2 else "") for f in (stack or [])[:3]]
        findings.append({"rule": rule, "severity": SEVERITY[rule], "file": file, "line": line, "function": str(site[2]) if len(site) > 2 else "", "message": message, "fix": fix, "called_from": callers, **extra})

    for r in records:
        for agg in r.get("aggregates", []):
            kind = agg.get("kind")
            sql = short_sql(agg.get("shape", ""))
            site = agg["site"]
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
                    "n_plus_one", site,
                    f"{what} ran {agg['count']} times from this line, up to {agg['max_span_distinct']} times with different parameters on one connection (N+1): {sql}",
                    fix, stack=agg.get("stack"), count=agg["count"], sql=sql,
                )
            if kind == "SELECT" and agg.get("max_same_params", 0) >= threshold:
                finding(
                    "repeated_identical", site,
                    f"the same query with the same parameters ran {agg['max_same_params']} times on one connection: {sql}",
                    "run it once and reuse the result (hoist it out of the loop, or cache it for the request)",
                    stack=agg.get("stack"), count=agg["max_same_params"], sql=sql,
                )
            if slow_ms is not None and agg.get("slow", 0) > 0:
                finding(
                    "slow_query", site,
                    f"{agg['slow']} of {agg['count']} executions took longer than {slow_ms:g} ms (slowest {agg['max_ms']:.1f} ms): {sql}",
                    "run with --explain to see whether an index is missing; otherwise fetch less (columns, rows) or precompute",
                    stack=agg.get("stack"), count=agg["slow"], max_ms=round(agg["max_ms"], 1), sql=sql,
                )

    seen_fk: set[tuple[str, str]] = set()
    seen_ix: set[tuple[str, str]] = set()
    for r in records:
        for ex in r.get("explains", []):
            catalog = ex.get("catalog") or {}
            scanned = set(ex.get("scanned") or [])
            site = ex["site"]
            sql = short_sql(ex.get("shape", ""))
            info_filters = [tuple(x) for x in _filters_of(r, ex)]
            info_joins = [tuple(x) for x in _joins_of(r, ex)]
            for table, column in sorted(set(info_filters) | set(info_joins)):
                cat = catalog.get(table)
                if not cat:
                    continue
                indexed = set(cat.get("indexed") or [])
                fks = cat.get("fks") or {}
                model = models.get(table) or table
                if column in fks and column not in indexed:
                    if (table, column) not in seen_fk:
                        seen_fk.add((table, column))
                        finding(
                            "unindexed_foreign_key", site,
                            f"foreign key {table}.{column} -> {fks[column]} is used to filter or join but no index starts with it: {sql}",
                            f'index it: mapped_column(ForeignKey(...), index=True) on {model}.{column}, or Index("ix_{table}_{column}", "{column}") in __table_args__',
                            sql=sql, table=table, column=column,
                        )
                    continue
                if table in scanned and column not in indexed and (table, column) in info_filters and (table, column) not in seen_ix:
                    seen_ix.add((table, column))
                    finding(
                        "missing_index", site,
                        f"the {ex.get('dialect')} plan scans all of {table} to filter on {column} (no index starts with it): {sql}",
                        f'Index("ix_{table}_{column}", "{column}") in __table_args__ of {model} (or mapped_column(..., index=True)), then a migration',
                        sql=sql, table=table, column=column, plan=(ex.get("plan") or [])[:5],
                    )
    explained = sum(len(r.get("explains") or []) for r in records)
    return {"statements": statements, "findings": findings, "processes": len(records), "explained": explained}


def _agg_index(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    cache = record.get("_by_shape")
    if cache is None:
        cache = {a["shape"]: a for a in record.get("aggregates", [])}
        record["_by_shape"] = cache
    return cache


def _filters_of(record: dict[str, Any], ex: dict[str, Any]) -> list[Any]:
    agg = _agg_index(record).get(ex.get("shape", ""))
    return agg.get("filters", []) if agg else []


def _joins_of(record: dict[str, Any], ex: dict[str, Any]) -> list[Any]:
    agg = _agg_index(record).get(ex.get("shape", ""))
    return agg.get("joins", []) if agg else []


def record_errors(records: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in records:
        for k, v in (r.get("errors") or {}).items():
            out[k] = out.get(k, 0) + int(v)
    return out

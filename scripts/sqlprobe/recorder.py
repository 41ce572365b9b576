"""Runtime half of optimize-queries, loaded into the user's Python process by ``site/sitecustomize.py``.

What it does:

- when ``sqlalchemy`` is first imported, installs class-level listeners: ``Engine``
  ``before/after_cursor_execute`` (async engines included, through their ``sync_engine``),
  ``Pool`` ``checkout`` (numbers each connection use, the unit an N+1 is counted in) and
  ``Session`` ``do_orm_execute`` (tags relationship lazy loads with the relationship's name);
- aggregates every statement in memory: shape (normalised SQL), the user's call site (first
  stack frame outside SQLAlchemy, the drivers, greenlet, the standard library, installed packages
  and this file), a hash of the parameters (never their values), count and durations;
- EXPLAIN-backed index checks (on by default for SELECTs; ``OPTIMIZE_QUERIES_EXPLAIN`` lists the
  statement kinds, ``0`` turns them off): for the first execution of each shape that filters or
  joins, reads the tables' indexes and foreign keys from the catalog and asks the backend whether
  an index could serve it, on the same connection, through a separate DBAPI cursor (so no
  SQLAlchemy event fires and the user's cursor/result is untouched). On PostgreSQL that runs inside
  a SAVEPOINT that is rolled back (``SET LOCAL enable_seqscan = off`` makes "no usable index"
  visible even on tiny tables); plain EXPLAIN, never ANALYZE;
- at exit, reads the mapped models (read-only, never configuring them) for each table it explained:
  the model name, whether it is defined only for tests, and its boolean / discriminator columns;
- at process exit writes one JSON file into ``OPTIMIZE_QUERIES_DIR`` (one per process, so
  subprocesses and pytest-xdist workers each report); ``optimize-queries.py`` analyses them.

Nothing here may break the user's program: every hook swallows its own errors (counted in the
record file).
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import json
import os
import re
import secrets
import sys
import sysconfig
import threading
import time
from typing import Any

ENV_DIR = "OPTIMIZE_QUERIES_DIR"
ENV_EXPLAIN = "OPTIMIZE_QUERIES_EXPLAIN"  # "0" off; "SELECT" (default); "SELECT,UPDATE,DELETE" (--explain)
ENV_SLOW_MS = "OPTIMIZE_QUERIES_SLOW_MS"

MAX_PARAM_HASHES = 64  # distinct parameter sets remembered per (shape, call site)
MAX_SPANS = 8  # connection uses remembered per (shape, call site)
MAX_AGGS = 20000  # (shape, call site) pairs; beyond that only totals are counted
MAX_EXPLAINS = 500
STACK_DEPTH = 8  # user frames read per statement: the call site and its callers (the N+1 key)
CALLERS_SHOWN = 3


class RecorderState:
    """Everything this module remembers, in one place (one instance: ``STATE``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.span_counter = itertools.count(1)
        self.explain_kinds: frozenset[str] = frozenset()  # statement kinds to EXPLAIN
        self.slow_ms: float | None = None
        self.sa_loaded = False
        self.lib_dirs: list[str] = []  # SQLAlchemy, drivers, greenlet, this folder
        self.frame_class: dict[str, int] = {}  # filename -> 0 user, 1 installed package, 2 library internals
        self.reset()

    def reset(self) -> None:
        """Forget every statement (after fork: the child reports only its own)."""
        self.statements = 0
        self.aggs: dict[tuple[str, tuple[str, int, str]], dict[str, Any]] = {}  # (shape, site) -> aggregate
        self.shapes: dict[str, dict[str, Any]] = {}  # SQL text -> describe_statement() result
        self.explained: set[str] = set()
        self.explains: list[dict[str, Any]] = []
        self.catalog: dict[tuple[str, str], dict[str, Any]] = {}
        self.errors: dict[str, int] = {}
        self.dialects: set[str] = set()
        self.tables: dict[str, dict[str, Any]] = {}  # table -> _table_facts(), read when first explained
        self.dropped = 0


STATE = RecorderState()


# --------------------------------------------------------------------------- statement shapes

_SKIP_KINDS = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA", "SET", "SHOW", "START")
_IDENT = r'[`"\[]?([A-Za-z_][A-Za-z0-9_$]*)[`"\]]?'
_QIDENT = rf"(?:{_IDENT}\.)?{_IDENT}"  # optional schema, table
_PARAM_RE = re.compile(r"\$\d+|%\(\w+\)s|%s|(?<![:\w]):[A-Za-z_]\w*|\?")
_STRING_RE = re.compile(r"'(?:[^']|'')*'")
_NUMBER_RE = re.compile(r"(?<![\w.$])-?\d+(?:\.\d+)?\b")
_IN_LIST_RE = re.compile(r"\(\s*\?(?:\s*,\s*\?)+\s*\)")
_VALUES_ROWS_RE = re.compile(r"(\(\?(?:, \?)*\))(?:\s*,\s*\(\?(?:, \?)*\))+")
_WS_RE = re.compile(r"\s+")
_CAST_RE = re.compile(r"\?::\w+(?:\s+(?:WITH|WITHOUT)\s+TIME\s+ZONE)?(?:\(\d+(?:,\s*\d+)?\))?(?:\[\])?", re.I)
_FROM_RE = re.compile(
    rf"\b(?:FROM|JOIN|UPDATE|INTO)\s+{_QIDENT}(?:\s+(?:AS\s+)?(?!(?:WHERE|JOIN|ON|LEFT|RIGHT|INNER|OUTER|CROSS|FULL|SET|ORDER|GROUP|LIMIT|VALUES|USING|NATURAL|FOR|UNION|HAVING|OFFSET|RETURNING)\b){_IDENT})?",
    re.I,
)
_COL = r'[`"]?([A-Za-z_]\w*)[`"]?\.[`"]?([A-Za-z_]\w*)[`"]?'
_OPS = r"(?:(?<![<>!])=|<=|>=|<(?!>)|(?<!<)>|\bIN\b|\bLIKE\b|\bILIKE\b|\bBETWEEN\b)"  # not <> / != / NOT IN
_PRED_COL_FIRST = re.compile(rf"{_COL}\s*{_OPS}\s*\(?\s*\?", re.I)
_PRED_PARAM_FIRST = re.compile(rf"\?\s*(?:=|<=|>=|<(?!>)|>)\s*{_COL}", re.I)
_JOIN_PRED = re.compile(rf"{_COL}\s*=\s*{_COL}")
_EXPR_PRED = re.compile(
    rf"\b([A-Za-z_]\w*)\(\s*{_COL}\s*\)\s*{_OPS}\s*\(?\s*(?:\?|(?:lower|upper)\(\s*\?\s*\)|\?)", re.I
)
_BARE_EXPR_PRED = re.compile(rf"\b([A-Za-z_]\w*)\(\s*[`\"]?([A-Za-z_]\w*)[`\"]?\s*\)\s*{_OPS}\s*\(?\s*\?", re.I)
_BARE_PRED = re.compile(rf"(?<![.\w`\"])[`\"]?([A-Za-z_]\w*)[`\"]?\s*{_OPS}\s*\(?\s*\?", re.I)
_CATALOG_SCHEMAS = {"information_schema", "pg_catalog", "mysql", "performance_schema", "sys"}
_KEYWORDS = {
    "and",
    "or",
    "not",
    "where",
    "on",
    "select",
    "set",
    "values",
    "limit",
    "offset",
    "when",
    "then",
    "else",
    "case",
    "by",
    "having",
    "like",
    "in",
    "is",
    "between",
}


def normalise(sql: str) -> str:
    out = _STRING_RE.sub("?", sql)
    out = _PARAM_RE.sub("?", out)
    out = _NUMBER_RE.sub("?", out)
    out = _CAST_RE.sub("?", out)
    out = _WS_RE.sub(" ", out).strip()
    out = _IN_LIST_RE.sub("(?...)", out)
    out = _VALUES_ROWS_RE.sub(r"\1, ...", out)
    return out


def describe_statement(sql: str) -> dict[str, Any]:
    """Kind, normalised shape, tables (alias -> table) and the columns it filters and joins on."""
    shape = normalise(sql)
    head = shape.split(" ", 1)[0].upper() if shape else ""
    kind = {"WITH": "SELECT"}.get(head, head)
    info: dict[str, Any] = {
        "shape": shape,
        "kind": kind,
        "aliases": {},
        "filters": [],
        "joins": [],
        "expr_filters": [],
        "has_where": False,
    }
    if kind not in ("SELECT", "UPDATE", "DELETE"):
        return info
    aliases: dict[str, str] = {}
    catalog = False
    for m in _FROM_RE.finditer(shape):
        table = m.group(2)
        if table.upper() in ("SELECT", "LATERAL"):
            continue
        if (m.group(1) or "").lower() in _CATALOG_SCHEMAS or table.lower().startswith(("sqlite_", "pg_")):
            catalog = True
        aliases[table] = table
        if m.group(3):
            aliases[m.group(3)] = table
    info["aliases"] = aliases
    if catalog:
        return info  # the database's own catalog (reflection, Alembic): not the app's tables
    where_at = re.search(r"\b(WHERE|ON)\b", shape, re.I)
    body = shape[where_at.start() :] if where_at else ""
    info["has_where"] = bool(re.search(r"\bWHERE\b", shape, re.I))
    filters: list[tuple[str, str]] = []
    for m in _PRED_COL_FIRST.finditer(body):
        filters.append((m.group(1), m.group(2)))
    for m in _PRED_PARAM_FIRST.finditer(body):
        filters.append((m.group(1), m.group(2)))
    tables = set(aliases.values())
    if len(tables) == 1:
        (only,) = tables
        for m in _BARE_PRED.finditer(body):
            if m.group(1).lower() not in _KEYWORDS:
                filters.append((only, m.group(1)))
    joins: list[tuple[str, str]] = []
    for m in _JOIN_PRED.finditer(body):
        joins.append((m.group(1), m.group(2)))
        joins.append((m.group(3), m.group(4)))
    resolve = lambda pairs: sorted({(aliases.get(a, a), c) for a, c in pairs if aliases.get(a, a) in tables})  # noqa: E731
    info["filters"] = resolve(filters)
    info["joins"] = resolve(joins)
    exprs: set[tuple[str, str, str]] = set()
    for m in _EXPR_PRED.finditer(body):  # lower(users.email) = ?: only an expression index serves it
        fn, a, c = m.group(1).lower(), m.group(2), m.group(3)
        if fn not in _KEYWORDS and fn not in ("in", "exists", "any", "coalesce") and aliases.get(a, a) in tables:
            exprs.add((aliases.get(a, a), c, fn))
    if len(tables) == 1:
        (only,) = tables
        for m in _BARE_EXPR_PRED.finditer(body):
            fn = m.group(1).lower()
            if fn not in _KEYWORDS and fn not in (
                "in",
                "exists",
                "any",
                "coalesce",
                "count",
                "sum",
                "max",
                "min",
                "avg",
            ):
                exprs.add((only, m.group(2), fn))
    info["expr_filters"] = sorted(exprs)
    return info


# --------------------------------------------------------------------------- call sites


def _library_dirs() -> list[str]:
    dirs = [os.path.dirname(os.path.abspath(__file__))]
    for name in (
        "sqlalchemy",
        "greenlet",
        "aiosqlite",
        "asyncpg",
        "aiomysql",
        "pymysql",
        "psycopg",
        "psycopg2",
        "MySQLdb",
        "asyncmy",
    ):
        try:
            spec = importlib.util.find_spec(name)
        except Exception:
            spec = None
        if spec is not None and spec.origin and spec.submodule_search_locations:
            dirs.append(os.path.dirname(os.path.abspath(spec.origin)))
    return dirs


_STDLIB_DIRS = sorted({os.path.abspath(p) for k in ("stdlib", "platstdlib") if (p := sysconfig.get_paths().get(k))})


def _classify(filename: str) -> int:
    cls = STATE.frame_class.get(filename)
    if cls is not None:
        return cls
    if filename.startswith("<"):
        cls = 2
    else:
        path = os.path.abspath(filename)
        if any(path.startswith(d + os.sep) for d in STATE.lib_dirs):
            cls = 2
        elif "site-packages" in path or "dist-packages" in path:
            cls = 1
        elif any(path.startswith(d + os.sep) for d in _STDLIB_DIRS):
            cls = 2
        else:
            cls = 0
    STATE.frame_class[filename] = cls
    return cls


try:
    import greenlet as _greenlet_mod

    _getcurrent = _greenlet_mod.getcurrent
except Exception:
    _getcurrent = None


def call_stack(limit: int = STACK_DEPTH) -> list[tuple[str, int, str]]:
    """Up to ``limit`` user frames, innermost first: the call site, then who called it. Crosses
    SQLAlchemy's greenlet bridge; when no user frame exists, the innermost installed-package frame."""
    out: list[tuple[str, int, str]] = []
    fallback: tuple[str, int, str] | None = None
    frame: Any = sys._getframe(2)
    glet = _getcurrent() if _getcurrent else None
    hops = 0
    while hops < 400 and len(out) < limit:
        while frame is not None and hops < 400 and len(out) < limit:
            hops += 1
            code = frame.f_code
            cls = _classify(code.co_filename)
            if cls == 0:
                out.append((code.co_filename, frame.f_lineno, code.co_name))
            elif cls == 1 and fallback is None and not out:
                fallback = (code.co_filename, frame.f_lineno, code.co_name)
            frame = frame.f_back
        glet = glet.parent if glet is not None else None
        if glet is None:
            break
        frame = glet.gr_frame
    if not out:
        out.append(fallback or ("<unknown>", 0, "?"))
    return out


# --------------------------------------------------------------------------- parameters


def param_key(parameters: Any) -> int:
    try:
        if isinstance(parameters, dict):
            return hash(tuple(sorted((k, _hashable(v)) for k, v in parameters.items())))
        if isinstance(parameters, (list, tuple)):
            return hash(tuple(_hashable(v) for v in parameters))
        return hash(_hashable(parameters))
    except Exception:
        return hash(repr(parameters))


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


# --------------------------------------------------------------------------- listeners


def _error(where: str, exc: BaseException) -> None:
    key = f"{where}: {type(exc).__name__}"
    STATE.errors[key] = STATE.errors.get(key, 0) + 1


def _on_checkout(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
    try:
        connection_record.info["optimize_queries_span"] = next(STATE.span_counter)
    except Exception as exc:
        _error("checkout", exc)


def _on_orm_execute(orm_state: Any) -> None:
    try:
        if orm_state.is_relationship_load:
            path = orm_state.loader_strategy_path
            prop = path[-1] if path is not None and len(path) else None
            if prop is not None and hasattr(prop, "parent") and hasattr(prop, "key"):
                name = f"{prop.parent.class_.__name__}.{prop.key}"
                option = "selectinload" if getattr(prop, "uselist", True) else "joinedload"
                orm_state.update_execution_options(optimize_queries_relationship=f"{option}({name})")
    except Exception as exc:
        _error("do_orm_execute", exc)


def _before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    try:
        context._optimize_queries_t0 = time.perf_counter()
    except Exception:
        pass


def _after(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
    end = time.perf_counter()
    try:
        t0 = getattr(context, "_optimize_queries_t0", None)
        ms = (end - t0) * 1000.0 if t0 is not None else 0.0
        info = STATE.shapes.get(statement)
        if info is None:
            info = describe_statement(statement)
            info["sql"] = statement[:2000]
            STATE.shapes[statement] = info
        stack = call_stack()
        span = conn.info.get("optimize_queries_span", 0)
        # literals inlined in the SQL text count as parameters: key on (text, parameters)
        pkey = 0 if executemany else hash((statement, param_key(parameters)))
        rel = None
        if context is not None and info["kind"] == "SELECT":
            rel = context.execution_options.get("optimize_queries_relationship")
        with STATE.lock:
            STATE.statements += 1
            _record(info, stack, span, pkey, ms, executemany, rel)
        if info["kind"] in STATE.explain_kinds and (info["filters"] or info["joins"] or info["expr_filters"]):
            shape = info["shape"]
            if shape not in STATE.explained and len(STATE.explained) < MAX_EXPLAINS and not executemany:
                STATE.explained.add(shape)
                if not (context is not None and getattr(context, "is_server_side", False)):
                    _explain(conn, statement, parameters, info, stack)
    except Exception as exc:
        _error("after_cursor_execute", exc)


def _record(
    info: dict[str, Any],
    stack: list[tuple[str, int, str]],
    span: int,
    pkey: int,
    ms: float,
    many: bool,
    rel: str | None,
) -> None:
    site = stack[0]
    key = (info["shape"], site)
    agg = STATE.aggs.get(key)
    if agg is None:
        if len(STATE.aggs) >= MAX_AGGS:
            STATE.dropped += 1
            return
        agg = STATE.aggs[key] = {
            "count": 0,
            "total_ms": 0.0,
            "max_ms": 0.0,
            "slow": 0,
            "params": set(),
            "spans": {},
            "max_span_distinct": 0,
            "max_span_count": 0,
            "max_same_params": 0,
            "executemany": 0,
            "kind": info["kind"],
            "has_where": info["has_where"],
            "relationship": rel,
            "sql": info["sql"],
            "stack": [list(f) for f in stack[1 : 1 + CALLERS_SHOWN]],  # the callers of the call site, first occurrence
        }
    agg["count"] += 1
    agg["total_ms"] += ms
    if ms > agg["max_ms"]:
        agg["max_ms"] = ms
    if STATE.slow_ms is not None and ms > STATE.slow_ms:
        agg["slow"] += 1
    if many:
        agg["executemany"] += 1
        return
    if rel and not agg["relationship"]:
        agg["relationship"] = rel
    if len(agg["params"]) < MAX_PARAM_HASHES:
        agg["params"].add(pkey)
    spans = agg["spans"]
    per = spans.get(span)
    if per is None:
        if len(spans) >= MAX_SPANS:
            spans.pop(next(iter(spans)))
        per = spans[span] = {"count": 0, "params": {}, "by_callers": {}}
    per["count"] += 1
    counts = per["params"]
    if pkey in counts or len(counts) < MAX_PARAM_HASHES:
        counts[pkey] = counts.get(pkey, 0) + 1
        if counts[pkey] > agg["max_same_params"]:
            agg["max_same_params"] = counts[pkey]
    # N+1 is one line running the statement again and again from the same callers (a loop):
    # sequential calls from different lines (a test calling get(1), get(2), get(3)) are not.
    callers = tuple((f[0], f[1]) for f in stack[1:])
    distinct = per["by_callers"].get(callers)
    if distinct is None:
        if len(per["by_callers"]) >= MAX_PARAM_HASHES:
            return
        distinct = per["by_callers"][callers] = set()
    if len(distinct) < MAX_PARAM_HASHES:
        distinct.add(pkey)
    agg["max_span_count"] = max(agg["max_span_count"], per["count"])
    if len(distinct) > agg["max_span_distinct"]:
        agg["max_span_distinct"] = len(distinct)
        if len(distinct) > 1:
            agg["stack"] = [list(f) for f in stack[1 : 1 + CALLERS_SHOWN]]  # the callers that repeat it: the loop


# --------------------------------------------------------------------------- EXPLAIN and catalog

_SAFE_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def _raw(dbapi_conn: Any, sql: str, params: Any = None) -> tuple[list[Any], list[str]]:
    cur = dbapi_conn.cursor()
    try:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        cols = [d[0] for d in (cur.description or [])]
        rows = list(cur.fetchall()) if cur.description else []
        return rows, cols
    finally:
        try:
            cur.close()
        except Exception:
            pass


def _catalog(dialect: str, dbapi_conn: Any, table: str, key_prefix: str) -> dict[str, list[str]] | None:
    """{"indexed": leading columns of indexes (PK included), "fks": {column: referred table}}."""
    cache_key = (key_prefix, table)
    cached = STATE.catalog.get(cache_key)
    if cached is not None:
        return cached
    if not _SAFE_IDENT.match(table):
        return None
    indexed: set[str] = set()
    fks: dict[str, str] = {}
    leads: dict[str, str] = {}  # index name -> its leading column (PostgreSQL)
    if dialect == "sqlite":
        for row in _raw(dbapi_conn, f'PRAGMA table_info("{table}")')[0]:
            if row[5] == 1:
                indexed.add(row[1])
        for row in _raw(dbapi_conn, f'PRAGMA index_list("{table}")')[0]:
            cols = _raw(dbapi_conn, f'PRAGMA index_info("{row[1]}")')[0]
            lead = [c for c in cols if c[0] == 0]
            if lead and lead[0][2]:
                indexed.add(lead[0][2])
        for row in _raw(dbapi_conn, f'PRAGMA foreign_key_list("{table}")')[0]:
            if row[1] == 0:
                fks[row[3]] = row[2]
    elif dialect == "postgresql":
        rel = f"to_regclass('\"{table}\"')"
        for name, col in _raw(
            dbapi_conn,
            f"SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = {rel}",
        )[0]:
            indexed.add(col)
            leads[name] = col
        for col, ref in _raw(
            dbapi_conn,
            f"SELECT a.attname, c.confrelid::regclass::text FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] WHERE c.contype = 'f' AND c.conrelid = {rel}",
        )[0]:
            fks[col] = ref
    elif dialect in ("mysql", "mariadb"):
        for (col,) in _raw(
            dbapi_conn,
            f"SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' AND SEQ_IN_INDEX = 1",
        )[0]:
            indexed.add(col)
        for col, ref in _raw(
            dbapi_conn,
            f"SELECT COLUMN_NAME, REFERENCED_TABLE_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}' AND REFERENCED_TABLE_NAME IS NOT NULL AND ORDINAL_POSITION = 1",
        )[0]:
            fks[col] = ref
    else:
        return None
    result = {"indexed": sorted(indexed), "fks": fks, "leads": leads}
    STATE.catalog[cache_key] = result
    return result


def _plan_scans(
    dialect: str,
    dbapi_conn: Any,
    statement: str,
    parameters: Any,
    aliases: dict[str, str],
    catalog: dict[str, Any] | None = None,
) -> tuple[set[str], list[str]]:
    """Tables the plan reads in full (or builds an automatic index for), and the plan text."""
    scanned: set[str] = set()
    lines: list[str] = []
    if dialect == "sqlite":
        rows, _ = _raw(dbapi_conn, "EXPLAIN QUERY PLAN " + statement, parameters)
        for row in rows:
            detail = str(row[-1])
            lines.append(detail)
            m = re.match(r"(SCAN|SEARCH) (?:TABLE )?(\w+)(?: AS (\w+))?", detail)
            if not m:
                continue
            name = m.group(3) or m.group(2)
            table = aliases.get(name, aliases.get(m.group(2), m.group(2)))
            if m.group(1) == "SCAN" or "AUTOMATIC" in detail:
                scanned.add(table)
    elif dialect == "postgresql":
        rows, _ = _raw(dbapi_conn, "EXPLAIN (FORMAT JSON) " + statement, parameters)
        plan = rows[0][0] if rows else []
        if isinstance(plan, str):
            plan = json.loads(plan)

        leads: dict[str, str] = {}
        for cat in (catalog or {}).values():
            leads.update((cat or {}).get("leads") or {})

        def walk(node: dict[str, Any], relation: str | None) -> None:
            ntype = node.get("Node Type", "")
            rel = node.get("Relation Name") or relation
            if ntype == "Seq Scan" and rel:
                lines.append(f"Seq Scan on {rel}" + (f" Filter: {node['Filter']}" if node.get("Filter") else ""))
                scanned.add(rel)
            elif (
                ntype in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")
                and rel
                and node.get("Index Name") in leads
            ):
                # with seq scans off, walking a whole index whose leading column the condition does
                # not constrain (the second column of a composite key) is how PostgreSQL says no
                # index can look the filter up
                lead = leads[node["Index Name"]]
                cond = node.get("Index Cond") or ""
                if not re.search(rf"\b{re.escape(lead)}\b", cond):
                    lines.append(
                        f"{ntype} on {rel} using {node['Index Name']}: whole index (leading column {lead} not in the condition)"
                    )
                    scanned.add(rel)
            for child in node.get("Plans", []) or []:
                walk(child, rel if ntype.startswith("Bitmap") else None)

        for item in plan if isinstance(plan, list) else [plan]:
            walk(item.get("Plan", {}), None)
    elif dialect in ("mysql", "mariadb"):
        rows, cols = _raw(dbapi_conn, "EXPLAIN " + statement, parameters)
        for row in rows:
            rec = dict(zip([c.lower() for c in cols], row))
            lines.append(f"table={rec.get('table')} type={rec.get('type')} possible_keys={rec.get('possible_keys')}")
            # type ALL with possible_keys set: an index could serve it, the optimizer preferred a
            # scan (a small table). Only possible_keys NULL means no index can.
            if (
                str(rec.get("type", "")).upper() in ("ALL", "INDEX")
                and rec.get("table")
                and not rec.get("possible_keys")
            ):
                name = str(rec["table"])
                scanned.add(aliases.get(name, name))
    return scanned, lines


def _explain(
    conn: Any, statement: str, parameters: Any, info: dict[str, Any], stack: list[tuple[str, int, str]]
) -> None:
    """Could an index serve this statement? Ask the plan, on the statement's own connection:
    PostgreSQL with ``SET LOCAL enable_seqscan = off`` inside a SAVEPOINT that is rolled back (a
    Seq Scan that remains means no index can serve it, whatever the table's size); SQLite's
    EXPLAIN QUERY PLAN (SCAN or an AUTOMATIC index, against SEARCH ... USING INDEX); MySQL/MariaDB
    EXPLAIN (type ALL/index with possible_keys NULL)."""
    dialect = conn.dialect.name
    STATE.dialects.add(dialect)
    dbapi_conn = conn.connection.dbapi_connection
    if dbapi_conn is None:
        return
    key_prefix = f"{dialect}:{id(conn.engine)}:{conn.engine.url.database}"
    result: dict[str, Any] = {
        "shape": info["shape"],
        "site": stack[0],
        "stack": [list(f) for f in stack[1 : 1 + CALLERS_SHOWN]],
        "dialect": dialect,
        "sql": info["sql"],
    }
    tables = sorted(
        {t for t, _ in info["filters"]} | {t for t, _ in info["joins"]} | {t for t, _, _ in info["expr_filters"]}
    )
    savepoint = dialect == "postgresql"
    if savepoint:
        try:
            _raw(dbapi_conn, "SAVEPOINT optimize_queries_explain")
        except Exception as exc:
            _error("explain needs a transaction on postgresql", exc)
            return
    try:
        catalog = {t: _catalog(dialect, dbapi_conn, t, key_prefix) for t in tables}
        result["catalog"] = catalog
        for t in tables:  # now, while the models exist: a test's own registry is gone by exit
            if t not in STATE.tables:
                STATE.tables[t] = _table_facts(t)
        if savepoint:
            _raw(dbapi_conn, "SET LOCAL enable_seqscan = off")
        scanned, lines = _plan_scans(dialect, dbapi_conn, statement, parameters, info["aliases"], catalog)
        result["scanned"] = sorted(scanned)
        # a custom plan shows bound values as literals ('secret'::text): keep them out of the report
        result["plan"] = [_NUMBER_RE.sub("?", _STRING_RE.sub("?", line))[:300] for line in lines[:20]]
    except Exception as exc:
        _error(f"explain on {dialect}", exc)
        result["error"] = f"{type(exc).__name__}"
    finally:
        if savepoint:
            try:
                _raw(dbapi_conn, "ROLLBACK TO SAVEPOINT optimize_queries_explain")
                _raw(dbapi_conn, "RELEASE SAVEPOINT optimize_queries_explain")
            except Exception as exc:
                _error("explain savepoint", exc)
    STATE.explains.append(result)


# --------------------------------------------------------------------------- relationships (at exit)


def _configured_mappers() -> list[Any]:
    """Every mapper SQLAlchemy has already configured. Read-only: never triggers configuration,
    so a registry the program left unconfigured or broken (a test suite's deliberately invalid
    models) is skipped instead of raising InvalidRequestError ("One or more mappers failed to
    initialize") from ``Mapper.relationships``."""
    from sqlalchemy.orm import mapperlib

    out = []
    for reg in list(mapperlib._all_registries()):
        for mapper in list(reg.mappers):
            if getattr(mapper, "configured", False):
                out.append(mapper)
    return out


def _relationship_hints(table: str, column: str) -> list[str]:
    """Loader options for relationships whose remote side is ``table.column`` (mapped models only)."""
    hints: list[str] = []
    try:
        from sqlalchemy.orm import RelationshipProperty

        for mapper in _configured_mappers():
            for prop in list(mapper._props.values()):
                if not isinstance(prop, RelationshipProperty):
                    continue
                remote = getattr(prop, "remote_side", ()) or ()
                if any(
                    getattr(c, "name", None) == column and getattr(getattr(c, "table", None), "name", None) == table
                    for c in remote
                ):
                    option = "selectinload" if prop.uselist else "joinedload"
                    hints.append(f"{option}({mapper.class_.__name__}.{prop.key})")
    except Exception as exc:
        _error("relationship lookup", exc)
    return sorted(set(hints))[:3]


_TEST_FILE = re.compile(r"(^|[\\/])(tests?|testing)[\\/]|(^|[\\/])(conftest|test_[^\\/]*|[^\\/]*_test)\.py$")


def _table_facts(table: str) -> dict[str, Any]:
    """What the mapped models say about ``table``: the model name, whether the model is defined only
    for tests (in a tests/ folder, a conftest.py or a test_*.py file), and its low-selectivity
    columns (booleans and single-table-inheritance discriminators, where an index rarely helps)."""
    facts: dict[str, Any] = {"model": None, "test_only": False, "low_selectivity": [], "defined_in": None}
    try:
        from sqlalchemy import Boolean
        from sqlalchemy.orm import mapperlib

        for reg in list(mapperlib._all_registries()):
            for mapper in list(reg.mappers):
                local = getattr(mapper, "local_table", None)
                if getattr(local, "name", None) != table:
                    continue
                cls = mapper.class_
                if facts["model"] is None or mapper.inherits is None:
                    facts["model"] = cls.__name__
                    module = sys.modules.get(cls.__module__)
                    path = getattr(module, "__file__", None) if cls.__module__ != "__main__" else None
                    facts["defined_in"] = path
                    facts["test_only"] = bool(path and _TEST_FILE.search(os.path.relpath(path)))
                low = set(facts["low_selectivity"])
                for col in getattr(local, "columns", []):
                    if isinstance(col.type, Boolean):
                        low.add(col.name)
                polymorphic = getattr(mapper, "polymorphic_on", None)
                if polymorphic is not None and getattr(polymorphic, "name", None):
                    low.add(polymorphic.name)
                facts["low_selectivity"] = sorted(low)
    except Exception as exc:
        _error("model lookup", exc)
    return facts


# --------------------------------------------------------------------------- output


def _dump() -> None:
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return
    try:
        with STATE.lock:
            aggs_out = []
            shape_info = {i["shape"]: i for i in STATE.shapes.values()}
            tables: dict[str, dict[str, Any]] = dict(STATE.tables)
            for (shape, site), agg in STATE.aggs.items():
                info = shape_info.get(shape, {})
                item = {k: v for k, v in agg.items() if k not in ("params", "spans")}
                item.update(
                    shape=shape,
                    site=list(site),
                    distinct_params=len(agg["params"]),
                    filters=info.get("filters", []),
                    joins=info.get("joins", []),
                    expr_filters=info.get("expr_filters", []),
                )
                if (
                    agg["kind"] == "SELECT"
                    and not agg["relationship"]
                    and agg["max_span_distinct"] >= 2
                    and len(info.get("filters", [])) == 1
                ):
                    t, c = info["filters"][0]
                    item["relationship_hints"] = _relationship_hints(t, c)
                    if t not in tables:
                        tables[t] = _table_facts(t)
                aggs_out.append(item)
            for ex in STATE.explains:
                for t in ex.get("catalog", {}) or {}:
                    if t not in tables:
                        tables[t] = _table_facts(t)
            data = {
                "pid": os.getpid(),
                "argv": [os.path.basename(a) for a in sys.argv[:3]],
                "statements": STATE.statements,
                "aggregates": aggs_out,
                "explains": STATE.explains,
                "models": {t: f["model"] for t, f in tables.items()},
                "tables": tables,
                "errors": STATE.errors,
                "dropped": STATE.dropped,
                "sqlalchemy": STATE.sa_loaded,
            }
        name = os.path.join(directory, f"{os.getpid()}-{secrets.token_hex(3)}.json")
        tmp = name + ".part"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, default=str)
        os.replace(tmp, name)
    except Exception as exc:
        print(f"optimize-queries: could not write the record file: {type(exc).__name__}: {exc}", file=sys.stderr)


def install() -> None:
    """Install the listeners (sqlalchemy is imported by now)."""
    if STATE.sa_loaded:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import Pool

    STATE.lib_dirs[:] = _library_dirs()
    STATE.frame_class.clear()
    event.listen(Engine, "before_cursor_execute", _before)
    event.listen(Engine, "after_cursor_execute", _after)
    event.listen(Pool, "checkout", _on_checkout)
    event.listen(Session, "do_orm_execute", _on_orm_execute)
    STATE.sa_loaded = True


class _SQLAlchemyImportHook:
    """Meta-path finder: lets ``import sqlalchemy`` finish, then installs the listeners."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "sqlalchemy":
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            try:
                install()
            except Exception as exc:
                print(
                    f"optimize-queries: could not instrument SQLAlchemy: {type(exc).__name__}: {exc}", file=sys.stderr
                )

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def arm() -> None:
    """Called by sitecustomize: read settings, hook the SQLAlchemy import, register the exit dump."""
    explain = os.environ.get(ENV_EXPLAIN, "SELECT").upper()
    STATE.explain_kinds = (
        frozenset() if explain in ("0", "", "OFF") else frozenset(k.strip() for k in explain.split(",") if k.strip())
    )
    slow = os.environ.get(ENV_SLOW_MS)
    try:
        STATE.slow_ms = float(slow) if slow else None
    except ValueError:
        STATE.slow_ms = None
    if "sqlalchemy" in sys.modules:
        install()
    else:
        sys.meta_path.insert(0, _SQLAlchemyImportHook())
    atexit.register(_dump)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=STATE.reset)

"""Static half of optimize-queries: AST checks over Python sources (no code is imported or run).

``check_paths(paths)`` returns a ``StaticResult`` (findings, files checked, files skipped with
their reasons). Each finding is a dict with ``rule``, ``severity``, ``file``, ``line``,
``message``, ``fix``. A comment ``# optimize-queries: ignore[rule]`` (or ``ignore[rule_a, rule_b]``,
or a bare ``ignore``) on the reported line suppresses it.

How it works, and why it is fast: every file is parsed once and walked once (``Scanner``); the walk
files each node of interest under the function that owns it (calls, awaits, assignments, loops,
attribute reads), with the loops that enclose it. The rules (``FileChecker``, one method per rule
id) then read those lists; nothing walks a tree twice. Relationships are collected from every file
given, so pass the whole package (``--static src/``) rather than one file.

Names are resolved through the file's imports: ``text`` is SQL only when it is SQLAlchemy's
(``from sqlalchemy import text``, ``import sqlalchemy as sa`` then ``sa.text``, ``sqlmodel.text``);
an unresolved ``text`` (an HTML helper, a local function) is not SQL. The checks stay inside one
function; when a question cannot be decided there (a statement built here and executed elsewhere)
they report nothing.
"""

from __future__ import annotations

import ast
import gc
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from scriptlib import call_kwarg

SEVERITY = {
    "lazy_load_in_async": "error",
    "session_shared_across_tasks": "error",
    "text_with_fstring": "error",
    "commit_after_yield": "error",
    "unawaited_session_call": "error",
    "queuepool_on_async_engine": "error",
    "joinedload_collection_without_unique": "error",
    "query_in_loop": "warning",
    "values_list_bulk_insert": "warning",
    "unbounded_list_query": "warning",
    "relationship_without_lazy": "warning",
    "legacy_declarative_base": "warning",
}
STATIC_RULES = tuple(SEVERITY)

SESSION_METHODS = {
    "execute",
    "exec",
    "scalars",
    "scalar",
    "get",
    "get_one",
    "stream",
    "stream_scalars",
    "refresh",
    "merge",
}
RESULT_METHODS = {"execute", "exec", "scalars", "stream", "stream_scalars"}
# AsyncSession / AsyncConnection methods that are coroutines (add, add_all, expunge, expire, begin are not)
ASYNC_SESSION_COROUTINES = SESSION_METHODS | {
    "delete",
    "commit",
    "rollback",
    "flush",
    "close",
    "aclose",
    "invalidate",
    "reset",
    "run_sync",
    "connection",
    "exec_driver_sql",
}
LOADER_OPTIONS = {
    "selectinload",
    "joinedload",
    "subqueryload",
    "immediateload",
    "contains_eager",
    "lazyload",
    "raiseload",
    "defaultload",
}
EAGER_LAZY_VALUES = {"selectin", "joined", "subquery", "immediate", "noload", "dynamic", "write_only", "<dynamic>"}
NOT_A_DB_SESSION = re.compile(r"(backend|store|storage|cache|client|middleware|http|redis|cookie)", re.I)
SESSIONISH = re.compile(r"(session|^db$|^sess$|^s$|^conn$|^connection$|^uow$)", re.I)
DDL_HEAD = re.compile(
    r"\s*(CREATE|DROP|ALTER|TRUNCATE|GRANT|REVOKE|SET|RESET|KILL|VACUUM|ANALYZE|PRAGMA|SAVEPOINT|RELEASE|ROLLBACK TO|LOCK|COMMENT|USE|SHOW|ATTACH|DETACH|REFRESH|REINDEX|CLUSTER|NOTIFY|LISTEN)\b",
    re.I,
)
IGNORE_RE = re.compile(r"#\s*optimize-queries:\s*ignore(?:\[([^\]]*)\])?")
EXCLUDED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".tox",
    ".nox",
    ".mypy_cache",
    "site-packages",
    "build",
    "dist",
}
TEXT_NAMES = {
    "sqlalchemy.text",
    "sqlalchemy.sql.text",
    "sqlalchemy.sql.expression.text",
    "sqlalchemy.sql.elements.text",
    "sqlalchemy.sql._elements_constructors.text",
    "sqlmodel.text",
    "sqlmodel.sql.expression.text",
}
BATCH_NAME = re.compile(r"batch|chunk|page|partition|slice|window", re.I)
FIXED_SET_NAME = re.compile(r"table|model|entit|attempt|retr(y|ies)|tries", re.I)
PAGING_CALLS = {"offset", "slice", "fetch", "in_", "any_", "yield_per", "partitions", "fetchmany"}
PAGINATED_PARAM = re.compile(
    r"^(limit|offset|page|page_size|per_page|size|cursor|after|before|pagination|paginator|params|skip|take|first|last)$",
    re.I,
)
PAGINATED_ANNOTATION = re.compile(r"Pagination|Paginat|Page|Cursor|Limit|Offset", re.I)
LIMITING_CALLS = {
    "limit",
    "slice",
    "fetch",
    "fetchmany",
    "partitions",
    "offset",
    "paginate",
    "yield_per",
    "first",
    "one",
    "scalar_one",
    "one_or_none",
    "scalar_one_or_none",
    "distinct",
    "group_by",
    "in_",
}
LOOP_TYPES = (ast.For, ast.AsyncFor)
COMP_TYPES = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
SCOPE_TYPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass
class Relationship:
    cls: str
    name: str
    lazy: str | None
    collection: bool
    line: int


@dataclass
class Project:
    relationships: dict[str, list[Relationship]] = field(default_factory=dict)
    is_async: bool = False
    dependencies_without_scope: set[str] = field(default_factory=set)
    implicit_lazy: set[int] = field(default_factory=set)  # relationship() calls typed WriteOnlyMapped/DynamicMapped
    lazy_relationships: dict[str, list[Relationship]] = field(default_factory=dict)  # set by finish()
    collections: set[str] = field(default_factory=set)

    def finish(self) -> None:
        """After every file is scanned: the relationship names that load lazily, and the collections."""
        self.lazy_relationships = {
            n: items
            for n, items in self.relationships.items()
            if any((r.lazy or "select") not in EAGER_LAZY_VALUES for r in items)
        }
        self.collections = {n for n, items in self.relationships.items() if any(r.collection for r in items)}


@dataclass
class Scope:
    """One function (or the module body): the nodes the rules read, each with its enclosing loops."""

    node: ast.AST | None
    calls: list[tuple[ast.Call, tuple[ast.AST, ...]]] = field(default_factory=list)
    awaits: list[tuple[ast.Await, tuple[ast.AST, ...]]] = field(default_factory=list)
    binds: list[ast.AST] = field(default_factory=list)  # Assign, AnnAssign, For, AsyncFor, comprehension: source order
    name_attrs: list[ast.Attribute] = field(default_factory=list)
    yields: list[int] = field(default_factory=list)

    @property
    def is_async(self) -> bool:
        return isinstance(self.node, ast.AsyncFunctionDef)

    def assigned(self) -> dict[str, list[ast.expr]]:
        """name -> every value assigned to it in this scope (``x = ...``, ``x: T = ...``, ``x += ...``)."""
        cached = getattr(self, "_assigned", None)
        if cached is None:
            cached = {}
            for n in self.binds:
                if isinstance(n, ast.Assign):
                    for t in n.targets:
                        if isinstance(t, ast.Name):
                            cached.setdefault(t.id, []).append(n.value)
                elif (
                    isinstance(n, (ast.AnnAssign, ast.AugAssign))
                    and isinstance(n.target, ast.Name)
                    and n.value is not None
                ):
                    cached.setdefault(n.target.id, []).append(n.value)
            self._assigned = cached
        return cached

    def expanded(self, expr: ast.AST, depth: int = 4) -> list[ast.AST]:
        """``expr`` plus the values assigned (in this scope) to the names it uses, transitively."""
        out = [expr]
        seen: set[str] = set()
        frontier = [expr]
        assigned = self.assigned()
        for _ in range(depth):
            nxt: list[ast.AST] = []
            for e in frontier:
                for sub in ast.walk(e):
                    if isinstance(sub, ast.Name) and sub.id not in seen and sub.id in assigned:
                        seen.add(sub.id)
                        nxt.extend(assigned[sub.id])
            if not nxt:
                break
            out.extend(nxt)
            frontier = nxt
        return out


# --------------------------------------------------------------------------- helpers


def call_name(node: ast.AST) -> str | None:
    """``foo`` for ``foo(...)`` and ``x.foo(...)``."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def terminal_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def called_attrs(exprs: list[ast.AST]) -> set[str]:
    """Names of every function/method called anywhere in ``exprs``."""
    out: set[str] = set()
    for e in exprs:
        for sub in ast.walk(e):
            if isinstance(sub, ast.Call):
                name = call_name(sub)
                if name:
                    out.add(name)
    return out


def is_session_call(node: ast.AST) -> bool:
    """``await <session>.execute/scalars/exec/get/...(...)``"""
    if not (
        isinstance(node, ast.Await) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)
    ):
        return False
    func = node.value.func
    if func.attr not in SESSION_METHODS:
        return False
    receiver = terminal_name(func.value)
    if receiver is None:
        return False
    if func.attr in ("get", "merge", "refresh", "stream") and "session" not in receiver.lower():
        return False  # httpx/aiohttp clients have get/stream too
    if NOT_A_DB_SESSION.search(receiver):
        return False  # an HTTP session store / cache / client, not an AsyncSession
    return bool(SESSIONISH.search(receiver))


def is_awaitable_attr(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Await)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Attribute)
        and node.value.value.attr == "awaitable_attrs"
    )


def is_fixed_collection(node: ast.AST, scope: Scope | None, depth: int = 0) -> bool:
    """A literal tuple/list/set, a module constant (``MIGRATIONS``), or a name bound only to those."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return True
    if isinstance(node, ast.IfExp):
        return is_fixed_collection(node.body, scope, depth) and is_fixed_collection(node.orelse, scope, depth)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("sorted", "reversed", "tuple", "list", "set")
        and len(node.args) == 1
    ):  # sorted((src, dst)): the two rows a transfer locks in key order
        return is_fixed_collection(node.args[0], scope, depth)
    if isinstance(node, (ast.Name, ast.Attribute)):
        name = terminal_name(node) or ""
        if name.isupper() and len(name) > 1:
            return True
        if isinstance(node, ast.Name) and scope is not None and depth < 3:
            values = scope.assigned().get(node.id)
            return bool(values) and all(is_fixed_collection(v, scope, depth + 1) for v in values)
    return False


def is_bounded_loop(loop: ast.AST, scope: Scope | None = None) -> bool:
    """Loops whose item count is not the data's: batches/pages/chunks, a literal tuple of models or
    statements, a constant ``range``, retry attempts, the tables of a metadata (test fixtures)."""
    if isinstance(loop, ast.comprehension):
        it, target = loop.iter, loop.target
    elif isinstance(loop, LOOP_TYPES):
        it, target = loop.iter, loop.target
    else:
        return False
    if is_fixed_collection(it, scope):
        return True  # for model in (User, Post): ... - written in the source, not read from the database
    if isinstance(it, ast.Call) and call_name(it) == "range":
        if len(it.args) == 3 or all(isinstance(a, ast.Constant) for a in it.args):
            return True
    names = [terminal_name(target) or ""]
    node = it
    while isinstance(node, ast.Call):
        names.append(call_name(node) or "")
        node = node.args[0] if node.args else node.func
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
    if isinstance(node, (ast.Name, ast.Attribute)):
        names.append(terminal_name(node) or "")
    if isinstance(it, ast.Subscript):
        names.append(terminal_name(it.value) or "")
        if isinstance(it.slice, ast.Slice):
            return True  # for x in items[:3]
    if any(BATCH_NAME.search(n) for n in names if n):
        return True
    return any(FIXED_SET_NAME.search(n) for n in names if n)


def is_batched_call(node: ast.Await, scope: Scope) -> bool:
    """The awaited query already covers many rows or pages: ``.in_(...)``, LIMIT/OFFSET, or
    executemany ``execute(stmt, rows)``."""
    call = node.value
    if not isinstance(call, ast.Call):
        return False
    if (
        call_name(call) == "merge"
        and isinstance(call_kwarg(call, "load"), ast.Constant)
        and not call_kwarg(call, "load").value
    ):  # type: ignore[union-attr]
        return True  # merge(obj, load=False) does not query
    exprs = scope.expanded(call.args[0]) if call.args else []
    for e in exprs:
        sql = e.args[0] if isinstance(e, ast.Call) and call_name(e) == "text" and e.args else e
        head = sql.values[0] if isinstance(sql, ast.JoinedStr) and sql.values else sql
        text = const_str(head) or ""
        if DDL_HEAD.match(text) or re.match(r"\s*(DELETE FROM|TRUNCATE)\b", text, re.I):
            return True  # DDL, or clearing a table, per item: maintenance, not an N+1 read
    if called_attrs([call, *exprs[1:]]) & PAGING_CALLS:
        return True
    for e in [call, *exprs[1:]]:
        for sub in ast.walk(e):
            if isinstance(sub, ast.Name) and re.search(r"batch|chunk", sub.id, re.I):
                return True  # insert(M).values(batch) flushed once per batch inside a per-row loop
    if (
        call_name(call) == "execute"
        and len(call.args) >= 2
        and isinstance(call.args[1], (ast.List, ast.ListComp, ast.Name, ast.Subscript))
    ):
        second = call.args[1]
        return not (
            isinstance(second, ast.Name)
            and not re.search(r"s$|rows|items|batch|chunk|records|values|data|params", second.id)
        )
    return False


def annotation_is_collection(annotation: ast.AST | None) -> bool:
    if annotation is None:
        return False
    text = ast.unparse(annotation)
    return bool(re.search(r"\b(list|List|set|Set|Sequence|WriteOnlyMapped|DynamicMapped)\[", text))


# --------------------------------------------------------------------------- one walk per file


LEAVES = frozenset(
    {
        ast.Name,
        ast.Constant,
        ast.Load,
        ast.Store,
        ast.Del,
        ast.alias,
        ast.Pass,
        ast.Break,
        ast.Continue,
        ast.Add,
        ast.Sub,
        ast.Mult,
        ast.Div,
        ast.Mod,
        ast.Eq,
        ast.NotEq,
        ast.Lt,
        ast.Gt,
        ast.LtE,
        ast.GtE,
        ast.Is,
        ast.IsNot,
        ast.In,
        ast.NotIn,
        ast.And,
        ast.Or,
        ast.Not,
        ast.USub,
        ast.BitOr,
        ast.BitAnd,
        ast.FloorDiv,
    }
)


def mentions_sessionmaker(annotation: ast.AST) -> bool:
    for sub in ast.walk(annotation):
        if isinstance(sub, ast.Name) and "sessionmaker" in sub.id.lower():
            return True
        if isinstance(sub, ast.Attribute) and "sessionmaker" in sub.attr.lower():
            return True
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "sessionmaker" in sub.value.lower():
            return True
    return False


class Scanner:
    """Walks one tree once: imports, relationships, FastAPI dependencies, and per-scope node lists."""

    def __init__(self, tree: ast.Module, project: Project, *, factories_possible: bool = True) -> None:
        self.project = project
        self.factories_possible = factories_possible  # the source mentions "sessionmaker" at all
        self.imports: dict[str, str] = {}  # local name -> dotted origin ("sa" -> "sqlalchemy")
        self.module = Scope(None)
        self.scopes: list[Scope] = []
        self.calls: list[ast.Call] = []  # every call in the file
        self.factories: set[str] = set()  # names bound to a sessionmaker
        self.walk(tree, self.module, ())

    def walk(self, node: ast.AST, scope: Scope, loops: tuple[ast.AST, ...]) -> None:
        for name in node._fields:
            value = getattr(node, name, None)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        self.visit(item, scope, loops)
            elif isinstance(value, ast.AST):
                self.visit(value, scope, loops)

    def visit(self, node: ast.AST, scope: Scope, loops: tuple[ast.AST, ...]) -> None:
        t = type(node)
        if t in LEAVES:
            return
        if t is ast.Call:
            scope.calls.append((node, loops))  # type: ignore[arg-type]
            self.calls.append(node)  # type: ignore[arg-type]
        elif t is ast.Attribute:
            if type(node.value) is ast.Name:  # type: ignore[attr-defined]
                scope.name_attrs.append(node)  # type: ignore[arg-type]
        elif t is ast.Await:
            scope.awaits.append((node, loops))  # type: ignore[arg-type]
        elif t in (ast.Assign, ast.AnnAssign, ast.AugAssign):
            scope.binds.append(node)
            if (
                t is ast.AnnAssign
                and self.factories_possible
                and isinstance(node.target, ast.Name)
                and mentions_sessionmaker(node.annotation)
            ):  # type: ignore[attr-defined]
                self.factories.add(node.target.id)  # type: ignore[attr-defined]
            value = node.value  # type: ignore[attr-defined]
            if isinstance(value, ast.Call) and "sessionmaker" in (call_name(value) or "").lower():
                for target in getattr(node, "targets", [getattr(node, "target", None)]):
                    name = terminal_name(target) if target is not None else None
                    if name:
                        self.factories.add(name)
        elif t is ast.For or t is ast.AsyncFor:
            scope.binds.append(node)
            self.visit(node.target, scope, loops)  # type: ignore[attr-defined]
            self.visit(node.iter, scope, loops)  # type: ignore[attr-defined]
            inner = loops + (node,)
            for stmt in node.body + node.orelse:  # type: ignore[attr-defined]
                self.visit(stmt, scope, inner)
            return
        elif t in COMP_TYPES:
            inner = loops
            for gen in node.generators:  # type: ignore[attr-defined]
                scope.binds.append(gen)
                self.visit(gen.iter, scope, inner)
                inner = inner + (gen,)
                for cond in gen.ifs:
                    self.visit(cond, scope, inner)
            if t is ast.DictComp:
                self.visit(node.key, scope, inner)  # type: ignore[attr-defined]
                self.visit(node.value, scope, inner)  # type: ignore[attr-defined]
            else:
                self.visit(node.elt, scope, inner)  # type: ignore[attr-defined]
            return
        elif t is ast.FunctionDef or t is ast.AsyncFunctionDef:
            if self.factories_possible:
                for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:  # type: ignore[attr-defined]
                    if arg.annotation is not None and mentions_sessionmaker(arg.annotation):
                        self.factories.add(arg.arg)
            for d in node.decorator_list:  # type: ignore[attr-defined]
                self.visit(d, scope, loops)
            for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:  # type: ignore[attr-defined]
                self.visit(default, scope, loops)
            inner_scope = Scope(node)
            self.scopes.append(inner_scope)
            for stmt in node.body:  # type: ignore[attr-defined]
                self.visit(stmt, inner_scope, ())
            return
        elif t is ast.Lambda:
            self.visit(node.body, Scope(node), ())  # type: ignore[attr-defined]
            return
        elif t is ast.ClassDef:
            self.class_body(node)  # type: ignore[arg-type]
        elif t is ast.Yield or t is ast.YieldFrom:
            scope.yields.append(node.lineno)  # type: ignore[attr-defined]
        elif t is ast.Import:
            for a in node.names:  # type: ignore[attr-defined]
                if a.asname:
                    self.imports[a.asname] = a.name
                else:
                    top = a.name.split(".", 1)[0]
                    self.imports[top] = top
                if a.name.startswith("sqlalchemy.ext.asyncio") or a.name.startswith("sqlmodel.ext.asyncio"):
                    self.project.is_async = True
            return
        elif t is ast.ImportFrom:
            module = node.module or ""  # type: ignore[attr-defined]
            if node.level == 0:  # type: ignore[attr-defined]
                for a in node.names:  # type: ignore[attr-defined]
                    self.imports[a.asname or a.name] = f"{module}.{a.name}"
            if module.startswith(("sqlalchemy.ext.asyncio", "sqlmodel.ext.asyncio")) or any(
                a.name == "asyncio" for a in node.names if module in ("sqlalchemy.ext", "sqlmodel.ext")
            ):  # type: ignore[attr-defined]
                self.project.is_async = True
            return
        self.walk(node, scope, loops)

    def class_body(self, node: ast.ClassDef) -> None:
        for stmt in node.body:
            target, value, annotation = None, None, None
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                target, value, annotation = stmt.target.id, stmt.value, stmt.annotation
            elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                target, value = stmt.targets[0].id, stmt.value
            if not (target and isinstance(value, ast.Call)):
                continue
            name = call_name(value)
            if name == "relationship":
                lazy = const_str(call_kwarg(value, "lazy"))
            elif name == "Relationship":  # SQLModel: Relationship(sa_relationship_kwargs={"lazy": ...})
                lazy = sqlmodel_lazy(value)
            else:
                continue
            if annotation is not None and re.search(r"\b(WriteOnlyMapped|DynamicMapped)\[", ast.unparse(annotation)):
                lazy = lazy or "write_only"  # the annotation sets the loader strategy
                self.project.implicit_lazy.add(id(value))
            uselist = call_kwarg(value, "uselist")
            collection = annotation_is_collection(annotation)
            if isinstance(uselist, ast.Constant):
                collection = bool(uselist.value)
            self.project.relationships.setdefault(target, []).append(
                Relationship(node.name, target, lazy, collection, stmt.lineno)
            )

    def qualified(self, node: ast.AST) -> str | None:
        """``sqlalchemy.text`` for ``sa.text`` when the file did ``import sqlalchemy as sa``; None when unknown."""
        if isinstance(node, ast.Name):
            return self.imports.get(node.id)
        if isinstance(node, ast.Attribute):
            base = self.qualified(node.value)
            return f"{base}.{node.attr}" if base else None
        return None


def sqlmodel_lazy(call: ast.Call) -> str | None:
    """The ``lazy`` given to SQLModel's ``Relationship()``: in ``sa_relationship_kwargs`` or ``sa_relationship=relationship(...)``."""
    kwargs = call_kwarg(call, "sa_relationship_kwargs")
    if isinstance(kwargs, ast.Dict):
        for k, v in zip(kwargs.keys, kwargs.values):
            if const_str(k) == "lazy":
                return const_str(v) or "<dynamic>"
    elif isinstance(kwargs, ast.Call) and call_name(kwargs) == "dict":
        lazy = call_kwarg(kwargs, "lazy")
        if lazy is not None:
            return const_str(lazy) or "<dynamic>"
    elif kwargs is not None:
        return "<dynamic>"  # a name: cannot see inside, assume the user set it
    inner = call_kwarg(call, "sa_relationship")
    if isinstance(inner, ast.Call):
        return const_str(call_kwarg(inner, "lazy")) or "<dynamic>"
    return None


def collect_dependencies(scan: Scanner) -> None:
    for node in scan.calls:
        if call_name(node) == "Depends" and node.args:
            scope = const_str(call_kwarg(node, "scope"))
            dep = terminal_name(node.args[0])
            if dep and scope != "function":
                scan.project.dependencies_without_scope.add(dep)


# --------------------------------------------------------------------------- per-file checks


class FileChecker:
    """The rules, one method per rule id, over one scanned file."""

    def __init__(self, path: str, scan: Scanner, project: Project) -> None:
        self.path = path
        self.scan = scan
        self.project = project
        self.findings: list[dict[str, Any]] = []

    def add(self, rule: str, node: ast.AST, message: str, fix: str) -> None:
        self.findings.append(
            {
                "rule": rule,
                "severity": SEVERITY[rule],
                "file": self.path,
                "line": getattr(node, "lineno", 0),
                "message": message,
                "fix": fix,
            }
        )

    def run(self) -> list[dict[str, Any]]:
        self.legacy_declarative_base()
        self.relationship_without_lazy()
        self.queuepool_on_async_engine()
        self.session_shared_across_tasks()
        rels, collections = self.project.lazy_relationships, self.project.collections
        for scope in [self.scan.module, *self.scan.scopes]:
            self.query_in_loop(scope)
            self.text_with_fstring(scope)
            self.values_list_bulk_insert(scope)
            if scope.node is None:
                continue
            self.joinedload_collection_without_unique(scope, collections)
            if scope.is_async:
                self.lazy_load_in_async(scope, rels)
                self.commit_after_yield(scope)
                self.unawaited_session_call(scope)
                self.unbounded_list_query(scope)
        return self.findings

    # -- module-wide call checks
    def legacy_declarative_base(self) -> None:
        for node in self.scan.calls:
            if call_name(node) == "declarative_base":
                self.add(
                    "legacy_declarative_base",
                    node,
                    "declarative_base() is the legacy 1.x API (MovedIn20Warning in 2.x)",
                    "class Base(AsyncAttrs, DeclarativeBase): ... (see templates/base_model.py)",
                )

    def relationship_without_lazy(self) -> None:
        if not self.project.is_async:
            return
        for node in self.scan.calls:
            name = call_name(node)
            if name == "relationship":
                missing = call_kwarg(node, "lazy") is None and id(node) not in self.project.implicit_lazy
            elif name == "Relationship" and (self.scan.qualified(node.func) or "sqlmodel.Relationship").startswith(
                "sqlmodel"
            ):
                missing = sqlmodel_lazy(node) is None and id(node) not in self.project.implicit_lazy
            else:
                continue
            if missing:
                sqlmodel = name == "Relationship"
                self.add(
                    "relationship_without_lazy",
                    node,
                    f"{name}() without lazy=: the default lazy='select' loads on attribute access, which in async code raises MissingGreenlet",
                    'Relationship(..., sa_relationship_kwargs={"lazy": "raise"}) and load it with selectinload()'
                    if sqlmodel
                    else 'relationship(..., lazy="raise") and load it with selectinload()/joinedload(), or lazy="selectin" when it is always needed',
                )

    def queuepool_on_async_engine(self) -> None:
        for node in self.scan.calls:
            if call_name(node) == "create_async_engine":
                pool = call_kwarg(node, "poolclass")
                if pool is not None and terminal_name(pool) in ("QueuePool", "SingletonThreadPool"):
                    self.add(
                        "queuepool_on_async_engine",
                        node,
                        f"{terminal_name(pool)} is not asyncio-compatible: create_async_engine() rejects it",
                        "drop poolclass (the default AsyncAdaptedQueuePool pools) or use poolclass=NullPool behind an external pooler",
                    )

    def is_session_object(self, name: str) -> bool:
        """A name that holds an AsyncSession (not a sessionmaker, a factory, or a class)."""
        low = name.lower()
        if "session" not in low or name in self.scan.factories:
            return False
        if name[:1].isupper():
            return False  # Session, SessionLocal, AsyncSessionLocal: a sessionmaker or a class
        return not low.endswith(("maker", "factory", "local", "_cls", "class", "_scope", "manager", "pool", "provider"))

    def session_shared_across_tasks(self) -> None:
        for node in self.scan.calls:
            name = call_name(node)
            if name not in ("gather", "create_task", "ensure_future", "start_soon"):
                continue
            sessions: list[str] = []
            method_uses: dict[str, int] = {}  # gather(session.scalar(a), session.scalar(b))
            awaitables = 0
            for arg in node.args:
                inner = arg.value if isinstance(arg, ast.Starred) else arg
                repeated = isinstance(arg, ast.Starred) or isinstance(arg, ast.GeneratorExp)
                awaitables += 2 if repeated else 1
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Call):
                        for a in list(sub.args) + [k.value for k in sub.keywords]:
                            t = terminal_name(a)
                            if t and self.is_session_object(t):
                                sessions.append(t)
                        if isinstance(sub.func, ast.Attribute) and sub.func.attr in SESSION_METHODS:
                            t = terminal_name(sub.func.value)
                            if t and self.is_session_object(t):
                                method_uses[t] = method_uses.get(t, 0) + (2 if repeated else 1)
            # one session's methods awaited by two or more of the gathered tasks at once
            sessions += [t for t, uses in method_uses.items() if uses >= 2]
            if not sessions or (name == "gather" and awaitables < 2):
                continue
            self.add(
                "session_shared_across_tasks",
                node,
                f"one AsyncSession ({sessions[0]}) is used by concurrent tasks via {name}(): a session is not safe for concurrent use",
                "give each task its own session: pass the sessionmaker and `async with sessionmaker() as session:` inside the task",
            )

    # -- loops
    def query_in_loop(self, scope: Scope) -> None:
        for node, loops in scope.awaits:
            if not loops or is_bounded_loop(loops[-1], scope):
                continue  # the innermost loop decides: one query per batch/page/table is the fix, not the bug
            if (is_session_call(node) or is_awaitable_attr(node)) and not is_batched_call(node, scope):
                what = ast.unparse(node)[:80]
                self.add(
                    "query_in_loop",
                    node,
                    f"query inside a loop ({what}): one round trip per item (N+1)",
                    "load everything before the loop in one query: .where(Model.key.in_(keys)), or eager-load with selectinload(Parent.children)",
                )

    # -- relationship reads on ORM results
    def lazy_load_in_async(self, scope: Scope, rels: dict[str, list[Relationship]]) -> None:
        if not rels or not scope.name_attrs or not any(n.attr in rels for n in scope.name_attrs):
            return
        loaded: set[str] = set()
        for node, _ in scope.calls:
            name = call_name(node)
            if name in LOADER_OPTIONS:
                for arg in node.args:
                    for sub in ast.walk(arg):
                        if isinstance(sub, ast.Attribute):
                            loaded.add(sub.attr)
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            loaded.add(sub.value)
            elif name == "refresh":
                for arg in list(node.args[1:]) + [k.value for k in node.keywords]:
                    for sub in ast.walk(arg):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            loaded.add(sub.value)
        orm_names: set[str] = set()
        result_names: set[str] = set()

        def from_query(value: ast.AST | None) -> str | None:
            """'objects', 'result' or None for an expression."""
            if value is None:
                return None
            if isinstance(value, ast.Name):
                return "objects" if value.id in orm_names else ("result" if value.id in result_names else None)
            if isinstance(value, ast.Await) and is_session_call(value):
                method = value.value.func.attr  # type: ignore[attr-defined]
                return "objects" if method in ("get", "get_one", "scalar", "merge") else "result"
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
                if value.func.attr in (
                    "all",
                    "first",
                    "one",
                    "one_or_none",
                    "scalar",
                    "scalar_one",
                    "scalar_one_or_none",
                    "unique",
                    "scalars",
                    "fetchall",
                ):
                    inner = from_query(value.func.value)
                    if inner:
                        return (
                            "objects"
                            if value.func.attr
                            in (
                                "all",
                                "first",
                                "one",
                                "one_or_none",
                                "scalar_one",
                                "scalar_one_or_none",
                                "scalar",
                                "fetchall",
                            )
                            else "result"
                        )
            if isinstance(value, ast.Call) and call_name(value) in ("list", "tuple", "sorted") and value.args:
                return "objects" if from_query(value.args[0]) else None
            return None

        for n in scope.binds:
            if isinstance(n, (ast.Assign, ast.AnnAssign)):
                kind = from_query(n.value)
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                for t in targets:
                    if isinstance(t, ast.Name):
                        orm_names.discard(t.id)
                        result_names.discard(t.id)
                        if kind == "objects":
                            orm_names.add(t.id)
                        elif kind == "result":
                            result_names.add(t.id)
            elif isinstance(n, (ast.For, ast.AsyncFor, ast.comprehension)):
                kind = from_query(n.iter)
                if kind and isinstance(n.target, ast.Name):
                    orm_names.add(n.target.id)
        if not orm_names:
            return
        reported: set[tuple[str, str]] = set()
        for node in scope.name_attrs:
            owner_name = node.value.id  # type: ignore[attr-defined]
            if (
                isinstance(node.ctx, ast.Load)
                and owner_name in orm_names
                and node.attr in rels
                and node.attr not in loaded
                and (owner_name, node.attr) not in reported
            ):
                reported.add((owner_name, node.attr))
                owner = rels[node.attr][0].cls
                self.add(
                    "lazy_load_in_async",
                    node,
                    f"{owner_name}.{node.attr} reads relationship {owner}.{node.attr}, which the query did not eager-load (MissingGreenlet, or an error with lazy='raise')",
                    f".options(selectinload({owner}.{node.attr})) on the query, or `await session.refresh({owner_name}, [\"{node.attr}\"])` for a single object (awaitable_attrs fails on lazy='raise')",
                )

    # -- joinedload on a collection needs Result.unique()
    def joinedload_collection_without_unique(self, scope: Scope, collections: set[str]) -> None:
        hits = [
            node
            for node, _ in scope.calls
            if call_name(node) == "joinedload"
            and node.args
            and isinstance(node.args[0], ast.Attribute)
            and node.args[0].attr in collections
        ]
        if not hits or any(call_name(node) == "unique" for node, _ in scope.calls):
            return
        # Decidable only when this function runs the statement and reads its rows; a statement
        # returned or handed to a helper (a repository's get_all()/paginate() that calls .unique())
        # cannot be judged here: report nothing.
        executed: set[int] = set()
        for node, _ in scope.awaits:
            call = node.value
            if not (
                is_session_call(node)
                and isinstance(call, ast.Call)
                and call.func.attr in ("execute", "exec", "scalars", "scalar", "stream", "stream_scalars")
            ):  # type: ignore[attr-defined]
                continue
            for expr in scope.expanded(call.args[0]) if call.args else []:
                for sub in ast.walk(expr):
                    if isinstance(sub, ast.Call):
                        executed.add(id(sub))
        for node in hits:
            if id(node) not in executed:
                continue
            attr = ast.unparse(node.args[0])
            self.add(
                "joinedload_collection_without_unique",
                node,
                f"joinedload({attr}) joins a collection: rows repeat per child and SQLAlchemy 2.x refuses the result without .unique()",
                "call .unique() on the result: (await session.scalars(stmt)).unique().all(), or use selectinload() for collections",
            )

    # -- SQL built by string formatting
    def text_with_fstring(self, scope: Scope) -> None:
        text_calls = [node for node, _ in scope.calls if node.args and self.scan.qualified(node.func) in TEXT_NAMES]
        if not text_calls:
            return
        formatted: dict[str, list[tuple[int, bool]]] = {}
        for n in scope.binds:
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        formatted.setdefault(t.id, []).append((n.lineno, is_formatted(n.value, formatted, n.lineno)))
            elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name) and isinstance(n.op, ast.Add):
                formatted.setdefault(n.target.id, []).append(
                    (n.lineno, is_formatted(n.value, formatted, n.lineno) or latest(formatted, n.target.id, n.lineno))
                )
        for n in text_calls:
            if is_formatted(n.args[0], formatted, n.lineno):
                self.add(
                    "text_with_fstring",
                    n,
                    "SQL built by string formatting inside text(): values become SQL (injection, no statement cache)",
                    'use bound parameters: text("... WHERE id = :id") and pass {"id": value} to execute(); identifiers from a fixed allow-list',
                )

    # -- insert(...).values(list)
    def values_list_bulk_insert(self, scope: Scope) -> None:
        candidates = [
            n for n, _ in scope.calls if isinstance(n.func, ast.Attribute) and n.func.attr == "values" and n.args
        ]
        if not candidates:
            return
        lists = {
            name
            for name, values in scope.assigned().items()
            if any(isinstance(v, (ast.List, ast.ListComp)) for v in values)
        }
        for n in candidates:
            base = n.func.value  # type: ignore[attr-defined]
            while isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute):
                base = base.func.value
            if not (isinstance(base, ast.Call) and call_name(base) == "insert"):
                continue
            arg = n.args[0]
            if isinstance(arg, ast.Name) and BATCH_NAME.search(arg.id):
                continue  # a batch the code bounds itself
            if isinstance(arg, (ast.List, ast.ListComp)) or (isinstance(arg, ast.Name) and arg.id in lists):
                self.add(
                    "values_list_bulk_insert",
                    n,
                    "insert(...).values(list) renders one statement with a bind parameter per value: hits the backend's parameter limit and skips batching",
                    "await session.execute(insert(Model), rows)  # executemany / insertmanyvalues, batched by SQLAlchemy",
                )

    # -- FastAPI dependency committing after yield
    def commit_after_yield(self, scope: Scope) -> None:
        fn = scope.node
        if fn.name not in self.project.dependencies_without_scope or not scope.yields:  # type: ignore[union-attr]
            return
        first_yield = min(scope.yields)
        for n, _ in scope.calls:
            if call_name(n) == "commit" and n.lineno > first_yield:
                self.add(
                    "commit_after_yield",
                    n,
                    f'dependency {fn.name}() commits after yield but is used as Depends({fn.name}) without scope="function": the response is sent before the commit, so a failed commit is lost',  # type: ignore[union-attr]
                    f'Depends({fn.name}, scope="function") (FastAPI >= 0.121), or commit inside the endpoint',  # type: ignore[union-attr]
                )
                return

    # -- coroutines of an async session dropped without await
    def unawaited_session_call(self, scope: Scope) -> None:
        """``session.delete(obj)`` as a statement in an async function, on a name that is an
        AsyncSession/AsyncConnection there: the coroutine is created and dropped, nothing runs."""
        if not self.project.is_async:
            return
        statements = list(own_statements(scope.node))
        async_names: set[str] = set()  # names this function shows to be async sessions/connections
        for node, _ in scope.awaits:
            value = node.value
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute):
                name = terminal_name(value.func.value)
                if name and isinstance(value.func.value, ast.Name):
                    async_names.add(name)
        args = scope.node.args  # type: ignore[union-attr]
        for arg in args.args + args.kwonlyargs + args.posonlyargs:
            if arg.annotation is not None:
                text_ = ast.unparse(arg.annotation)
                if "Async" in text_ or (text_.endswith("Dep") and "session" in text_.lower()):
                    async_names.add(arg.arg)
        sync_names: set[str] = set()  # also bound by a plain `with` here (a sync engine in another branch)
        for stmt in statements:
            if isinstance(stmt, (ast.AsyncWith, ast.With)):
                for item in stmt.items:
                    if isinstance(item.optional_vars, ast.Name):
                        (async_names if isinstance(stmt, ast.AsyncWith) else sync_names).add(item.optional_vars.id)
        async_names -= sync_names
        for stmt in statements:
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
                continue
            func = stmt.value.func
            if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
                continue
            name = func.value.id
            if (
                func.attr in ASYNC_SESSION_COROUTINES
                and name in async_names
                and SESSIONISH.search(name)
                and not NOT_A_DB_SESSION.search(name)
                and name not in self.scan.factories
            ):
                self.add(
                    "unawaited_session_call",
                    stmt,
                    f"{name}.{func.attr}() is a coroutine on an async session/connection and is not awaited: "
                    "it never runs (nothing is deleted/committed/flushed), Python only warns "
                    "'coroutine ... was never awaited'",
                    f"await {name}.{func.attr}(...)",
                )

    # -- list endpoints without a limit
    def unbounded_list_query(self, scope: Scope) -> None:
        fn = scope.node
        if not any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "get"
            for d in fn.decorator_list
        ):  # type: ignore[union-attr]
            return
        args = fn.args.args + fn.args.kwonlyargs  # type: ignore[union-attr]
        if any(
            PAGINATED_PARAM.match(a.arg)
            or (a.annotation is not None and PAGINATED_ANNOTATION.search(ast.unparse(a.annotation)))
            for a in args
        ):
            return  # the endpoint paginates (limit/page/cursor parameters or a pagination dependency)
        names = {call_name(n) for n, _ in scope.calls}
        if names & {"limit", "slice", "fetch", "fetchmany", "partitions", "offset", "paginate"}:
            return
        for n, _ in scope.calls:
            if not (isinstance(n.func, ast.Attribute) and n.func.attr == "all" and not n.args):
                continue
            query = self.query_behind(n.func.value, scope)
            if query is None:
                continue  # not rows from a session: a list, a dict, another API
            if called_attrs(scope.expanded(query)) & LIMITING_CALLS:
                continue  # IN (<ids>), DISTINCT / GROUP BY of a few values, one row
            self.add(
                "unbounded_list_query",
                n,
                f"list endpoint {fn.name}() returns .all() with no LIMIT: response size and memory grow with the table",  # type: ignore[union-attr]
                "take a bounded limit and a keyset cursor (limit: int = Query(50, ge=1, le=200); WHERE (created_at, id) > cursor) and apply .limit(limit)",
            )
            return

    def query_behind(self, node: ast.AST, scope: Scope, depth: int = 0) -> ast.AST | None:
        """The statement given to the session call whose result ``node`` is (through .scalars()/.unique()/names)."""
        if depth > 6:
            return None
        if isinstance(node, ast.Await):
            if is_session_call(node) and node.value.func.attr in RESULT_METHODS and node.value.args:  # type: ignore[attr-defined]
                return node.value.args[0]  # type: ignore[attr-defined]
            return None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("scalars", "unique", "mappings", "tuples")
        ):
            return self.query_behind(node.func.value, scope, depth + 1)
        if isinstance(node, ast.Name):
            for value in scope.assigned().get(node.id, [])[-1:]:
                return self.query_behind(value, scope, depth + 1)
        return None


def own_statements(node: ast.AST | None) -> Iterator[ast.AST]:
    """The statements of a function body, nested blocks included, not those of nested functions/classes."""
    if node is None:
        return
    stack = list(getattr(node, "body", []))
    while stack:
        stmt = stack.pop()
        if isinstance(stmt, SCOPE_TYPES):
            continue
        yield stmt
        for name in ("body", "orelse", "finalbody", "handlers", "cases"):
            children = getattr(stmt, name, None)
            if isinstance(children, list):
                stack.extend(c for c in children if isinstance(c, ast.AST))


def latest(formatted: dict[str, list[tuple[int, bool]]], name: str, line: int) -> bool:
    """Whether ``name``'s last assignment before ``line`` was a formatted string."""
    state = False
    for at, value in formatted.get(name, ()):
        if at < line:
            state = value
    return state


IDENTIFIER_NAME = re.compile(
    r"(table|schema|column|index|constraint|sequence|seq|database|db|relation|view|type)(_?names?)?s?$|^(tbl|col|idx|ident)",
    re.I,
)
FRAGMENT_NAME = re.compile(
    r"(where|clause|condition|filter|order|sql|query|stmt|columns|cols|fields|placeholders|binds|params|set_)", re.I
)
VALUE_BEFORE = re.compile(r"(?:[=<>]|\bLIKE|\bIN\s*\(|\bVALUES\s*\(|\bBETWEEN)\s*$", re.I)


def interpolation_is_value(before: str, expr: ast.AST | None) -> bool:
    """Whether text interpolated after ``before`` lands where a value belongs: inside a quoted SQL
    literal (``= '{x}'``) or right after a comparison (``= {x}``, ``IN ({x})``). Identifiers
    (``FROM {table}``), SQL fragments built by the code (``WHERE {where}``) and names that say they
    hold an identifier (``table_name``, ``schema``) are not values: they cannot be bound parameters."""
    name = None
    if (
        isinstance(expr, ast.Attribute)
        and isinstance(expr.value, ast.Name)
        and expr.value.id in ("self", "cls")
        and expr.attr in ("value", "name")
    ):
        return False  # an Enum member's own value: written in the code
    if expr is not None:
        inner = expr.func if isinstance(expr, ast.Call) else expr
        name = terminal_name(
            inner.value if isinstance(inner, ast.Attribute) and inner.attr in ("value", "name") else inner
        )
    if name and (IDENTIFIER_NAME.search(name) or FRAGMENT_NAME.search(name) or (name.isupper() and len(name) > 1)):
        return False
    if before.count("'") % 2 == 1:
        return True
    return bool(VALUE_BEFORE.search(before))


def template_values(template: str, pattern: re.Pattern[str], args: list[ast.AST]) -> bool:
    """For ``"...".format(...)`` / ``"..." % (...)``: whether any placeholder sits in a value position."""
    for i, m in enumerate(pattern.finditer(template)):
        expr = args[i] if i < len(args) else None
        if interpolation_is_value(template[: m.start()], expr):
            return True
    return False


FORMAT_FIELD = re.compile(r"\{[^{}]*\}")
PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[sdifr]")


def is_formatted(value: ast.AST, formatted: dict[str, list[tuple[int, bool]]], line: int) -> bool:
    """Whether ``value`` is a string built by formatting with a value in a value position."""
    if isinstance(value, ast.JoinedStr):
        head = value.values[0] if value.values else None
        if isinstance(head, ast.Constant) and DDL_HEAD.match(str(head.value)):
            return False  # identifiers in DDL/admin statements cannot be bound parameters
        before = ""
        for part in value.values:
            if isinstance(part, ast.Constant):
                before += str(part.value)
            elif isinstance(part, ast.FormattedValue):
                if interpolation_is_value(before, part.value):
                    return True
                before += "x"
        return False
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Mod):
        template = const_str(value.left)
        if template is None:
            return False
        if DDL_HEAD.match(template):
            return False
        args = list(value.right.elts) if isinstance(value.right, ast.Tuple) else [value.right]
        return template_values(template, PERCENT_FIELD, args)
    if isinstance(value, ast.BinOp) and isinstance(value.op, ast.Add):
        left = value.left
        if isinstance(left, ast.BinOp):
            return is_formatted(left, formatted, line)
        text = const_str(left)
        if text is not None:
            return (
                not DDL_HEAD.match(text)
                and not isinstance(value.right, ast.Constant)
                and interpolation_is_value(text, value.right)
            )
        if isinstance(left, ast.Name):
            return latest(formatted, left.id, line)
        return False
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "format":
        template = const_str(value.func.value)
        if template is None or DDL_HEAD.match(template):
            return False
        return template_values(template, FORMAT_FIELD, list(value.args))
    if isinstance(value, ast.Name):
        return latest(formatted, value.id, line)
    return False


# --------------------------------------------------------------------------- driver

# Syntax newer than the running interpreter, recognised in a file it cannot parse: (version, what, pattern)
NEWER_SYNTAX = [
    (
        (3, 14),
        "except A, B: without parentheses (PEP 758)",
        re.compile(r"^\s*except\*?\s+[\w.]+\s*,\s*[\w.]+[^:]*:", re.M),
    ),
    ((3, 14), 'template strings t"..." (PEP 750)', re.compile(r"(?<![\w\"'])[tT][rR]?[\"']")),
    ((3, 13), "type parameter defaults (PEP 696)", re.compile(r"^\s*(?:def|class)\s+\w+\[[^\]]*=", re.M)),
    (
        (3, 12),
        "type statements / generic syntax (PEP 695)",
        re.compile(r"^\s*(?:type\s+\w+(?:\[[^\]]*\])?\s*=|(?:async\s+)?def\s+\w+\[|class\s+\w+\[)", re.M),
    ),
    (
        (3, 12),
        "f-strings reusing their quotes or nesting (PEP 701)",
        re.compile(r"f\"[^\"\n]*\{[^}\n]*\"[^\n]*\}|f'[^'\n]*\{[^}\n]*'[^\n]*\}"),
    ),
    (
        (3, 12),
        "f-string replacement fields across lines (PEP 701)",
        re.compile(r"(?<![\w\"'])[fF][rR]?(\"|')[^\"'\n]*\{[^}\"'\n]*$", re.M),
    ),
    ((3, 11), "except* (PEP 654)", re.compile(r"^\s*except\s*\*", re.M)),
    ((3, 10), "match statements (PEP 634)", re.compile(r"^\s*match\s+[^=\n]+:\s*$", re.M)),
]


def newer_syntax(source: str) -> tuple[tuple[int, int], str] | None:
    """The newest Python version whose syntax ``source`` seems to use, when newer than this interpreter."""
    for version, what, pattern in NEWER_SYNTAX:
        if version > sys.version_info[:2] and pattern.search(source):
            return version, what
    return None


@dataclass
class StaticResult:
    findings: list[dict[str, Any]]
    files: int
    skipped: list[dict[str, str]]  # {"file", "reason", "kind", "needs_python"?}

    @property
    def needs_python(self) -> str | None:
        versions = [tuple(int(p) for p in s["needs_python"].split(".")) for s in self.skipped if s.get("needs_python")]
        return ".".join(map(str, max(versions))) if versions else None

    def skipped_by_reason(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            out[s["kind"]] = out.get(s["kind"], 0) + 1
        return dict(sorted(out.items()))


def iter_python_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    missing: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if d not in EXCLUDED_DIRS and not d.startswith("."))
                files.extend(Path(root) / n for n in sorted(names) if n.endswith(".py"))
        else:
            missing.append(raw)
    return files, missing


# A file none of these bytes occur in cannot give a finding (every rule needs one of them): it is
# parsed (a file that does not parse is reported) but not walked.
RELEVANT = re.compile(
    rb"await|sqlalchemy|sqlmodel|joinedload|insert|Depends|gather|create_task|ensure_future|start_soon|[rR]elationship|create_async_engine|declarative_base"
)


def read_tree(path: Path) -> tuple[ast.Module | None, bytes, dict[str, str] | None]:
    """(tree, raw bytes, None) or (None, raw, skip record)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, b"", {"kind": "unreadable", "reason": f"{type(exc).__name__}: {exc.strerror or exc}"}
    try:
        return ast.parse(raw, filename=str(path)), raw, None
    except SyntaxError as exc:
        source = raw.decode("utf-8", "replace")
        newer = newer_syntax(source)
        where = f"line {exc.lineno}: {exc.msg}" if exc.lineno else str(exc.msg)
        if newer:
            version, what = newer
            needs = ".".join(map(str, version))
            here = ".".join(map(str, sys.version_info[:2]))
            return (
                None,
                raw,
                {
                    "kind": "needs_newer_python",
                    "needs_python": needs,
                    "reason": f"needs Python >= {needs} ({what}); running {here}: {where}",
                },
            )
        return None, raw, {"kind": "syntax_error", "reason": f"SyntaxError at {where}"}
    except (ValueError, UnicodeDecodeError) as exc:  # null bytes, a bad encoding declaration
        return None, raw, {"kind": "undecodable", "reason": f"{type(exc).__name__}: {exc}"[:200]}
    except RecursionError:
        return None, raw, {"kind": "too_deeply_nested", "reason": "RecursionError while parsing"}


def check_paths(paths: list[str], display_base: Path | None = None) -> StaticResult:
    """Parse and check every file. The cyclic garbage collector is paused meanwhile: the trees
    kept alive for the project-wide pass hold millions of objects, and rescanning them on every
    collection made the run 10x slower than parsing alone (nothing here creates cycles to collect)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _check_paths(paths, display_base)
    finally:
        if enabled:
            gc.enable()


def _check_paths(paths: list[str], display_base: Path | None) -> StaticResult:
    files, _ = iter_python_files(paths)
    project = Project()
    scanned: list[tuple[str, Scanner, bytes]] = []
    scanned_plain = 0  # parsed, nothing a rule could match
    skipped: list[dict[str, str]] = []
    base = os.path.realpath(display_base or Path.cwd())
    for f in files:
        shown = display(f, base)
        tree, raw, problem = read_tree(f)
        if tree is None:
            skipped.append({"file": shown, **(problem or {})})
            continue
        if not RELEVANT.search(raw):
            scanned_plain += 1
            continue
        try:
            scan = Scanner(tree, project, factories_possible=b"sessionmaker" in raw)
        except RecursionError:
            skipped.append({"file": shown, "kind": "too_deeply_nested", "reason": "RecursionError while checking"})
            continue
        collect_dependencies(scan)
        scanned.append((shown, scan, raw))
    project.finish()
    findings: list[dict[str, Any]] = []
    for shown, scan, raw in scanned:
        found = FileChecker(shown, scan, project).run()
        if found and b"optimize-queries" in raw:
            lines = raw.decode("utf-8", "replace").splitlines()
            found = [f for f in found if not suppressed(f, lines)]
        findings.extend(found)
    return StaticResult(findings, len(scanned) + scanned_plain, skipped)


def suppressed(finding: dict[str, Any], lines: list[str]) -> bool:
    line = finding["line"]
    if not 0 < line <= len(lines):
        return False
    m = IGNORE_RE.search(lines[line - 1])
    if not m:
        return False
    if not m.group(1):
        return True
    return finding["rule"] in {r.strip() for r in m.group(1).split(",")}


def display(path: Path, base: str) -> str:
    full = os.path.abspath(path)
    if not full.startswith(base + os.sep):
        full = os.path.realpath(path)
    return os.path.relpath(full, base) if full.startswith(base + os.sep) else str(path)

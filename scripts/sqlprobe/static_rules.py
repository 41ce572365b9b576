"""Static half of optimize-queries: AST checks over Python sources (no code is imported or run).

``check_paths(paths)`` returns ``(findings, files_checked, skipped)``. Each finding is a dict with
``rule``, ``severity``, ``file``, ``line``, ``message``, ``fix``. A comment
``# optimize-queries: ignore[rule]`` (or ``ignore[rule_a, rule_b]``, or a bare ``ignore``) on the
reported line suppresses it.

The checks are deliberately conservative (a finding should be worth reading): names are resolved
inside one function, relationships are collected from every file given, so pass the whole
package (``--static src/``) rather than one file.
"""

from __future__ import annotations

import ast
import io
import os
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEVERITY = {
    "lazy_load_in_async": "error",
    "session_shared_across_tasks": "error",
    "text_with_fstring": "error",
    "commit_after_yield": "error",
    "queuepool_on_async_engine": "error",
    "joinedload_collection_without_unique": "error",
    "query_in_loop": "warning",
    "values_list_bulk_insert": "warning",
    "unbounded_list_query": "warning",
    "relationship_without_lazy": "warning",
    "legacy_declarative_base": "warning",
}
STATIC_RULES = tuple(SEVERITY)

SESSION_METHODS = {"execute", "scalars", "scalar", "get", "get_one", "stream", "stream_scalars", "refresh", "merge"}
LOADER_OPTIONS = {"selectinload", "joinedload", "subqueryload", "immediateload", "contains_eager", "lazyload", "raiseload", "defaultload"}
EAGER_LAZY_VALUES = {"selectin", "joined", "subquery", "immediate", "noload", "dynamic", "write_only"}
SESSIONISH = re.compile(r"(session|^db$|^sess$|^s$|^conn$|^connection$|^uow$)", re.I)
DDL_HEAD = re.compile(r"\s*(CREATE|DROP|ALTER|TRUNCATE|GRANT|REVOKE|SET|RESET|KILL|VACUUM|ANALYZE|PRAGMA|SAVEPOINT|RELEASE|ROLLBACK TO|LOCK|COMMENT|USE|SHOW|ATTACH|DETACH)\b", re.I)
IGNORE_RE = re.compile(r"#\s*optimize-queries:\s*ignore(?:\[([^\]]*)\])?")
EXCLUDED_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache", "site-packages", "build", "dist"}


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


def kwarg(call: ast.Call, name: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def const_str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def walk_no_nested(node: ast.AST):
    """ast.walk that does not descend into nested function/class definitions (or lambdas)."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        yield child
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        stack.extend(ast.iter_child_nodes(child))


def functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def is_session_call(node: ast.AST) -> bool:
    """``await <session>.execute/scalars/get/...(...)``"""
    if not (isinstance(node, ast.Await) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute)):
        return False
    func = node.value.func
    if func.attr not in SESSION_METHODS:
        return False
    receiver = terminal_name(func.value)
    if receiver is None:
        return False
    if func.attr in ("get", "merge", "refresh", "stream") and "session" not in receiver.lower():
        return False  # httpx/aiohttp clients have get/stream too
    return bool(SESSIONISH.search(receiver))


def is_awaitable_attr(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Await)
        and isinstance(node.value, ast.Attribute)
        and isinstance(node.value.value, ast.Attribute)
        and node.value.value.attr == "awaitable_attrs"
    )


def is_batching_loop(loop: ast.For | ast.AsyncFor) -> bool:
    """``for start in range(0, n, size)`` / ``for batch in chunks(...)``: one query per batch is the fix, not the bug."""
    it = loop.iter
    if isinstance(it, ast.Call) and call_name(it) == "range" and len(it.args) == 3:
        return True
    names = [terminal_name(loop.target) or ""]
    if isinstance(it, ast.Call):
        names.append(call_name(it) or "")
    elif isinstance(it, (ast.Name, ast.Attribute)):
        names.append(terminal_name(it) or "")
    return any(re.search(r"batch|chunk|page|partition", n, re.I) for n in names)


def is_batched_call(node: ast.Await) -> bool:
    """The awaited query already covers many rows: ``.in_(...)`` in it, or executemany ``execute(stmt, rows)``."""
    call = node.value
    if not isinstance(call, ast.Call):
        return False
    for sub in ast.walk(call):
        if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr == "in_":
            return True
    if call_name(call) == "execute" and len(call.args) >= 2 and isinstance(call.args[1], (ast.List, ast.ListComp, ast.Name, ast.Subscript)):
        second = call.args[1]
        return not (isinstance(second, ast.Name) and not re.search(r"s$|rows|items|batch|chunk|records|values", second.id))
    return False


def annotation_is_collection(annotation: ast.AST | None) -> bool:
    if annotation is None:
        return False
    text = ast.unparse(annotation)
    return bool(re.search(r"\b(list|List|set|Set|Sequence|WriteOnlyMapped|DynamicMapped)\[", text))


# --------------------------------------------------------------------------- project pass


def collect(project: Project, tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            module = getattr(node, "module", None) or ""
            names = {a.name for a in node.names}
            if module.startswith("sqlalchemy.ext.asyncio") or "sqlalchemy.ext.asyncio" in names:
                project.is_async = True
        if is_session_call(node) or is_awaitable_attr(node):
            project.is_async = True
        if isinstance(node, ast.ClassDef):
            for stmt in node.body:
                target, value, annotation = None, None, None
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                    target, value, annotation = stmt.target.id, stmt.value, stmt.annotation
                elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                    target, value = stmt.targets[0].id, stmt.value
                if target and isinstance(value, ast.Call) and call_name(value) == "relationship":
                    lazy = const_str(kwarg(value, "lazy"))
                    if annotation is not None and re.search(r"\b(WriteOnlyMapped|DynamicMapped)\[", ast.unparse(annotation)):
                        lazy = lazy or "write_only"  # the annotation sets the loader strategy
                        project.implicit_lazy.add(id(value))
                    uselist = kwarg(value, "uselist")
                    collection = annotation_is_collection(annotation)
                    if isinstance(uselist, ast.Constant):
                        collection = bool(uselist.value)
                    project.relationships.setdefault(target, []).append(
                        Relationship(node.name, target, lazy, collection, stmt.lineno)
                    )
        if isinstance(node, ast.Call) and call_name(node) == "Depends" and node.args:
            scope = const_str(kwarg(node, "scope"))
            dep = terminal_name(node.args[0])
            if dep and scope != "function":
                project.dependencies_without_scope.add(dep)


# --------------------------------------------------------------------------- per-file checks


class FileChecker:
    def __init__(self, path: str, tree: ast.AST, project: Project) -> None:
        self.path = path
        self.tree = tree
        self.project = project
        self.findings: list[dict[str, Any]] = []

    def add(self, rule: str, node: ast.AST, message: str, fix: str) -> None:
        self.findings.append(
            {"rule": rule, "severity": SEVERITY[rule], "file": self.path, "line": getattr(node, "lineno", 0), "message": message, "fix": fix}
        )

    def run(self) -> list[dict[str, Any]]:
        self.module_level()
        for fn in functions(self.tree):
            self.query_in_loop(fn)
            if isinstance(fn, ast.AsyncFunctionDef):
                self.lazy_load_in_async(fn)
                self.commit_after_yield(fn)
                self.unbounded_list_query(fn)
            self.joinedload_without_unique(fn)
            self.text_with_fstring(fn)
            self.values_list(fn)
        return self.findings

    # -- module-wide call checks
    def module_level(self) -> None:
        for node in ast.walk(self.tree):
            if not isinstance(node, ast.Call):
                continue
            name = call_name(node)
            if name == "declarative_base":
                self.add(
                    "legacy_declarative_base", node, "declarative_base() is the legacy 1.x API (MovedIn20Warning in 2.x)",
                    "class Base(AsyncAttrs, DeclarativeBase): ... (see templates/base_model.py)",
                )
            elif name == "relationship" and self.project.is_async and kwarg(node, "lazy") is None and id(node) not in self.project.implicit_lazy:
                self.add(
                    "relationship_without_lazy", node,
                    "relationship() without lazy=: the default lazy='select' loads on attribute access, which in async code raises MissingGreenlet",
                    'relationship(..., lazy="raise") and load it with selectinload()/joinedload(), or lazy="selectin" when it is always needed',
                )
            elif name == "create_async_engine":
                pool = kwarg(node, "poolclass")
                if pool is not None and terminal_name(pool) in ("QueuePool", "SingletonThreadPool"):
                    self.add(
                        "queuepool_on_async_engine", node,
                        f"{terminal_name(pool)} is not asyncio-compatible: create_async_engine() rejects it",
                        "drop poolclass (the default AsyncAdaptedQueuePool pools) or use poolclass=NullPool behind an external pooler",
                    )
            elif name in ("gather", "create_task", "ensure_future", "start_soon"):
                self.shared_session(node, name)

    def shared_session(self, node: ast.Call, name: str) -> None:
        sessions: list[str] = []
        awaitables = 0
        for arg in node.args:
            inner = arg.value if isinstance(arg, ast.Starred) else arg
            awaitables += 2 if isinstance(arg, ast.Starred) else 1
            for sub in ast.walk(inner):
                if isinstance(sub, ast.Call):
                    for a in list(sub.args) + [k.value for k in sub.keywords]:
                        t = terminal_name(a)
                        if t and "session" in t.lower() and not t.lower().endswith(("maker", "factory", "_factory")):
                            sessions.append(t)
        if not sessions:
            return
        if name == "gather" and awaitables < 2:
            return
        self.add(
            "session_shared_across_tasks", node,
            f"one AsyncSession ({sessions[0]}) is used by concurrent tasks via {name}(): a session is not safe for concurrent use",
            "give each task its own session: `async with sessionmaker() as session:` inside the task",
        )

    # -- loops
    def query_in_loop(self, fn: ast.AST) -> None:
        seen: set[int] = set()
        for node in walk_no_nested(fn):
            if isinstance(node, (ast.For, ast.AsyncFor)):
                if is_batching_loop(node):
                    continue
                roots = node.body + node.orelse
            elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
                roots = [node.elt] if not isinstance(node, ast.DictComp) else [node.key, node.value]
            else:
                continue
            for root in roots:
                for sub in [root, *walk_no_nested(root)]:
                    if (is_session_call(sub) or is_awaitable_attr(sub)) and id(sub) not in seen and not is_batched_call(sub):
                        seen.add(id(sub))
                        what = ast.unparse(sub)[:80]
                        self.add(
                            "query_in_loop", sub, f"query inside a loop ({what}): one round trip per item (N+1)",
                            "load everything before the loop in one query: .where(Model.key.in_(keys)), or eager-load with selectinload(Parent.children)",
                        )

    # -- relationship reads on ORM results
    def lazy_load_in_async(self, fn: ast.AsyncFunctionDef) -> None:
        rels = {name: items for name, items in self.project.relationships.items() if any((r.lazy or "select") not in EAGER_LAZY_VALUES for r in items)}
        if not rels:
            return
        loaded: set[str] = set()
        orm_names: set[str] = set()
        result_names: set[str] = set()
        for node in walk_no_nested(fn):
            if isinstance(node, ast.Call) and call_name(node) in LOADER_OPTIONS:
                for arg in node.args:
                    for sub in ast.walk(arg):
                        if isinstance(sub, ast.Attribute):
                            loaded.add(sub.attr)
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            loaded.add(sub.value)
            if isinstance(node, ast.Call) and call_name(node) == "refresh":
                for arg in list(node.args[1:]) + [k.value for k in node.keywords]:
                    for sub in ast.walk(arg):
                        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                            loaded.add(sub.value)
        # names bound to ORM objects / results, in source order
        body_nodes = sorted(
            (n for n in walk_no_nested(fn) if isinstance(n, (ast.Assign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.comprehension))),
            key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)),
        )

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
                if value.func.attr in ("all", "first", "one", "one_or_none", "scalar", "scalar_one", "scalar_one_or_none", "unique", "scalars", "fetchall"):
                    inner = from_query(value.func.value)
                    if inner:
                        return "objects" if value.func.attr in ("all", "first", "one", "one_or_none", "scalar_one", "scalar_one_or_none", "scalar", "fetchall") else "result"
            if isinstance(value, ast.Call) and call_name(value) in ("list", "tuple", "sorted") and value.args:
                return "objects" if from_query(value.args[0]) else None
            return None

        for n in body_nodes:
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
            else:
                kind = from_query(n.iter)
                if kind and isinstance(n.target, ast.Name):
                    orm_names.add(n.target.id)
        if not orm_names:
            return
        reported: set[tuple[str, str]] = set()
        for node in walk_no_nested(fn):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Load)
                and isinstance(node.value, ast.Name)
                and node.value.id in orm_names
                and node.attr in rels
                and node.attr not in loaded
                and (node.value.id, node.attr) not in reported
            ):
                reported.add((node.value.id, node.attr))
                owner = rels[node.attr][0].cls
                self.add(
                    "lazy_load_in_async", node,
                    f"{node.value.id}.{node.attr} reads relationship {owner}.{node.attr}, which the query did not eager-load (MissingGreenlet, or an error with lazy='raise')",
                    f".options(selectinload({owner}.{node.attr})) on the query, or `await session.refresh({node.value.id}, [\"{node.attr}\"])` for a single object (awaitable_attrs fails on lazy='raise')",
                )

    # -- joinedload on a collection needs Result.unique()
    def joinedload_without_unique(self, fn: ast.AST) -> None:
        collections = {name for name, items in self.project.relationships.items() if any(r.collection for r in items)}
        hits: list[ast.Call] = []
        has_unique = False
        for node in walk_no_nested(fn):
            if isinstance(node, ast.Call):
                name = call_name(node)
                if name == "unique":
                    has_unique = True
                if name == "joinedload" and node.args and isinstance(node.args[0], ast.Attribute) and node.args[0].attr in collections:
                    hits.append(node)
        if hits and not has_unique:
            for node in hits:
                attr = ast.unparse(node.args[0])
                self.add(
                    "joinedload_collection_without_unique", node,
                    f"joinedload({attr}) joins a collection: rows repeat per child and SQLAlchemy 2.x refuses the result without .unique()",
                    "call .unique() on the result: (await session.scalars(stmt)).unique().all(), or use selectinload() for collections",
                )

    # -- SQL built by string formatting
    def text_with_fstring(self, fn: ast.AST) -> None:
        formatted: set[str] = set()

        def is_formatted(value: ast.AST) -> bool:
            if isinstance(value, ast.JoinedStr):
                head = value.values[0] if value.values else None
                if isinstance(head, ast.Constant) and DDL_HEAD.match(str(head.value)):
                    return False  # identifiers in DDL/admin statements cannot be bound parameters
                return any(isinstance(v, ast.FormattedValue) for v in value.values)
            if isinstance(value, ast.BinOp) and isinstance(value.op, (ast.Mod, ast.Add)):
                return not (isinstance(value.left, ast.Constant) and isinstance(value.right, ast.Constant))
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and value.func.attr == "format":
                return True
            if isinstance(value, ast.Name):
                return value.id in formatted
            return False

        nodes = sorted((n for n in walk_no_nested(fn) if isinstance(n, (ast.Assign, ast.Call))), key=lambda n: (n.lineno, n.col_offset))
        for n in nodes:
            if isinstance(n, ast.Assign):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        (formatted.add if is_formatted(n.value) else formatted.discard)(t.id)
            elif call_name(n) == "text" and n.args and is_formatted(n.args[0]):
                self.add(
                    "text_with_fstring", n, "SQL built by string formatting inside text(): values become SQL (injection, no statement cache)",
                    'use bound parameters: text("... WHERE id = :id") and pass {"id": value} to execute(); identifiers from a fixed allow-list',
                )

    # -- insert(...).values(list)
    def values_list(self, fn: ast.AST) -> None:
        lists: set[str] = set()
        for n in walk_no_nested(fn):
            if isinstance(n, ast.Assign) and isinstance(n.value, (ast.List, ast.ListComp)):
                for t in n.targets:
                    if isinstance(t, ast.Name):
                        lists.add(t.id)
        for n in walk_no_nested(fn):
            if not (isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "values" and n.args):
                continue
            base = n.func.value
            while isinstance(base, ast.Call) and isinstance(base.func, ast.Attribute):
                base = base.func.value
            if not (isinstance(base, ast.Call) and call_name(base) == "insert"):
                continue
            arg = n.args[0]
            if isinstance(arg, (ast.List, ast.ListComp)) or (isinstance(arg, ast.Name) and arg.id in lists):
                self.add(
                    "values_list_bulk_insert", n,
                    "insert(...).values(list) renders one statement with a bind parameter per value: hits the backend's parameter limit and skips batching",
                    "await session.execute(insert(Model), rows)  # executemany / insertmanyvalues, batched by SQLAlchemy",
                )

    # -- FastAPI dependency committing after yield
    def commit_after_yield(self, fn: ast.AsyncFunctionDef) -> None:
        if fn.name not in self.project.dependencies_without_scope:
            return
        yields = [n.lineno for n in walk_no_nested(fn) if isinstance(n, (ast.Yield, ast.YieldFrom))]
        if not yields:
            return
        first_yield = min(yields)
        for n in walk_no_nested(fn):
            if isinstance(n, ast.Call) and call_name(n) == "commit" and n.lineno > first_yield:
                self.add(
                    "commit_after_yield", n,
                    f"dependency {fn.name}() commits after yield but is used as Depends({fn.name}) without scope=\"function\": the response is sent before the commit, so a failed commit is lost",
                    f'Depends({fn.name}, scope="function") (FastAPI >= 0.121), or commit inside the endpoint',
                )
                return

    # -- list endpoints without a limit
    def unbounded_list_query(self, fn: ast.AsyncFunctionDef) -> None:
        is_get_route = any(
            isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "get" for d in fn.decorator_list
        )
        if not is_get_route:
            return
        all_calls = []
        limited = False
        for n in walk_no_nested(fn):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute):
                if n.func.attr in ("limit", "slice", "fetch") or (n.func.attr in ("fetchmany", "partitions")):
                    limited = True
                if n.func.attr == "all" and not n.args:
                    all_calls.append(n)
        if all_calls and not limited:
            self.add(
                "unbounded_list_query", all_calls[0],
                f"list endpoint {fn.name}() returns .all() with no LIMIT: response size and memory grow with the table",
                "take a bounded limit and a keyset cursor (limit: int = Query(50, ge=1, le=200); WHERE (created_at, id) > cursor) and apply .limit(limit)",
            )


# --------------------------------------------------------------------------- driver


def suppressions(source: str) -> dict[int, set[str] | None]:
    out: dict[int, set[str] | None] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                m = IGNORE_RE.search(tok.string)
                if m:
                    out[tok.start[0]] = {r.strip() for r in m.group(1).split(",") if r.strip()} if m.group(1) else None
    except (tokenize.TokenError, SyntaxError):
        pass
    return out


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


def check_paths(paths: list[str], display_base: Path | None = None) -> tuple[list[dict[str, Any]], int, list[dict[str, str]]]:
    files, _ = iter_python_files(paths)
    project = Project()
    parsed: list[tuple[str, ast.AST, str]] = []
    skipped: list[dict[str, str]] = []
    for f in files:
        shown = display(f, display_base)
        try:
            source = f.read_text(encoding="utf-8")
            tree = ast.parse(source, filename=str(f))
        except (SyntaxError, UnicodeDecodeError, OSError) as exc:
            skipped.append({"file": shown, "reason": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        collect(project, tree)
        parsed.append((shown, tree, source))
    findings: list[dict[str, Any]] = []
    for shown, tree, source in parsed:
        ignores = suppressions(source)
        for f in FileChecker(shown, tree, project).run():
            rules = ignores.get(f["line"], ())
            if f["line"] in ignores and (rules is None or f["rule"] in rules):
                continue
            findings.append(f)
    return findings, len(parsed), skipped


def display(path: Path, base: Path | None) -> str:
    base = base or Path.cwd()
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)

"""Shared logic of setup-alembic and generate-migration (importable; no CLI here).

- ``plan_setup()``: what setup-alembic would write into a project, and what already differs.
- ``check_metadata()``: import ``MODULE:ATTR`` the way env.py will, one-line error otherwise.
- ``review_revision()``: read a revision file with the AST; its operations and the risks
  autogenerate leaves in it (rule ids: drop_table, drop_column, rename_suspected,
  not_null_without_default, type_change, enum_change, index_not_concurrent, empty_downgrade).
- ``scratch_database()``: a temporary SQLite file / server database for the roundtrip check.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SKILL_ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = SKILL_ROOT / "templates"


# --- setup ---------------------------------------------------------------------------------


class MetadataError(Exception):
    """``--metadata`` is malformed or does not import (exit 2)."""


def check_metadata(spec: str, project: Path) -> str:
    """Import ``MODULE:ATTR`` with ``project`` on sys.path; the spec env.py should use.

    A declarative Base (``app.models:Base``) is accepted and becomes ``app.models:Base.metadata``.
    """
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", spec or ""):
        raise MetadataError(f"--metadata must look like MODULE:ATTR (e.g. app.models:Base.metadata), got {spec!r}")
    from sqlalchemy import MetaData

    module_name, _, attr = spec.partition(":")
    root = str(project.resolve())
    sys.path.insert(0, root)
    try:
        try:
            obj: Any = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the user's module's
            raise MetadataError(
                f"cannot import module {module_name!r} (from {root}): {type(exc).__name__}: {exc}"
            ) from None
        for part in attr.split("."):
            if not hasattr(obj, part):
                raise MetadataError(f"module {module_name!r} has no attribute {attr!r} (missing {part!r})")
            obj = getattr(obj, part)
    finally:
        if root in sys.path:
            sys.path.remove(root)
    if isinstance(obj, MetaData):
        return spec
    if isinstance(getattr(obj, "metadata", None), MetaData):
        return f"{spec}.metadata"
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(m, MetaData) for m in obj):
        return spec
    raise MetadataError(f"{spec!r} is a {type(obj).__name__}, not a sqlalchemy MetaData (try MODULE:Base.metadata)")


def ini_value(text: str, key: str) -> str | None:
    m = re.search(rf"^{re.escape(key)}\s*=\s*(.*?)\s*$", text, re.MULTILINE)
    return m[1] if m else None


def render_ini(metadata: str, directory: str) -> str:
    text = (TEMPLATES / "alembic.ini").read_text()
    location = directory if Path(directory).is_absolute() else f"%(here)s/{Path(directory).as_posix()}"
    text = re.sub(r"(?m)^script_location = .*$", lambda m: f"script_location = {escape_ini(location, keep_here=True)}", text)
    return re.sub(r"(?m)^target_metadata = .*$", lambda m: f"target_metadata = {metadata}", text)


def escape_ini(value: str, *, keep_here: bool = False) -> str:
    """ConfigParser interpolates ``%``: double it (but keep a leading ``%(here)s``)."""
    if keep_here and value.startswith("%(here)s"):
        return "%(here)s" + value[len("%(here)s") :].replace("%", "%%")
    return value.replace("%", "%%")


@dataclass
class PlannedFile:
    path: str  # relative to the project
    action: str  # create | unchanged | replace (different content exists)
    differences: list[str] = field(default_factory=list)
    backup: str | None = None
    content: str = field(default="", repr=False)


def describe_ini_differences(existing: str, wanted: str) -> list[str]:
    out = []
    for key in ("script_location", "target_metadata", "file_template"):
        have, want = ini_value(existing, key), ini_value(wanted, key)
        if have != want:
            out.append(f"{key} is {have!r}, setup would write {want!r}" if have is not None else f"{key} is missing")
    if ini_value(existing, "sqlalchemy.url"):
        out.append("sqlalchemy.url is set in the file (setup keeps the URL out of alembic.ini: DATABASE_URL)")
    if not out:
        out.append("other lines differ from templates/alembic.ini")
    return out


def describe_text_differences(existing: str, wanted: str) -> list[str]:
    import difflib

    changed = [
        ln for ln in difflib.unified_diff(existing.splitlines(), wanted.splitlines(), lineterm="", n=0)
        if ln[:1] in "+-" and not ln.startswith(("+++", "---"))
    ]
    return [f"differs from the template ({len(changed)} changed lines)"]


def plan_setup(project: Path, metadata: str, directory: str) -> list[PlannedFile]:
    """The files setup writes, each marked create / unchanged / replace."""
    mig = Path(directory)
    wanted: list[tuple[Path, str, str]] = [
        (Path("alembic.ini"), render_ini(metadata, directory), "ini"),
        (mig / "env.py", (TEMPLATES / "env.py").read_text(), "text"),
        (mig / "script.py.mako", (TEMPLATES / "script.py.mako").read_text(), "text"),
        (mig / "versions" / ".gitkeep", "", "text"),
    ]
    plans = []
    for rel, content, kind in wanted:
        target = rel if rel.is_absolute() else project / rel
        shown = str(rel.as_posix())
        if not target.exists():
            plans.append(PlannedFile(shown, "create", content=content))
            continue
        existing = target.read_text(errors="replace")
        if existing == content:
            plans.append(PlannedFile(shown, "unchanged", content=content))
        else:
            diffs = describe_ini_differences(existing, content) if kind == "ini" else describe_text_differences(existing, content)
            plans.append(PlannedFile(shown, "replace", diffs, content=content))
    return plans


# --- revision review -----------------------------------------------------------------------

NOT_OPERATIONS = {"f", "get_bind", "get_context", "inline_literal", "batch_alter_table", "implementation_for",
                  "register_operation", "invoke", "run_async"}
TABLE_FIRST = {"create_table", "drop_table", "add_column", "drop_column", "alter_column", "rename_table",
               "create_table_comment", "drop_table_comment", "bulk_insert"}


@dataclass
class Operation:
    op: str
    table: str | None
    column: str | None
    line: int
    node: ast.Call = field(repr=False, compare=False)

    def describe(self) -> str:
        where = ".".join(p for p in (self.table, self.column) if p)
        return f"{self.op} {where}".strip()


@dataclass
class Finding:
    rule: str
    message: str
    line: int


@dataclass
class Review:
    path: str
    revision: str | None
    down_revision: Any
    operations: list[Operation]
    downgrade_operations: list[Operation]
    warnings: list[Finding]

    def to_json(self) -> dict[str, Any]:
        return {
            "operations": [o.op for o in self.operations],
            "operation_details": [{"op": o.op, "table": o.table, "column": o.column, "line": o.line} for o in self.operations],
            "warnings": [asdict(w) for w in self.warnings],
        }


def literal(node: ast.AST | None) -> Any:
    """A string/number/bool literal, or the string inside ``op.f("...")``; else None."""
    if node is None:
        return None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "f" and node.args:
        return literal(node.args[0])
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return None


def kwarg(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def column_call(node: ast.AST | None) -> ast.Call | None:
    if isinstance(node, ast.Call) and isinstance(node.func, (ast.Attribute, ast.Name)):
        fname = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id
        if fname == "Column":
            return node
    return None


def collect_operations(func: ast.FunctionDef | None) -> list[Operation]:
    """``op.X(...)`` calls and ``batch_op.X(...)`` inside ``with op.batch_alter_table(T) as batch_op``."""
    found: list[Operation] = []

    def visit(node: ast.AST, batches: dict[str, str]) -> None:
        if isinstance(node, ast.With):
            inner = dict(batches)
            for item in node.items:
                call = item.context_expr
                if (
                    isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "batch_alter_table"
                    and isinstance(item.optional_vars, ast.Name)
                ):
                    inner[item.optional_vars.id] = literal(call.args[0] if call.args else kwarg(call, "table_name"))
                else:
                    visit(call, batches)
            for stmt in node.body:
                visit(stmt, inner)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
            owner, name = node.func.value.id, node.func.attr
            if owner == "op" and name not in NOT_OPERATIONS:
                found.append(make_operation(name, node, table=None))
            elif owner in batches and name not in NOT_OPERATIONS:
                found.append(make_operation(name, node, table=batches[owner]))
        for child in ast.iter_child_nodes(node):
            visit(child, batches)

    if func is not None:
        for stmt in func.body:
            visit(stmt, {})
    found.sort(key=lambda o: (o.line, o.node.col_offset))
    return found


def make_operation(name: str, call: ast.Call, table: str | None) -> Operation:
    args = list(call.args)
    in_batch = table is not None
    if not in_batch:
        if name in TABLE_FIRST and args:
            table = literal(args.pop(0))
        elif name in ("create_index", "drop_index", "create_unique_constraint", "create_check_constraint"):
            table = literal(args[1] if len(args) > 1 else kwarg(call, "table_name"))
        elif name == "create_foreign_key":
            table = literal(args[1] if len(args) > 1 else kwarg(call, "source_table"))
        elif name == "drop_constraint":
            table = literal(args[1] if len(args) > 1 else kwarg(call, "table_name"))
        table = table or literal(kwarg(call, "table_name"))
    column = None
    if name == "add_column" and args:
        col = column_call(args[0])
        column = literal(col.args[0]) if col is not None and col.args else None
    elif name in ("drop_column", "alter_column") and args:
        column = literal(args[0])
    elif name in ("create_index", "drop_index") and args:
        column = None
    return Operation(name, table if isinstance(table, str) else None, column if isinstance(column, str) else None,
                     call.lineno, call)


def enum_names(node: ast.AST) -> list[str]:
    """Names of ``sa.Enum(...)`` / ``postgresql.ENUM(...)`` types used under ``node``."""
    names = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call) and isinstance(sub.func, (ast.Attribute, ast.Name)):
            fname = sub.func.attr if isinstance(sub.func, ast.Attribute) else sub.func.id
            if fname in ("Enum", "ENUM"):
                names.append(str(literal(kwarg(sub, "name")) or "<unnamed enum>"))
    return names


def body_is_empty(func: ast.FunctionDef | None) -> bool:
    if func is None:
        return True
    return all(
        isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in func.body
    )


TYPE_ALIASES = {"STRING": "VARCHAR", "UNICODE": "VARCHAR", "NVARCHAR": "VARCHAR", "INT": "INTEGER",
                "UNICODETEXT": "TEXT", "TIMESTAMP": "DATETIME", "BOOL": "BOOLEAN", "DOUBLE_PRECISION": "FLOAT",
                "DOUBLE": "FLOAT", "NUMERIC": "DECIMAL", "UUID": "UUID", "CHAR": "CHAR"}
IGNORED_TYPE_ARGS = {"collation", "charset", "_expect_unicode", "_warn_on_bytestring", "display_width"}


def type_key(col: ast.Call | None) -> str | None:
    """A comparable form of a Column's type: ``sa.String(length=200)`` == reflected ``sa.VARCHAR(length=200)``.

    The upgrade renders model types, the downgrade renders reflected (database) types.
    """
    if col is None or len(col.args) < 2:
        return None
    node = col.args[1]
    call = node if isinstance(node, ast.Call) else None
    func = call.func if call is not None else node
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ast.unparse(func)
    name = TYPE_ALIASES.get(name.upper(), name.upper())
    args: list[str] = []
    if call is not None:
        args = [ast.unparse(a) for a in call.args]
        args += sorted(f"{k.arg}={ast.unparse(k.value)}" for k in call.keywords if k.arg not in IGNORED_TYPE_ARGS)
        if name == "VARCHAR" and args and not args[0].startswith("length="):
            args[0] = f"length={args[0]}"
    return f"{name}({', '.join(args)})"


def type_source(col: ast.Call | None) -> str | None:
    return type_key(col)


def review_revision(path: str | Path, dialect: str) -> Review:
    """Operations and warnings of one revision file (``dialect``: postgresql, mysql, sqlite...)."""
    source = Path(path).read_text()
    tree = ast.parse(source, filename=str(path))
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assigns = {
        t.id: literal(n.value)
        for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in ([n.target] if isinstance(n, ast.AnnAssign) else n.targets) if isinstance(t, ast.Name)
    }
    ups = collect_operations(funcs.get("upgrade"))
    downs = collect_operations(funcs.get("downgrade"))
    postgres = dialect in ("postgresql", "postgres")
    warnings: list[Finding] = []

    created_tables = {o.table for o in ups if o.op == "create_table"}
    # the column types a drop_column removes are in the downgrade's add_column
    restored = {(o.table, o.column): type_source(column_call(o.node.args[-1] if o.node.args else None))
                for o in downs if o.op == "add_column"}
    added = {(o.table, o.column): type_source(column_call(o.node.args[-1] if o.node.args else None))
             for o in ups if o.op == "add_column"}
    downgrade_text = ast.unparse(funcs["downgrade"]) if "downgrade" in funcs else ""

    for o in ups:
        if o.op == "drop_table":
            warnings.append(Finding("drop_table", f"drops table {o.table} and every row in it; the downgrade re-creates it empty", o.line))
        elif o.op == "drop_column":
            warnings.append(Finding("drop_column", f"drops column {o.table}.{o.column} and its data; the downgrade restores the column, not the data", o.line))
            dropped_type = restored.get((o.table, o.column))
            twins = [c for (t, c), typ in added.items() if t == o.table and typ is not None and typ == dropped_type]
            if twins:
                warnings.append(Finding(
                    "rename_suspected",
                    f"{o.table}: drops {o.column} and adds {', '.join(twins)} of the same type {dropped_type}; if this is a "
                    f"rename, replace both with op.alter_column({o.table!r}, {o.column!r}, new_column_name={twins[0]!r}) "
                    "or the data is lost",
                    o.line,
                ))
        elif o.op == "add_column":
            col = column_call(o.node.args[-1] if o.node.args else None)
            if col is not None and literal(kwarg(col, "nullable")) is False and kwarg(col, "server_default") is None \
                    and o.table not in created_tables:
                warnings.append(Finding(
                    "not_null_without_default",
                    f"adds NOT NULL column {o.table}.{o.column} without server_default: fails on a table with rows; "
                    "add server_default=... (or add it nullable, backfill, then alter to NOT NULL)",
                    o.line,
                ))
        elif o.op == "alter_column":
            if literal(kwarg(o.node, "nullable")) is False:
                warnings.append(Finding(
                    "not_null_without_default",
                    f"makes {o.table}.{o.column} NOT NULL: fails if any row holds NULL; backfill first in this revision",
                    o.line,
                ))
            new_type = kwarg(o.node, "type_")
            if new_type is not None:
                old = kwarg(o.node, "existing_type")
                old_text = ast.unparse(old) if old is not None else "?"
                warnings.append(Finding(
                    "type_change",
                    f"changes type of {o.table}.{o.column} from {old_text} to {ast.unparse(new_type)}: check existing "
                    "values convert (PostgreSQL may need postgresql_using=...) and that the table rewrite is acceptable",
                    o.line,
                ))
        elif o.op in ("create_index",) and postgres and o.table not in created_tables:
            if literal(kwarg(o.node, "postgresql_concurrently")) is not True:
                warnings.append(Finding(
                    "index_not_concurrent",
                    f"creates an index on existing table {o.table} while blocking writes; on a large table use "
                    "postgresql_concurrently=True inside 'with op.get_context().autocommit_block():'",
                    o.line,
                ))
        if postgres and o.op in ("create_table", "add_column", "alter_column"):
            for name in enum_names(o.node):
                dropped = re.search(rf"DROP\s+TYPE\s+(IF\s+EXISTS\s+)?\"?{re.escape(name)}\b", downgrade_text, re.I) or (
                    re.search(rf"name=['\"]{re.escape(name)}['\"]\)\.drop\(", downgrade_text)
                )
                created = re.search(rf"name=['\"]{re.escape(name)}['\"]\)\.create\(", ast.unparse(funcs["upgrade"]))
                drop_hint = (f"the downgrade must drop it (sa.Enum(name={name!r}).drop(op.get_bind(), checkfirst=True)) "
                             "or the next upgrade fails with 'type already exists'")
                if o.op == "add_column" and not created:
                    warnings.append(Finding(
                        "enum_change",
                        f"{o.describe()} uses PostgreSQL enum type {name!r}, and add_column does not create it (the "
                        f"upgrade fails: type does not exist): call sa.Enum(<values>, name={name!r}).create(op.get_bind(), "
                        f"checkfirst=True) before it; {drop_hint}",
                        o.line,
                    ))
                elif o.op == "alter_column" or not dropped:
                    warnings.append(Finding(
                        "enum_change",
                        f"PostgreSQL enum type {name!r} is created/altered by {o.describe()}; {drop_hint}; new enum "
                        "values need ALTER TYPE ... ADD VALUE, which autogenerate does not write",
                        o.line,
                    ))
    if ups and body_is_empty(funcs.get("downgrade")):
        line = funcs["downgrade"].lineno if "downgrade" in funcs else 1
        warnings.append(Finding("empty_downgrade", "downgrade() does nothing: this revision cannot be rolled back", line))
    warnings.sort(key=lambda w: w.line)
    return Review(str(path), assigns.get("revision"), assigns.get("down_revision"), ups, downs, warnings)


# --- scratch database for the roundtrip ----------------------------------------------------


@contextmanager
def scratch_database(url: Any) -> Iterator[Any]:
    """A new, empty database next to ``url``'s (a temp file for SQLite); dropped afterwards.

    Needs CREATEDB on PostgreSQL, CREATE/DROP on MySQL/MariaDB. ``url``'s own database is only
    used to connect; nothing in it is read or changed.
    """
    backend = url.get_backend_name()
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="alembic-roundtrip-") as tmp:
            yield url.set(database=str(Path(tmp) / "roundtrip.db"))
        return
    if backend not in ("postgresql", "mysql", "mariadb"):
        raise RuntimeError(f"roundtrip supports postgresql, mysql, mariadb and sqlite, not {backend}")
    name = f"alembic_roundtrip_{secrets.token_hex(4)}"
    quote = '"' if backend == "postgresql" else "`"
    asyncio.run(admin_execute(url, f"CREATE DATABASE {quote}{name}{quote}"))
    try:
        yield url.set(database=name)
    finally:
        drop = f"DROP DATABASE IF EXISTS {quote}{name}{quote}"
        asyncio.run(admin_execute(url, drop + (" WITH (FORCE)" if backend == "postgresql" else ""), fallback=drop))


async def admin_execute(url: Any, sql: str, fallback: str | None = None) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            try:
                await conn.execute(text(sql))
            except DBAPIError:
                if fallback is None:
                    raise
                await conn.execute(text(fallback))  # PostgreSQL < 13 has no WITH (FORCE)
    finally:
        await engine.dispose()


# --- output safety -------------------------------------------------------------------------


class MaskingStream:
    """A text stream that masks secrets in everything written through it (line-buffered)."""

    def __init__(self, stream: Any, mask: Any) -> None:
        self.stream, self.mask, self.pending = stream, mask, ""

    def write(self, text: str) -> int:
        self.pending += text
        if "\n" in self.pending:
            done, _, self.pending = self.pending.rpartition("\n")
            self.stream.write(self.mask(done) + "\n")
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.stream.write(self.mask(self.pending))
            self.pending = ""
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

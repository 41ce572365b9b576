"""Enum values the models have and the database lacks (importable; no CLI here).

Autogenerate compares tables and columns, not the labels of an enum type: a value added to a Python
``Enum`` yields "no changes" while the database type lacks it, and inserting it then fails.
``enum_drift(connection, metadata)`` reads the database's enum labels (PostgreSQL ``pg_enum``;
MySQL/MariaDB the ``ENUM(...)`` column types in information_schema) and compares them with every
``sa.Enum`` column of the models. Each difference carries the exact statement to write in a revision.
SQLite (and ``native_enum=False``) stores enums as VARCHAR: nothing to compare.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Enum, MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeDecorator


@dataclass
class EnumDrift:
    type_name: str | None  # the PostgreSQL type; None on MySQL/MariaDB (the enum belongs to the column)
    tables: list[str]  # table.column pairs that use it
    missing_in_database: list[str]
    extra_in_database: list[str]
    statements: list[str] = field(default_factory=list)  # the SQL to put in a revision (op.execute(...))

    def message(self) -> str:
        where = self.type_name and f"enum type {self.type_name}" or f"ENUM column {', '.join(self.tables)}"
        parts = []
        if self.missing_in_database:
            parts.append(
                f"the models have {', '.join(map(repr, self.missing_in_database))}, which {where} in the "
                "database lacks (inserting them fails); autogenerate does not write this: add "
                + "; ".join(f'op.execute("{s}")' for s in self.statements)
                + " to a revision"
            )
        if self.extra_in_database:
            parts.append(
                f"{where} in the database also has {', '.join(map(repr, self.extra_in_database))}, which "
                "the models lack (rows may still hold it; removing a value needs a data migration)"
            )
        return "; ".join(parts)


def enum_of(type_: Any) -> Enum | None:
    if isinstance(type_, TypeDecorator):
        type_ = type_.impl_instance
    return type_ if isinstance(type_, Enum) and type_.native_enum else None


def model_enums(metadata: MetaData | list[MetaData]) -> list[tuple[str | None, str, str, Enum, bool]]:
    """(schema, table, column, Enum type, nullable) for every enum column of the models."""
    found = []
    for md in metadata if isinstance(metadata, (list, tuple)) else [metadata]:
        for table in md.tables.values():
            for column in table.columns:
                enum = enum_of(column.type)
                if enum is not None:
                    found.append((table.schema, table.name, column.name, enum, bool(column.nullable)))
    return found


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def postgresql_drift(conn: Connection, metadata: MetaData | list[MetaData]) -> list[EnumDrift]:
    rows = conn.execute(
        text(
            "SELECT n.nspname, t.typname, e.enumlabel FROM pg_type t JOIN pg_enum e ON e.enumtypid = t.oid "
            "JOIN pg_namespace n ON n.oid = t.typnamespace ORDER BY n.nspname, t.typname, e.enumsortorder"
        )
    ).all()
    current = conn.execute(text("SELECT current_schema()")).scalar()
    labels: dict[tuple[str, str], list[str]] = {}
    for schema, name, label in rows:
        labels.setdefault((schema, name), []).append(label)
    by_type: dict[tuple[str, str], tuple[Enum, list[str]]] = {}
    for schema, table, column, enum, _ in model_enums(metadata):
        if not enum.name:
            continue
        key = (str(enum.schema or schema or current), enum.name)
        by_type.setdefault(key, (enum, []))[1].append(f"{table}.{column}")
    drifts = []
    for (schema, name), (enum, users) in sorted(by_type.items()):
        have = labels.get((schema, name))
        if have is None:  # a new type: the revision creates it (or enum_change says it must)
            continue
        want = list(enum.enums)
        missing = [v for v in want if v not in have]
        extra = [v for v in have if v not in want]
        if not missing and not extra:
            continue
        qualified = name if schema == current else f"{schema}.{name}"
        statements = []
        for value in missing:
            before = [v for v in want[: want.index(value)] if v in have or v in missing]
            position = (
                f" AFTER {quote_literal(before[-1])}"
                if before
                else (f" BEFORE {quote_literal(have[0])}" if have else "")
            )
            statements.append(f"ALTER TYPE {qualified} ADD VALUE IF NOT EXISTS {quote_literal(value)}{position}")
        drifts.append(EnumDrift(name, users, missing, extra, statements))
    return drifts


ENUM_LABEL = re.compile(r"'((?:[^']|'')*)'")


def mysql_drift(conn: Connection, metadata: MetaData | list[MetaData]) -> list[EnumDrift]:
    rows = conn.execute(
        text(
            "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
            "WHERE DATA_TYPE = 'enum' AND TABLE_SCHEMA = DATABASE()"
        )
    ).all()
    current = conn.execute(text("SELECT DATABASE()")).scalar()
    columns = {
        (s, t.lower(), c.lower()): [m.replace("''", "'") for m in ENUM_LABEL.findall(ct)] for s, t, c, ct in rows
    }
    drifts = []
    for schema, table, column, enum, nullable in model_enums(metadata):
        have = columns.get((schema or current, table.lower(), column.lower()))
        if have is None:
            continue
        want = list(enum.enums)
        missing = [v for v in want if v not in have]
        extra = [v for v in have if v not in want]
        if not missing and not extra:
            continue
        labels = ", ".join(quote_literal(v) for v in want + [v for v in extra])  # keep values rows may hold
        # MODIFY COLUMN restates the whole column: repeat its DEFAULT / COMMENT if it has them
        statement = f"ALTER TABLE {table} MODIFY COLUMN {column} ENUM({labels}){'' if nullable else ' NOT NULL'}"
        drifts.append(EnumDrift(None, [f"{table}.{column}"], missing, extra, [statement] if missing else []))
    return drifts


def enum_drift(conn: Connection, metadata: MetaData | list[MetaData]) -> list[EnumDrift]:
    """Differences between the models' enums and the database's (empty on SQLite and other backends)."""
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql_drift(conn, metadata)
    if name in ("mysql", "mariadb"):
        return mysql_drift(conn, metadata)
    return []

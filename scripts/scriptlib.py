"""Shared plumbing for the skill's scripts (setup-alembic, generate-migration, test-connection,
optimize-queries): exit codes, password masking, URL parsing, JSON/human output, the argument
parser class, the pip-package map, text shortening and the AST keyword lookup.

Every script imports it the same way: ``sys.path.insert(0, <scripts dir>)`` then ``import scriptlib``.

Every script: ``--json`` prints exactly one JSON object on stdout; human text otherwise;
diagnostics go to stderr; passwords never appear in any output.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import re
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_PROBLEMS = 1  # the operation failed, or the check found problems
EXIT_USAGE = 2  # bad usage or bad input (unknown option, malformed URL, missing argument)
EXIT_ENV = 3  # environment problem (missing package, no Alembic setup)

MAX_LIST = 50  # longer lists are summarised ("... and N more")

# scheme://user:password@host -> scheme://user:***@host, for any text (error messages included)
_PASSWORD_IN_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)(?P<at>@)")
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret (e.g. the URL's password) so ``mask()`` removes it from any text."""
    if value and len(value) >= 3:
        _secrets.add(value)


def mask(text: Any) -> str:
    """``text`` with passwords replaced by ``***`` (URL userinfo and every registered secret)."""
    out = _PASSWORD_IN_URL.sub(lambda m: f"{m['head']}***{m['at']}", str(text))
    for secret in sorted(_secrets, key=len, reverse=True):
        out = out.replace(secret, "***")
        quoted = _url_quote(secret)
        if quoted != secret:
            out = out.replace(quoted, "***")
    return out


def _url_quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


class UsageError(Exception):
    """Bad usage or input: exit 2."""


class EnvironmentProblem(Exception):
    """Missing package or setup: exit 3."""


# Python module -> the package pip installs it from (drivers, SQLAlchemy, tools the scripts use).
PIP_PACKAGES = {
    "asyncpg": "asyncpg",
    "aiomysql": "aiomysql",
    "pymysql": "PyMySQL",
    "asyncmy": "asyncmy",
    "aiosqlite": "aiosqlite",
    "psycopg": "psycopg[binary]",
    "psycopg_async": "psycopg[binary]",
    "psycopg_pool": "psycopg-pool",
    "psycopg2": "psycopg2-binary",
    "pg8000": "pg8000",
    "MySQLdb": "mysqlclient",
    "mysql": "mysql-connector-python",
    "mariadb": "mariadb",
    "greenlet": "sqlalchemy[asyncio]",
    "sqlalchemy": "sqlalchemy[asyncio]",
    "oracledb": "oracledb",
    "aioodbc": "aioodbc",
    "pyodbc": "pyodbc",
    "alembic": "alembic",
}


def pip_package(module: str) -> str:
    """The pip package that provides ``module`` (the module's own name when unknown)."""
    return PIP_PACKAGES.get(module, module)


def require_module(module: str, pip_name: str | None = None) -> None:
    """Exit-3 style error (raises EnvironmentProblem) when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        pkg = pip_name or pip_package(module)
        raise EnvironmentProblem(f"package {pkg!r} is not installed; install it with: pip install '{pkg}'")


def parse_url(raw: str | None, *, what: str = "database URL") -> Any:
    """``sqlalchemy.engine.URL`` from ``raw`` (or ``DATABASE_URL``); UsageError when malformed/missing."""
    require_module("sqlalchemy", "sqlalchemy[asyncio]")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    raw = raw or os.environ.get("DATABASE_URL")
    if not raw:
        raise UsageError(f"no {what}: pass --url URL or set DATABASE_URL")
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        register_password_from_raw(raw)
        raise UsageError(f"malformed {what} {mask(raw)!r}: {mask(exc)}") from None
    register_secret(url.password if isinstance(url.password, str) else None)
    return url


def register_password_from_raw(raw: str) -> None:
    m = _PASSWORD_IN_URL.search(raw)
    if m:
        register_secret(m["pw"])


def masked_url(url: Any) -> str:
    return url.render_as_string(hide_password=True) if hasattr(url, "render_as_string") else mask(url)


def bounded(items: list[Any], limit: int = MAX_LIST) -> tuple[list[Any], int]:
    """The first ``limit`` items and how many were left out."""
    return items[:limit], max(0, len(items) - limit)


def shorten(text: Any, limit: int = 400) -> str:
    """``text`` on one line (whitespace folded), cut to ``limit`` characters with "...", masked."""
    one = " ".join(str(text).split())
    return mask(one if len(one) <= limit else one[: limit - 3] + "...")


def call_kwarg(call: ast.Call, name: str) -> ast.expr | None:
    """The value of keyword argument ``name`` in ``call`` (AST), or None."""
    return next((kw.value for kw in call.keywords if kw.arg == name), None)


class ArgumentParser(argparse.ArgumentParser):
    """argparse without its own printing and ``exit(2)``: errors raise ``UsageError`` so the script's
    one exit path reports them (JSON included) with exit code 2."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def info(*parts: Any) -> None:
    """A diagnostic line on stderr (masked)."""
    print(mask(" ".join(str(p) for p in parts)), file=sys.stderr)


def emit(result: dict[str, Any], *, as_json: bool, human: Iterable[str] = ()) -> None:
    """The script's one result: a JSON object on stdout, or human lines on stdout (all masked)."""
    if as_json:
        sys.stdout.write(mask(json.dumps(result, default=str, sort_keys=False)) + "\n")
    else:
        for line in human:
            sys.stdout.write(mask(line) + "\n")
    sys.stdout.flush()


def fail(code: int, message: str, *, as_json: bool, extra: dict[str, Any] | None = None) -> NoReturn:
    """Print a one-line error (stderr; plus the JSON object on stdout with --json) and exit."""
    print(f"error: {mask(message)}", file=sys.stderr)
    if as_json:
        emit({"ok": False, "error": mask(message), "exit_code": code, **(extra or {})}, as_json=True)
    sys.exit(code)


def wants_json(argv: list[str]) -> bool:
    return "--json" in argv

"""Shared plumbing for the skill's scripts (setup-alembic, generate-migration, test-connection,
optimize-queries): exit codes, password masking, URL parsing, JSON/human output, the argument
parser class, the pip-package map, text shortening and the AST keyword lookup.

Database URLs, the same way in every script: ``check_url(raw)`` / ``parse_url(raw)`` (``raw`` or
``$DATABASE_URL``) raise ``BadURL`` (a ``UsageError``: exit 2) for a missing or malformed URL, an
unencoded '@' in the password, a port out of range, and (``require_async=True``, the default) an
unknown dialect/driver, a synchronous driver (naming the async URL) or a query option the driver
rejects; ``require_driver(dialect)`` raises ``EnvironmentProblem`` (exit 3) when its package is
missing. ``mask()`` hides every form of every password it has seen, and ``masked_url()`` renders a URL.

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
from dataclasses import dataclass, field
from typing import Any, NoReturn

EXIT_OK = 0
EXIT_PROBLEMS = 1  # the operation failed, or the check found problems
EXIT_USAGE = 2  # bad usage or bad input (unknown option, malformed URL, missing argument)
EXIT_ENV = 3  # environment problem (missing package, no Alembic setup)

MAX_LIST = 50  # longer lists are summarised ("... and N more")

# scheme://user:password@host -> scheme://user:***@host, in any text (error messages included). The
# password runs to the LAST '@' of the URL token: an unencoded '@' in it ("user:p@ss@host") must not
# leave the rest of the password visible as if it were the host.
_PASSWORD_IN_URL = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)(?P<pw>\S*)(?P<at>@)")
_secrets: set[str] = set()
_env_url_registered = False  # $DATABASE_URL's password, registered at the first mask()


def register_secret(value: str | None) -> None:
    """Remember a secret (e.g. the URL's password) so ``mask()`` removes it from any text."""
    if value and len(value) >= 3:
        _secrets.add(value)


def mask(text: Any) -> str:
    """``text`` with passwords replaced by ``***``: URL userinfo, every registered secret, and the password
    of ``$DATABASE_URL`` (registered at the first call, so no script can forget it)."""
    global _env_url_registered
    if not _env_url_registered:
        _env_url_registered = True
        register_url_secrets(os.environ.get("DATABASE_URL"))
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
    """Missing package or setup: exit 3. ``pip_package``: what to install, when that is the problem."""

    def __init__(self, message: str, *, pip_package: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.pip_package = pip_package
        self.hint = hint


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
        raise EnvironmentProblem(
            f"package {pkg!r} is not installed; install it with: pip install '{pkg}'", pip_package=pkg
        )


# --- database URLs: one parser, one corrected-URL rule, one masked rendering for every script ---

DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306}
# The async driver to name when a URL names a synchronous one (or none).
ASYNC_DRIVER_FOR = {"postgresql": "asyncpg", "mysql": "aiomysql", "mariadb": "aiomysql", "sqlite": "aiosqlite"}
# URL query options a driver's connect() rejects -> the name that driver takes instead (libpq's names on asyncpg).
REJECTED_QUERY_OPTIONS = {"asyncpg": {"sslmode": "ssl", "connect_timeout": "timeout"}}
# (no "user:password@" in these texts: mask() would rightly hide the placeholder)
URL_FORMAT = "dialect+driver://user@host:port/database, the password after 'user:'"
URL_FORMAT_HINT = (
    f"format: {URL_FORMAT}, e.g. postgresql+asyncpg://app@db:5432/app; URL-encode special "
    "characters in the password: @ -> %40, : -> %3A, / -> %2F, # -> %23"
)
_SECRET_QUERY_KEYS = ("pass", "secret", "token")


class BadURL(UsageError):
    """A database URL that cannot work for the script: exit 2, ``error_kind`` ``bad_url``.

    ``message`` says what is wrong and ``hint`` what to do; ``corrected_url`` (masked) is the URL to
    use when one can be derived, ``sync_driver`` the synchronous driver the URL named, ``url`` the
    masked URL when it parsed (``parsed``: the URL object). ``str(exc)`` is message and hint on one
    line. All texts are masked.
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        corrected_url: str | None = None,
        sync_driver: str | None = None,
        url: str | None = None,
        parsed: Any = None,
    ) -> None:
        self.parsed = parsed  # the sqlalchemy URL when the text parsed (its password is not masked)
        self.message = mask(message)
        self.hint = mask(hint) if hint else None
        self.corrected_url = corrected_url
        self.sync_driver = sync_driver
        self.url = url
        super().__init__(self.message + (f"; {self.hint}" if self.hint else ""))


@dataclass
class CheckedURL:
    """What ``check_url`` learned about a URL that can work."""

    url: Any  # sqlalchemy.engine.URL
    dialect: Any = None  # the dialect class SQLAlchemy will use (None with require_async=False)
    driver: str | None = None  # its DBAPI name, e.g. "asyncpg"
    corrected_url: str | None = None  # masked: the same URL with its async driver named explicitly
    warnings: list[str] = field(default_factory=list)


def register_url_secrets(raw: str | None) -> None:
    """Register every form of the password in ``raw`` (also when ``raw`` does not parse): the text
    between ``user:`` and the URL's last '@', decoded too, and for a password with an unencoded '@'
    the parts before and after its first '@' (what SQLAlchemy would read as password and host)."""
    from urllib.parse import unquote

    if not raw:
        return
    m = _PASSWORD_IN_URL.search(raw)
    if m is None:
        return
    password = m["pw"]
    # "p@ss@word": SQLAlchemy reads the password "p" and the host "ss@word@host"
    candidates = {password, *password.split("@", 1)}
    for value in candidates:
        register_secret(value)
        register_secret(unquote(value))


def _register_query_secrets(url: Any) -> None:
    for key, value in url.query.items():
        if any(word in key.lower() for word in _SECRET_QUERY_KEYS):
            for v in value if isinstance(value, tuple) else (value,):
                register_secret(v)


def async_url(url: Any) -> Any:
    """``url`` with its backend's async driver named, and libpq-only query options translated for asyncpg."""
    backend = url.get_backend_name()
    driver = ASYNC_DRIVER_FOR[backend]
    fixed = url.set(drivername=f"{backend}+{driver}")
    renames = REJECTED_QUERY_OPTIONS.get(driver, {})
    if any(k in fixed.query for k in renames):
        fixed = fixed.set(query={renames.get(k, k): v for k, v in fixed.query.items()})
    return fixed


def masked_url(url: Any) -> str:
    """The URL as text with its password (and any secret in its query) replaced by ``***``."""
    if not hasattr(url, "render_as_string"):
        return mask(url)
    if url.host and "@" in url.host:  # part of a password with an unencoded '@'
        url = url.set(host="***")
    return mask(url.render_as_string(hide_password=True))


def rejected_option(url: Any, option: str, driver: str) -> BadURL:
    """The error for a URL query option ``driver``'s connect() rejects (``?sslmode=`` on asyncpg)."""
    renames = REJECTED_QUERY_OPTIONS.get(driver, {})
    if option in renames and url.get_backend_name() in ASYNC_DRIVER_FOR:
        fixed = masked_url(async_url(url))
        taken = ", ".join(f"{new}=" for new in renames.values())
        return BadURL(
            f"the {driver} driver does not accept the URL query option {option!r}",
            hint=f"{driver} takes {taken} not {option}=: use {fixed}",
            corrected_url=fixed,
            url=masked_url(url),
            parsed=url,
        )
    return BadURL(
        f"the {driver} driver does not accept the URL query option {option!r}",
        hint=f"remove ?{option}= or pass the {driver} equivalent (see the driver's connect() parameters)",
        url=masked_url(url),
        parsed=url,
    )


def check_url(
    raw: str | None, *, require_async: bool = True, source: str | None = None, how: str = "pass --url URL"
) -> CheckedURL:
    """Parse and check a database URL (``raw``, else ``$DATABASE_URL``); raise ``BadURL`` (exit 2).

    Always: registers every form of the password with ``mask()``; refuses a missing or malformed
    URL, a port outside 1-65535 and a password with an unencoded '@' (the raw text is never echoed).
    With ``require_async`` (scripts that connect with ``create_async_engine``) also: an unknown
    dialect or driver, a synchronous driver (the message names the async URL to use), and a query
    option the async driver rejects. A URL that names no driver gets a warning and ``corrected_url``.
    ``EnvironmentProblem`` (exit 3) when SQLAlchemy itself is not installed.
    """
    if not raw:
        raw, source = os.environ.get("DATABASE_URL"), "DATABASE_URL"
    if not raw:
        raise BadURL(
            f"no database URL: {how} or set DATABASE_URL",
            hint=f"e.g. DATABASE_URL='postgresql+asyncpg://app@db:5432/app' ({URL_FORMAT})",
        )
    register_url_secrets(raw)
    where = f" in {source}" if source else ""
    require_module("sqlalchemy", "sqlalchemy[asyncio]")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(raw)
    except (ArgumentError, ValueError) as exc:
        scheme = raw.split("://", 1)[0] if "://" in raw else ""
        detail = "invalid port" if isinstance(exc, ValueError) else "cannot parse it"
        # never the raw text: with an unencoded '@' in the password a part of it could look like a host
        shown = (
            f"scheme {scheme!r}" if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.\-]*", scheme) else (f"expected {URL_FORMAT}")
        )
        raise BadURL(f"malformed database URL{where} ({detail}; {shown})", hint=URL_FORMAT_HINT) from None
    if isinstance(url.password, str):
        register_secret(url.password)
    _register_query_secrets(url)
    if url.host and "@" in url.host:
        raise BadURL(
            f"malformed database URL{where}: the host part contains '@', so the password probably "
            "contains an unencoded '@'",
            url=masked_url(url),
            parsed=url,
            hint="URL-encode the password (@ -> %40, e.g. urllib.parse.quote_plus(password))",
        )
    if url.port is not None and not 0 < url.port < 65536:
        raise BadURL(
            f"malformed database URL{where}: port {url.port} is out of range (1-65535)",
            url=masked_url(url),
            parsed=url,
            hint="fix the port after the host (PostgreSQL 5432, MySQL/MariaDB 3306)",
        )
    checked = CheckedURL(url)
    if require_async:
        _check_async_dialect(checked)
    return checked


def parse_url(
    raw: str | None, *, require_async: bool = True, source: str | None = None, how: str = "pass --url URL"
) -> Any:
    """``sqlalchemy.engine.URL`` from ``raw`` (else ``$DATABASE_URL``), checked as ``check_url`` does."""
    return check_url(raw, require_async=require_async, source=source, how=how).url


def _check_async_dialect(checked: CheckedURL) -> None:
    from sqlalchemy.exc import NoSuchModuleError

    url = checked.url
    backend, named = url.get_backend_name(), url.drivername.partition("+")[2]
    try:
        dialect = url.get_dialect(_is_async=True)
    except NoSuchModuleError:
        try:
            url.set(drivername=backend).get_dialect()
        except NoSuchModuleError:
            raise BadURL(
                f"unknown dialect {backend!r} in the URL scheme",
                url=masked_url(url),
                parsed=url,
                hint="the scheme is DIALECT+DRIVER, e.g. postgresql+asyncpg, mysql+aiomysql, sqlite+aiosqlite",
            ) from None
        suggestion = ASYNC_DRIVER_FOR.get(backend)
        fixed = masked_url(url.set(drivername=f"{backend}+{suggestion}")) if suggestion else None
        raise BadURL(
            f"unknown driver {named!r} for {backend}",
            corrected_url=fixed,
            url=masked_url(url),
            parsed=url,
            hint=f"use {fixed}" if fixed else "check the driver name in the URL scheme",
        ) from None
    checked.dialect, checked.driver = dialect, dialect.driver
    if not getattr(dialect, "is_async", False):  # create_async_engine() refuses it ("requires an async driver")
        why = "names no driver, so SQLAlchemy uses" if not named else "names"
        problem = (
            f"the URL {why} the synchronous driver {dialect.driver!r}; an async app (create_async_engine) "
            "needs an async driver"
        )
        if backend not in ASYNC_DRIVER_FOR:
            raise BadURL(
                problem,
                sync_driver=dialect.driver,
                url=masked_url(url),
                parsed=url,
                hint=f"use an async driver for {backend} (see the SQLAlchemy dialect docs)",
            )
        fixed = masked_url(async_url(url))
        where = " (your password in place of ***)" if url.password else ""
        raise BadURL(
            problem,
            sync_driver=dialect.driver,
            corrected_url=fixed,
            url=masked_url(url),
            parsed=url,
            hint=f"use {fixed}{where}",
        )
    for option in url.query:
        if option in REJECTED_QUERY_OPTIONS.get(dialect.driver, {}):
            raise rejected_option(url, option, dialect.driver)
    if not named and backend in ASYNC_DRIVER_FOR:
        checked.corrected_url = masked_url(async_url(url))
        checked.warnings.append(
            f"the URL names no driver: this SQLAlchemy picks {dialect.driver!r} (async), but other versions pick "
            f"a synchronous one; name it explicitly, e.g. {checked.corrected_url}"
        )


def check_env_url(*, require_async: bool = False) -> None:
    """For a script that only hands ``$DATABASE_URL`` on (optimize-queries runs a command with it): register
    its password with ``mask()``, and raise ``BadURL`` (exit 2) when it is set but malformed. Without
    SQLAlchemy in this interpreter only the masking is done (the command may run another Python)."""
    raw = os.environ.get("DATABASE_URL")
    register_url_secrets(raw)
    if raw and importlib.util.find_spec("sqlalchemy") is not None:
        check_url(raw, require_async=require_async, source="DATABASE_URL")


def require_driver(dialect: Any) -> None:
    """``EnvironmentProblem`` (exit 3, with ``pip_package``) when the dialect's DBAPI module does not import."""
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        module = (exc.name or "").split(".")[0] or str(dialect.driver)
        package = pip_package(module)
        raise EnvironmentProblem(
            f"the {dialect.driver} driver needs the Python package {package!r} (module {module!r} is not "
            f"importable by {sys.executable}); install it with: pip install '{package}'",
            pip_package=package,
            hint=f"pip install '{package}' in the environment that runs the app "
            "(or set PYTHON=/path/to/venv/bin/python)",
        ) from None


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

    def error(self, message: str) -> NoReturn:
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

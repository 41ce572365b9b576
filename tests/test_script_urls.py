"""The scripts' shared URL handling and masking (scripts/scriptlib.py), the failure tables
(scripts/connection_errors.py) and test-connection used as a library (scripts/connection_check.py).

In-process and server-free: the same URLs through every script as subprocesses are in
tests/test_no_secret_leaks.py (test_odd_passwords_through_every_script).
"""

from __future__ import annotations

import errno
import json
import socket
import sqlite3
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import connection_check
import connection_errors
import scriptlib

# Documented in references/diagnostics.md (test-connection, "JSON output"): same names, same order.
REPORT_KEYS = [
    "ok",
    "exit_code",
    "error_kind",
    "error",
    "hint",
    "url",
    "backend",
    "driver",
    "host",
    "port",
    "resolved",
    "server_version",
    "database",
    "user",
    "tls",
    "tls_version",
    "tls_cipher",
    "dns_ms",
    "first_connect_ms",
    "connect_ms",
    "select1_ms",
    "max_connections",
    "capacity",
    "sync_driver",
    "corrected_url",
    "pip_package",
    "timeout_s",
    "elapsed_ms",
    "warnings",
]


# --- mask() -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        # SQLAlchemy renders "u:p@ss@host" as password "***" and host "ss@host": the host part is password
        ("postgresql+asyncpg://postgres:***@XYZ@127.0.0.1/test", ["XYZ"]),
        ("error: postgresql+asyncpg://app:Qv8@Lm4@Tz6@db:5432/app failed", ["Qv8", "Lm4", "Tz6"]),
        ('{"url": "mysql+aiomysql://root:Sekr3t%Pa55-XYZ@127.0.0.1/test", "x": 1}', ["Sekr3t", "Pa55", "XYZ"]),
        ("postgresql://u:a/b#c@h/db", ["a/b#c"]),
    ],
)
def test_mask_hides_every_part_of_the_password(text: str, hidden: list[str]) -> None:
    masked = scriptlib.mask(text)
    assert "***@" in masked, masked
    for part in hidden:
        assert part not in masked, masked


@pytest.mark.parametrize(
    "text",
    [
        "mysql+aiomysql://root@127.0.0.1:3306/test",
        "postgresql+asyncpg://app@db:5432/app?ssl=require",
        "see user@example.com for help",
    ],
)
def test_mask_leaves_text_without_a_password_alone(text: str) -> None:
    assert scriptlib.mask(text) == text


def test_registered_password_is_hidden_in_every_form() -> None:
    scriptlib.register_url_secrets("postgresql+asyncpg://u:Wq3@Rt5@Yu7@h/db")
    for shown in ("Wq3@Rt5@Yu7", "Rt5@Yu7", "Wq3%40Rt5%40Yu7"):
        assert scriptlib.mask(f"x {shown} y") == "x *** y"


# --- check_url() / parse_url() -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("not a url Zx9-NOT-A-URL", ["malformed database URL", "cannot parse"]),
        ("postgresql+asyncpg://u:pw@host:notaport/db", ["malformed database URL", "invalid port"]),
        ("postgresql+asyncpg:/u:pw@host/db", ["malformed database URL"]),
        ("postgresql+asyncpg://u:pw@host:99999/db", ["out of range"]),
        ("postgresql+asyncpg://u:Qv8@Lm4@Tz6@127.0.0.1/db", ["unencoded '@'"]),
        ("nosuchdb://u:pw@h/db", ["unknown dialect"]),
        ("postgresql+nosuchdriver://u:pw@h/db", ["unknown driver"]),
    ],
)
def test_bad_urls_raise_bad_url_without_echoing_the_password(raw: str, words: list[str]) -> None:
    with pytest.raises(scriptlib.BadURL) as caught:
        scriptlib.parse_url(raw)
    exc = caught.value
    assert isinstance(exc, scriptlib.UsageError)  # every script maps it to exit 2
    for word in words:
        assert word in str(exc), str(exc)
    for secret in ("Zx9-NOT-A-URL", "Qv8", "Lm4", "Tz6", ":pw@"):
        assert secret not in str(exc) and secret not in str(exc.url) and secret not in str(exc.corrected_url)


@pytest.mark.parametrize(
    ("raw", "fixed"),
    [
        (
            "postgresql+psycopg2://u:Sekr3t%Pa55-XYZ@db.example:5432/app?sslmode=require",
            "postgresql+asyncpg://u:***@db.example:5432/app?ssl=require",
        ),
        ("mysql+pymysql://u:Sekr3t%25Pa55-XYZ@db.example/app", "mysql+aiomysql://u:***@db.example/app"),
        ("mysql://u:pw@db.example/app", "mysql+aiomysql://u:***@db.example/app"),
        ("sqlite:///app.db", "sqlite+aiosqlite:///app.db"),
    ],
)
def test_sync_driver_names_the_async_url(raw: str, fixed: str) -> None:
    with pytest.raises(scriptlib.BadURL) as caught:
        scriptlib.check_url(raw)
    exc = caught.value
    assert exc.sync_driver and exc.corrected_url == fixed
    assert "synchronous driver" in str(exc) and fixed in str(exc)
    assert "Sekr3t" not in str(exc)


def test_sync_driver_is_fine_when_async_is_not_required() -> None:
    url = scriptlib.parse_url("postgresql+psycopg2://u:pw@h/db", require_async=False)
    assert url.get_driver_name() == "psycopg2"


@pytest.mark.parametrize(
    ("option", "fixed"), [("sslmode=require", "ssl=require"), ("connect_timeout=10", "timeout=10")]
)
def test_libpq_option_on_asyncpg(option: str, fixed: str) -> None:
    with pytest.raises(scriptlib.BadURL) as caught:
        scriptlib.check_url(f"postgresql+asyncpg://u:pw@h/db?{option}")
    assert caught.value.corrected_url == f"postgresql+asyncpg://u:***@h/db?{fixed}"


def test_good_url_and_the_url_without_driver() -> None:
    checked = scriptlib.check_url("postgresql+asyncpg://u:pw@h:5432/db")
    assert checked.driver == "asyncpg" and not checked.warnings and checked.corrected_url is None
    assert scriptlib.masked_url(checked.url) == "postgresql+asyncpg://u:***@h:5432/db"
    bare = scriptlib.check_url("sqlite+aiosqlite://")
    assert bare.driver == "aiosqlite"


def test_missing_url_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(scriptlib.BadURL, match="DATABASE_URL"):
        scriptlib.parse_url(None)
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://u:Ab1@Cd2@h/db")
    with pytest.raises(scriptlib.BadURL, match="in DATABASE_URL"):
        scriptlib.check_env_url()
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://u:pw@h/db")
    scriptlib.check_env_url()  # optimize-queries instruments sync engines too


# --- connection_errors ---------------------------------------------------------------------------


class FakeMySQLError(Exception):
    pass


FakeMySQLError.__module__ = "pymysql.err"


class FakeAsyncpgError(Exception):
    sqlstate = "28P01"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (socket.gaierror(-2, "Name or service not known"), "dns"),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "refused"),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable"),
        (TimeoutError(), "timeout"),
        (FakeAsyncpgError("password authentication failed"), "authentication"),
        (FakeMySQLError(1049, "Unknown database 'x'"), "database_missing"),
        (FakeMySQLError(1040, "Too many connections"), "too_many_connections"),
        (RuntimeError('FATAL: database "x" does not exist'), "database_missing"),
        (RuntimeError("something else"), "other"),
    ],
)
def test_classify(exc: BaseException, kind: str) -> None:
    assert connection_errors.classify(exc) == kind
    wrapper = RuntimeError("wrapped")
    wrapper.__cause__ = exc
    assert connection_errors.classify(wrapper) == kind  # found through the chain
    assert kind in connection_errors.ERROR_KINDS


# --- test-connection as a library ----------------------------------------------------------------


def test_check_connection_returns_a_typed_report(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    report = connection_check.check_connection(f"sqlite+aiosqlite:///{db}", timeout=30, workers=2)
    assert isinstance(report, connection_check.ConnectionReport)
    assert report.ok and report.exit_code == 0 and report.server_version.startswith("SQLite")
    assert report.capacity is not None and report.capacity.app_max_connections == 30
    data = report.to_dict()
    assert list(data) == REPORT_KEYS and json.loads(json.dumps(data)) == data
    assert report.lines()[-1] == "ok: connected"


def test_check_connection_reports_url_problems_without_raising() -> None:
    report = connection_check.check_connection("postgresql+psycopg2://u:Sekr3t%Pa55-XYZ@h/db", timeout=5)
    assert (report.exit_code, report.error_kind, report.sync_driver) == (2, "bad_url", "psycopg2")
    assert report.corrected_url == "postgresql+asyncpg://u:***@h/db"
    assert "Sekr3t" not in json.dumps(report.to_dict())
    missing = connection_check.check_connection(f"sqlite+aiosqlite:///{Path('/nonexistent/x.db')}", timeout=5)
    assert (missing.exit_code, missing.error_kind) == (1, "database_missing")

#!/usr/bin/env python3
"""test-connection: can an async SQLAlchemy app reach this database, and how well?

The command line over ``connection_check.check_connection`` (the logic) and
``connection_errors`` (the failure classification): parse the arguments, run the check, print the
one report (JSON or text), exit with its code. Run through ``scripts/test-connection.sh``;
``--help`` lists options and exit codes.
"""

from __future__ import annotations

import time

STARTED = time.monotonic()  # the --timeout budget counts from here (imports included)

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import scriptlib as sl
from connection_check import DEFAULT_TIMEOUT, ConnectionReport, check_connection

HELP_EPILOG = """\
exit codes:
  0  connected and SELECT 1 answered (warnings, e.g. about max_connections, may be present)
  1  could not connect; error_kind says why (dns, refused, timeout, authentication,
     database_missing, ssl; also too_many_connections, server_unavailable, unreachable,
     not_a_database (SQLite), other)
  2  bad usage (error_kind usage) or a bad URL (error_kind bad_url): malformed, unknown
     dialect/driver, a synchronous driver, or a query option the driver rejects (asyncpg
     takes ?ssl=, not ?sslmode=); corrected_url gives the URL to use when one can be derived
  3  the driver package (or SQLAlchemy/greenlet) is not installed (error_kind driver_missing;
     pip_package names what to install)

--json prints exactly one JSON object on stdout: ok, exit_code, error_kind, error, hint,
url (password masked), backend, driver, server_version, database, user, tls, connect_ms,
select1_ms, capacity, corrected_url, warnings. Diagnostics go to stderr.

example:
  scripts/test-connection.sh 'postgresql+asyncpg://app:secret@db:5432/app' --workers 4 --pool-size 5 --max-overflow 10
"""


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not (0 < number <= 3600):
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 3600 seconds, got {value}")
    return number


def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value!r}") from None
        if number < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {number}")
        return number

    return parse


def build_parser() -> sl.ArgumentParser:
    p = sl.ArgumentParser(
        prog="test-connection.sh",
        description=(
            "Check that an async SQLAlchemy app can reach its database: connect with the URL's async "
            "driver, run SELECT 1, report server, latency and TLS, flag synchronous drivers, compare the "
            "app's pool with max_connections, and classify failures. URL from the argument or DATABASE_URL."
        ),
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", nargs="?", metavar="URL", help="database URL (default: $DATABASE_URL)")
    p.add_argument("--url", dest="url_opt", metavar="URL", help="same as the positional URL")
    p.add_argument(
        "--timeout",
        type=positive_float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up after this many seconds in total (default {DEFAULT_TIMEOUT:g})",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--pool-size",
        type=int_at_least(0),
        metavar="N",
        help="the app's pool_size per process (0 = no limit; default 5 when another pool flag is given)",
    )
    p.add_argument(
        "--max-overflow",
        type=int_at_least(-1),
        metavar="M",
        help="the app's max_overflow per process (-1 = no limit; default 10)",
    )
    p.add_argument(
        "--workers",
        type=int_at_least(1),
        metavar="W",
        help="processes sharing the database: workers x replicas (default 1)",
    )
    return p


def run(argv: list[str]) -> ConnectionReport:
    """The report for these arguments (usage errors included)."""
    try:
        args = build_parser().parse_args(argv)
        if args.url and args.url_opt:
            raise sl.UsageError("give the URL once (positional or --url)")
    except sl.UsageError as exc:
        for raw in argv:  # a URL among bad arguments is still masked
            sl.register_url_secrets(raw)
        kind = "bad_url" if "URL" in str(exc) else "usage"
        return ConnectionReport(timeout_s=None).fail(sl.EXIT_USAGE, kind, str(exc), "see test-connection.sh --help")
    return check_connection(
        args.url or args.url_opt,
        timeout=args.timeout,
        workers=args.workers,
        pool_size=args.pool_size,
        max_overflow=args.max_overflow,
        started=STARTED,
    )


def main(argv: list[str]) -> int:
    as_json = sl.wants_json(argv)
    report = run(argv)
    sl.emit(report.to_dict(), as_json=as_json, human=report.lines())
    if report.exit_code != sl.EXIT_OK and report.error:
        print(f"error: {sl.mask(report.error)}", file=sys.stderr)
    sys.stderr.flush()
    if report.threads_abandoned:
        # the watchdog case: a driver or resolver thread is stuck, and the interpreter would wait for it at
        # shutdown (the event loop's executor threads are joined), well past --timeout
        os._exit(report.exit_code)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

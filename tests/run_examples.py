"""Run every ``examples/*.py`` as its own process and print one line per example plus a summary.

``python tests/run_examples.py [--url URL] [NAME ...]`` (URL default: ``DATABASE_URL``, else each
example's embedded SQLite). Exit 1 when any example fails. ``tests/test_examples.py`` and
``make demo`` both use ``discover()`` and ``run()`` from here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
# A guard against a hang, not a speed limit: generous, so a loaded machine never trips it. How long
# each example really takes is printed by `make demo` and `make bench`.
TIMEOUT = 900.0
# Bounded work under test: examples that take a size from the environment run smaller here.
TEST_SIZES = {"STREAMING_ROWS": "20000"}


@dataclass
class Outcome:
    name: str
    returncode: int
    seconds: float
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and "Traceback (most recent call last)" not in self.stderr


def discover() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.py") if not p.name.startswith((".", "_")))


def summary(path: Path) -> str:
    """First line of the example's module docstring (what it shows)."""
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text("utf-8"))) or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else ""


def run(path: Path, url: str | None = None, timeout: float = TIMEOUT, sizes: dict[str, str] | None = None) -> Outcome:
    env = dict(os.environ)
    env.update(sizes or {})
    env.pop("DATABASE_URL", None)
    if url:
        env["DATABASE_URL"] = url
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, str(path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = -1, str(exc.stdout or ""), f"timed out after {timeout:.0f}s\n{exc.stderr or ''}"
    return Outcome(path.stem, code, time.perf_counter() - start, out, err)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("names", nargs="*")
    args = parser.parse_args()
    paths = [p for p in discover() if not args.names or p.stem in args.names]
    failed = 0
    for path in paths:
        outcome = run(path, args.url)
        status = "ok  " if outcome.ok else "FAIL"
        print(f"{status} {outcome.name:<24} {outcome.seconds:5.1f}s  {summary(path)[:88]}")
        if not outcome.ok:
            failed += 1
            print("\n".join("     | " + ln for ln in outcome.stderr.strip().splitlines()[-15:]))
    print(f"{len(paths) - failed}/{len(paths)} examples passed" + (f", {failed} failed" if failed else ""))
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main())

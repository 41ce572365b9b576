"""Runtime overhead of optimize-queries: the 2,000-statement workload plain vs instrumented.

Prints, per backend, the ratio instrumented/plain of the fastest of 5 interleaved runs (the least
disturbed by other load on the machine) for the statement loop alone and for the whole process
(start-up included), with the default index checks (one EXPLAIN per SELECT shape) and with
--no-explain. Goal: loop ratio <= 1.5x. Also precision/recall of runtime mode on the corpus apps
(expected rule set per app and marked lines). Reported, never asserted (timings depend on the machine).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = Path(__file__).resolve().parent / "bench_workload.py"
SCRIPT = ROOT / "scripts" / "optimize-queries.sh"
ROUNDS = 5


def run_once(prefix: list[str], url: str | None) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHON"] = sys.executable
    if url:
        env["DATABASE_URL"] = url
    started = time.perf_counter()
    proc = subprocess.run(
        [*prefix, sys.executable, str(WORKLOAD)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"workload failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(lines[-1])["loop_s"], wall


@pytest.mark.bench
def test_overhead_ratio(backend: str, server_url: str) -> None:
    url = None if backend == "sqlite" else server_url
    variants = {
        "plain": [],
        "instrumented --no-explain": ["bash", str(SCRIPT), "--no-explain", "--"],
        "instrumented (default: EXPLAIN SELECTs)": ["bash", str(SCRIPT), "--"],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(ROUNDS):  # interleaved, so drift in machine load hits every variant alike
        for name, prefix in variants.items():
            samples[name].append(run_once(prefix, url))
    loop = {n: min(s[0] for s in v) for n, v in samples.items()}
    wall = {n: min(s[1] for s in v) for n, v in samples.items()}
    spread = {n: statistics.median(s[0] for s in v) / loop[n] for n, v in samples.items()}
    print(f"\noptimize-queries overhead on {backend}, 2000 statements, fastest of {ROUNDS} runs:")
    print(f"  plain: loop {loop['plain'] * 1000:.0f} ms, process {wall['plain'] * 1000:.0f} ms")
    for name in ("instrumented --no-explain", "instrumented (default: EXPLAIN SELECTs)"):
        print(
            f"  {name}: loop {loop[name] * 1000:.0f} ms = {loop[name] / loop['plain']:.2f}x plain (goal <= 1.5x); "
            f"process {wall[name] * 1000:.0f} ms = {wall[name] / wall['plain']:.2f}x"
        )
    print("  noise (median/fastest loop): " + ", ".join(f"{n} {v:.2f}" for n, v in spread.items()))


@pytest.mark.bench
def test_runtime_corpus_precision_recall(backend: str, server_url: str, tmp_path: Path) -> None:
    """Runtime mode over every corpus app with default flags: reported (rule, line) against the
    marked lines and each app's expected rule set."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_optimize_queries import APPS, expectations, expected_runtime

    url = None if backend == "sqlite" else server_url
    tp = fp = fn = 0
    wrong: list[str] = []
    for app in APPS:
        exp = expectations(app)
        wanted = expected_runtime(exp, backend)
        report = tmp_path / f"{app.stem}.json"
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        if url:
            env["DATABASE_URL"] = url
        subprocess.run(
            ["bash", str(SCRIPT), "--report", str(report), "--", sys.executable, str(app)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        found = {
            (f["rule"], f["line"])
            for f in json.loads(report.read_text())["findings"]
            if f["file"] == f"tests/corpus/{app.name}"
        }
        rules = {f["rule"] for f in json.loads(report.read_text())["findings"]}
        marked = {
            (rule, line)
            for (mode, rule), lines in exp["lines"].items()
            if mode == "runtime" and rule in wanted
            for line in lines
        }
        tp += len(found & marked)
        fn += len(marked - found)
        extra = rules - wanted
        fp += len(extra)
        if extra or marked - found:
            wrong.append(f"{app.stem}: extra {sorted(extra)}, missed {sorted(marked - found)}")
    print(
        f"\noptimize-queries runtime on the corpus ({len(APPS)} apps, {backend}, default flags): "
        f"precision {tp / max(1, tp + fp):.2f} ({tp}/{tp + fp}), recall {tp / max(1, tp + fn):.2f} ({tp}/{tp + fn})"
    )
    for line in wrong:
        print("  " + line)

"""Runtime overhead of optimize-queries: the 2,000-statement workload plain vs instrumented.

Prints, per backend, the ratio instrumented/plain of the fastest of 5 interleaved runs (the least
disturbed by other load on the machine) for the statement loop alone and for the whole process
(start-up included), with and without --explain. Goal: loop ratio <= 1.5x. Reported, never
asserted (timings depend on the machine).
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
    proc = subprocess.run([*prefix, sys.executable, str(WORKLOAD)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"workload failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    return json.loads(lines[-1])["loop_s"], wall


@pytest.mark.bench
def test_overhead_ratio(backend: str, server_url: str) -> None:
    url = None if backend == "sqlite" else server_url
    variants = {
        "plain": [],
        "instrumented": ["bash", str(SCRIPT), "--"],
        "instrumented --explain": ["bash", str(SCRIPT), "--explain", "--"],
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
    for name in ("instrumented", "instrumented --explain"):
        print(
            f"  {name}: loop {loop[name] * 1000:.0f} ms = {loop[name] / loop['plain']:.2f}x plain (goal <= 1.5x); "
            f"process {wall[name] * 1000:.0f} ms = {wall[name] / wall['plain']:.2f}x"
        )
    print("  noise (median/fastest loop): " + ", ".join(f"{n} {v:.2f}" for n, v in spread.items()))

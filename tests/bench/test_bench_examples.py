"""How long each example takes at its full size (streaming: 100,000 rows), per backend.

The test suite runs the examples with bounded sizes (``run_examples.TEST_SIZES``) and a generous
hang guard; the real figures are printed here. Reported, never asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_examples import discover, run

pytestmark = pytest.mark.bench


@pytest.mark.parametrize("path", discover(), ids=[p.stem for p in discover()])
def test_example_duration(path: Path, server_url: str, backend: str) -> None:
    outcome = run(path, None if backend == "sqlite" else server_url)
    assert outcome.ok, outcome.stderr[-2000:]
    print(f"\nexample {path.stem:<20} {backend:<10} {outcome.seconds:6.1f} s at full size")

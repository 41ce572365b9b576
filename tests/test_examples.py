"""Every examples/*.py runs as ``python examples/X.py`` on every available backend.

A new example is picked up without editing this file.
"""

from __future__ import annotations

import pytest
from run_examples import TEST_SIZES, discover, run

EXAMPLE_PATHS = discover()


@pytest.mark.parametrize("path", EXAMPLE_PATHS, ids=[p.stem for p in EXAMPLE_PATHS])
def test_example_runs(path, server_url: str, backend: str) -> None:
    outcome = run(path, None if backend == "sqlite" else server_url, sizes=TEST_SIZES)
    assert outcome.returncode == 0, f"{path.name} exited {outcome.returncode}\n{outcome.stderr[-3000:]}"
    assert "Traceback (most recent call last)" not in outcome.stderr, outcome.stderr[-3000:]
    assert outcome.stdout.strip(), f"{path.name} printed no trace"


def test_examples_exist() -> None:
    assert EXAMPLE_PATHS, "examples/ holds no example"

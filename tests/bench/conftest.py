"""Benchmarks: collected with the suite but deselected unless selected with ``-m bench``
(``make bench`` runs ``pytest tests/bench -m bench -q -s``). They print ratios; they never assert
timings."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench: a benchmark (skipped unless -m bench is given; prints ratios)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Benchmarks run only when selected with ``-m bench``; otherwise they are deselected (not skipped)."""
    if "bench" in (config.getoption("markexpr", "") or ""):
        return
    benches = [item for item in items if item.get_closest_marker("bench") is not None]
    if benches:
        config.hook.pytest_deselected(items=benches)
        items[:] = [item for item in items if item.get_closest_marker("bench") is None]

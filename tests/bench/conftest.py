"""Benchmarks: collected with the suite but skipped unless selected with ``-m bench``
(``make bench`` runs ``pytest tests/bench -m bench -q -s``). They print ratios; they never assert
timings."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench: a benchmark (skipped unless -m bench is given; prints ratios)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "bench" in (config.getoption("markexpr", "") or ""):
        return
    skip = pytest.mark.skip(reason="benchmark: run with `make bench` (pytest tests/bench -m bench -s)")
    for item in items:
        if item.get_closest_marker("bench") is not None:
            item.add_marker(skip)

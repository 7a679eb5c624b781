"""Benchmarks: run by `make bench`, print figures and ratios, assert no timings."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench: a benchmark (prints figures)")


@pytest.fixture(autouse=True)
def _bench_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("DISPARO_CONFIG", raising=False)


def rows(default: int) -> int:
    """How many rows a benchmark uses (BENCH_ROWS scales every benchmark down or up)."""
    return int(os.environ.get("BENCH_ROWS", default))

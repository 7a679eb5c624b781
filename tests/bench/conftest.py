"""Benchmarks: run by `make bench`, print figures and ratios, assert no timings."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.peers.postgres import PostgresServer, find_bindir, start_postgres


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench: a benchmark (prints figures)")


@pytest.fixture(autouse=True)
def _bench_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.delenv("DISPARO_CONFIG", raising=False)


def rows(default: int) -> int:
    """How many rows a benchmark uses (BENCH_ROWS scales every benchmark down or up)."""
    return int(os.environ.get("BENCH_ROWS", default))


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server from the machine's binaries (as the tests' peer), for the module."""
    if find_bindir() is None:
        pytest.skip(
            "PostgreSQL binaries (initdb, pg_ctl) not installed: apt-get install postgresql"
        )
    server = start_postgres()
    yield server
    server.stop()

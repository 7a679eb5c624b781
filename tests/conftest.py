"""Shared fixtures: hermetic plugins, clocks, stores on SQLite and a real PostgreSQL, the CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import settings

from engine.clock import TestClock
from engine.plugins import reset_plugins
from engine.store import Store
from engine.testing import builtin_plugin_names
from tests.peers.ftp import FtpServer, start_ftp_server
from tests.peers.postgres import PostgresServer, find_bindir, start_postgres
from tests.peers.sftp import SftpServer, start_sftp_server

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Timing varies on shared 2-core machines: hypothesis checks properties, not speed.
settings.register_profile("disparo", deadline=None, print_blob=True)
settings.load_profile("disparo")

#: disparo's own plugins: installed third-party ones (the example plugin in examples/ too)
#: stay out of the tests
BUILTIN_PLUGINS = builtin_plugin_names()


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("DISPARO_PLUGINS", ",".join(BUILTIN_PLUGINS))
    monkeypatch.delenv("DISPARO_BLOCK_PLUGINS", raising=False)
    monkeypatch.delenv("DISPARO_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps at the terminal's width
    monkeypatch.chdir(tmp_path)
    reset_plugins()
    yield
    reset_plugins()


@pytest.fixture
def clock() -> TestClock:
    return TestClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if find_bindir() is None:
        if IN_CI:
            pytest.fail("PostgreSQL binaries are required in CI (install postgresql)")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    name = postgres.create_database()
    yield postgres.url(name)
    postgres.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'disparo.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str, clock: TestClock) -> Iterator[Store]:
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


@pytest.fixture
def run_cli() -> object:
    """Invoke the CLI in-process: ``run_cli("check-name", "x.csv")`` -> click Result."""
    from engine.cli import build_cli

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(build_cli(), list(args), input=input, catch_exceptions=False)

    return invoke


# -- file-transfer peers (tests/peers) -------------------------------------------------------


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    root = tmp_path / "remote"
    root.mkdir()
    return root


@pytest.fixture
def ftp_server(ftp_root: Path) -> Iterator[FtpServer]:
    server = start_ftp_server(ftp_root)
    yield server
    server.stop()


@pytest.fixture
def ftps_server(ftp_root: Path) -> Iterator[FtpServer]:
    server = start_ftp_server(ftp_root, tls=True)
    yield server
    server.stop()


@pytest.fixture
def sftp_server(ftp_root: Path) -> Iterator[SftpServer]:
    server = start_sftp_server(ftp_root)
    yield server
    server.stop()

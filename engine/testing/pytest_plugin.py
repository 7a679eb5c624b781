"""pytest fixtures of disparo's test kit. A plugin's test suite enables them in its
``conftest.py`` with ``pytest_plugins = ["engine.testing.pytest_plugin"]`` (they are not
registered for every pytest run on the machine).

Fixtures: ``disparo_clock`` (a ``TestClock``), ``disparo_store`` (a SQLite store on it, in
``tmp_path``), ``disparo_plugins`` (disparo's built-in plugins only, whatever else is
installed; register yours on it), ``scripted`` (the ``Scripted`` channel class, its log and
script emptied) and ``smtp_sink`` (a running ``SmtpSink``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.clock import TestClock
from engine.plugins import Plugins
from engine.store import Store
from engine.testing.channels import Scripted
from engine.testing.plugins import hermetic_plugins
from engine.testing.smtp import SmtpSink, start_smtp_sink
from engine.testing.store import make_clock, open_store


@pytest.fixture
def disparo_clock() -> TestClock:
    """A test clock at ``engine.testing.START`` (23/11/2026 09:00 in São Paulo)."""
    return make_clock()


@pytest.fixture
def disparo_store(tmp_path: Path, disparo_clock: TestClock) -> Iterator[Store]:
    """A SQLite store in ``tmp_path`` on ``disparo_clock``, schema upgraded."""
    store = open_store(tmp_path, disparo_clock)
    yield store
    store.close()


@pytest.fixture
def disparo_plugins() -> Plugins:
    """disparo's built-in plugins and nothing else: ``disparo_plugins.register(my_plugin,
    "mine")`` adds yours (or use ``hermetic_plugins(entry_points=("mine",))``)."""
    return hermetic_plugins()


@pytest.fixture
def scripted() -> Iterator[type[Scripted]]:
    """The ``Scripted`` channel class with an empty log and script (emptied again after)."""
    Scripted.reset()
    yield Scripted
    Scripted.reset()


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A running SMTP sink on 127.0.0.1 (``smtp_sink.address``, ``smtp_sink.messages``)."""
    with start_smtp_sink() as sink:
        yield sink

"""A store on the test clock, and ``disparo.toml`` written from dicts, for tests."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from engine.clock import Clock, TestClock
from engine.config import Config, load_config
from engine.plugins import Plugins
from engine.store import Store

#: where a kit clock starts: Monday 23 November 2026, 12:00 UTC (09:00 in São Paulo, the
#: default time zone), so mailing files of that day are named ``mailing_231126_…``
START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def make_clock(start: datetime = START) -> TestClock:
    """A ``TestClock`` standing at ``start`` until the test moves it (``await
    clock.advance(seconds)``): the engine's waits are on it, so days run in milliseconds."""
    return TestClock(start)


def open_store(folder: Path, clock: Clock, *, inline: bool = True) -> Store:
    """A SQLite store in ``folder/disparo.db`` (the file a default config points at), its
    schema upgraded, on ``clock``. ``inline``: store calls run on the event loop instead of a
    worker thread, so the only waits are the clock's and a simulated day runs the same way
    every time. Close it with ``store.close()``."""
    store = Store.open(f"sqlite:///{(folder / 'disparo.db').as_posix()}", clock=clock)
    store.inline = inline
    return store


def write_secret(path: Path, secret: str | bytes) -> Path:
    """Write a secret file as disparo wants one (readable by its owner only, mode 600: a
    secret file others can read is refused when the configuration is loaded); return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    if isinstance(secret, bytes):
        path.write_bytes(secret)
    else:
        path.write_text(secret, encoding="utf-8")
    return path


def write_config(
    folder: Path,
    *,
    engine: Mapping[str, Any] | None = None,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    accounts: Mapping[str, Mapping[str, Any]] | None = None,
    wallets: Mapping[str, Mapping[str, Any]] | None = None,
    tracking: Mapping[str, Any] | None = None,
    templates: Mapping[str, Mapping[str, Any]] | None = None,
    mailboxes: Mapping[str, Mapping[str, Any]] | None = None,
    groups: Mapping[str, Mapping[str, Any]] | None = None,
    api: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``folder/disparo.toml`` from the tables given (each section as ``disparo.toml``
    has it: ``accounts={"hook": {"channel": "webhook", …}}``) and return its path. The spool
    folder defaults to ``folder/spool``; relative paths in it are relative to ``folder``."""
    data: dict[str, Any] = {"engine": {"spool_dir": "spool", **(engine or {})}}
    for section, tables in (
        ("sources", sources),
        ("accounts", accounts),
        ("wallets", wallets),
        ("tracking", tracking),
        ("templates", templates),
        ("mailboxes", mailboxes),
        ("groups", groups),
        ("api", api),
    ):
        if tables:
            data[section] = tables
    path = folder / "disparo.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def make_config(folder: Path, plugins: Plugins, **sections: Any) -> Config:
    """``write_config(folder, **sections)`` read back as disparo reads it, with ``plugins``
    (so your channel's or source kind's keys are checked): raises ``ConfigError`` listing
    every problem, as ``disparo`` would at start."""
    return load_config(write_config(folder, **sections), plugins=plugins)

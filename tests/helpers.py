"""Small builders shared by the tests: configs, mailing names, a collector on a test clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomli_w

from engine.clock import TestClock
from engine.config import Config, load_config
from engine.intake.collector import Collector
from engine.plugins import load_plugins
from engine.store import Store

#: the test clock's day (2026-11-23 12:00 UTC is 09:00 in São Paulo)
TODAY = "231126"


def write_config(
    folder: Path,
    *,
    sources: dict[str, dict[str, Any]] | None = None,
    wallets: dict[str, dict[str, Any]] | None = None,
    accounts: dict[str, dict[str, Any]] | None = None,
    engine: dict[str, Any] | None = None,
) -> Path:
    """Write disparo.toml into ``folder`` and return its path."""
    data: dict[str, Any] = {"engine": {"spool_dir": "spool", **(engine or {})}}
    if sources:
        data["sources"] = sources
    if accounts:
        data["accounts"] = accounts
    if wallets:
        data["wallets"] = wallets
    path = folder / "disparo.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def load(path: Path) -> Config:
    return load_config(path, plugins=load_plugins())


def collector(store: Store, config: Config, clock: TestClock) -> Collector:
    return Collector(store, load_plugins(), config, clock)


def name(seq: int, params: str = "", day: str = TODAY) -> str:
    """``mailing_231126_001_<params>.csv``."""
    tail = f"_{params}" if params else ""
    return f"mailing_{day}_{seq:03d}{tail}.csv"


CSV = "nome;telefone;email;cpf;cidade\nAna;(11) 99887-7665;ana@example.com;111;São Paulo\n"

"""Small builders shared by the tests: configs (the test kit's ``write_config``), mailing
names, a collector on a test clock."""

from __future__ import annotations

from pathlib import Path

from engine.clock import TestClock
from engine.config import Config, load_config
from engine.intake.collector import Collector
from engine.plugins import load_plugins
from engine.store import Store
from engine.testing import write_config

__all__ = ["CSV", "TODAY", "collector", "load", "name", "write_config"]

#: the test clock's day (2026-11-23 12:00 UTC is 09:00 in São Paulo)
TODAY = "231126"


def load(path: Path) -> Config:
    return load_config(path, plugins=load_plugins())


def collector(store: Store, config: Config, clock: TestClock) -> Collector:
    return Collector(store, load_plugins(), config, clock)


def name(seq: int, params: str = "", day: str = TODAY) -> str:
    """``mailing_231126_001_<params>.csv``."""
    tail = f"_{params}" if params else ""
    return f"mailing_{day}_{seq:03d}{tail}.csv"


CSV = "nome;telefone;email;cpf;cidade\nAna;(11) 99887-7665;ana@example.com;111;São Paulo\n"

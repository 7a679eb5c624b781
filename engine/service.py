"""The headless engine: collection (and, as they exist, dispatch and tracking) in one asyncio
program, stopped cleanly by a signal."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from engine.clock import Clock
from engine.collector import Collector, PollSummary
from engine.config import Config
from engine.plugins import Plugins
from engine.store import Store


class ZonedFormatter(logging.Formatter):
    """Log times in the configured time zone."""

    def __init__(self, tz: tzinfo, fmt: str) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, self.tz).strftime("%Y-%m-%d %H:%M:%S")


def configure_logging(config: Config) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        ZonedFormatter(config.tz, "%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.engine.log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)


@dataclass
class RunSummary:
    """What ``disparo run --until-idle`` did."""

    polls: list[PollSummary] = field(default_factory=list)


class Engine:
    """Everything ``disparo run`` runs."""

    def __init__(self, store: Store, plugins: Plugins, config: Config, clock: Clock) -> None:
        self.store = store
        self.plugins = plugins
        self.config = config
        self.clock = clock
        self.collector = Collector(store, plugins, config, clock)
        self.stop = asyncio.Event()

    async def run_until_idle(self, *, settle: float = 2.0) -> RunSummary:
        """Poll every source once (again while files are still being written), import what is
        ready, and return."""
        summary = RunSummary()
        summary.polls = await self.collector.run_until_idle(settle=settle)
        return summary

    async def run(self) -> None:
        """Run until ``stop`` is set (SIGTERM/SIGINT)."""
        await self.collector.run_forever(self.stop)

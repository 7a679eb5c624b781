"""The headless engine: collection, dispatch, the guard, feedback and publishing in one
asyncio program, stopped cleanly by SIGTERM or Ctrl-C (in-flight sends finish, claims are
released)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from engine.clock import Clock
from engine.config import LOG_FORMATS, Config
from engine.feedback.mailbox import MailboxPoller, PollResult
from engine.feedback.metrics import Metrics
from engine.feedback.tracking import SignalWriter, Tracking
from engine.intake.collector import Collector, PollSummary
from engine.plugins import Plugins
from engine.publish.service import Outcome, Publishing
from engine.sending.dispatcher import Dispatcher
from engine.sending.guard import Guard
from engine.store import Store
from engine.tokens import Signer

log = logging.getLogger(__name__)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

#: what every log record carries; anything else on a record came from ``extra``
_RECORD_FIELDS = frozenset(
    {*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName"}
)


def _when(record: logging.LogRecord, tz: tzinfo) -> str:
    """The record's time in ``tz`` with its UTC offset, to the millisecond:
    ``2026-11-23 09:00:00.123-03:00`` (unambiguous across DST changes and hosts)."""
    return datetime.fromtimestamp(record.created, tz).isoformat(sep=" ", timespec="milliseconds")


class ZonedFormatter(logging.Formatter):
    """Log times in the configured time zone, with their UTC offset."""

    def __init__(self, tz: tzinfo, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _when(record, self.tz)


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for journald and Loki: ``time`` (ISO 8601 with the UTC
    offset, in the configured zone), ``level``, ``logger``, ``message``, then the record's
    ``extra`` fields (``event``, ``account``, ``campaign_id``…) and, on an error, ``exception``."""

    def __init__(self, tz: tzinfo) -> None:
        super().__init__()
        self.tz = tz

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, self.tz).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and key not in body and not key.startswith("_"):
                body[key] = value
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, default=str)


def log_formatter(config: Config, log_format: str = "text") -> logging.Formatter:
    """The formatter of ``log_format`` (``text`` or ``json``) in the configured zone."""
    if log_format == "json":
        return JsonFormatter(config.tz)
    if log_format != "text":
        raise ValueError(f"log format is one of {', '.join(LOG_FORMATS)}; got {log_format!r}")
    return ZonedFormatter(config.tz)


def configure_logging(config: Config, log_format: str = "text") -> None:
    """Log to standard error in ``log_format`` at the configured level."""
    handler = logging.StreamHandler()
    handler.setFormatter(log_formatter(config, log_format))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.engine.log_level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)


def signer_for(config: Config) -> Signer | None:
    """The token signer, when ``[tracking]`` is configured."""
    if config.tracking is None:
        return None
    return Signer(config.tracking.secret.reveal())


@dataclass
class RunSummary:
    """What ``disparo run --until-idle`` did."""

    polls: list[PollSummary] = field(default_factory=list)
    mailboxes: list[PollResult] = field(default_factory=list)
    campaigns: list[tuple[int, str, str, int, int]] = field(default_factory=list)
    published: list[Outcome] = field(default_factory=list)


class Engine:
    """Everything ``disparo run`` runs."""

    def __init__(self, store: Store, plugins: Plugins, config: Config, clock: Clock) -> None:
        self.store = store
        self.plugins = plugins
        self.config = config
        self.clock = clock
        self.stop = asyncio.Event()
        self.metrics = Metrics(store)
        self.writer = SignalWriter(store, plugins, self.metrics)
        self.signer = signer_for(config)
        self.collector = Collector(store, plugins, config, clock)
        self.dispatcher = Dispatcher(
            store,
            plugins,
            config,
            clock,
            signer=self.signer,
            lease=config.engine.lease,
            metrics=self.metrics,
        )
        self.guard = Guard(store, config, clock)
        self.publishing = Publishing(store, plugins, config, clock)
        self.tracking: Tracking | None = None
        if config.tracking is not None:
            self.tracking = Tracking(
                store, config, clock, plugins=plugins, metrics=self.metrics, writer=self.writer
            )
        self.mailboxes: list[MailboxPoller] = []
        if self.signer is not None:
            self.mailboxes = [
                MailboxPoller(store, settings, clock, self.signer, self.writer.apply_many)
                for settings in config.mailboxes.values()
                if settings.enabled
            ]
        #: where the tracking endpoint listens once ``run`` started it
        self.listening: str | None = None

    async def run_until_idle(self, *, settle: float = 2.0) -> RunSummary:
        """Poll every source, import what is ready, send everything due, and return."""
        summary = RunSummary()
        summary.polls = await self.collector.run_until_idle(settle=settle)
        await self.guard.check()
        await self.dispatcher.run_until_idle()
        summary.published = await asyncio.to_thread(self.publishing.publish)
        if self.mailboxes:
            self.writer.start()
            try:
                for poller in self.mailboxes:
                    summary.mailboxes.append(await poller.poll())
            finally:
                await self.writer.close()
            await self.guard.check()  # bounces that just came in count at once
        for c in await self.store.run(self.store.campaigns.recent, 50):
            summary.campaigns.append((c.id, c.name, c.status, c.recipients, c.counters["sent"]))
        return summary

    async def run(self) -> None:
        """Run until ``stop`` is set (SIGTERM/SIGINT), then stop cleanly."""
        self.writer.start()
        if self.tracking is not None:
            self.listening = await self.tracking.start()
            log.info(
                "tracking endpoint listening on %s (public URL %s)",
                self.listening,
                self.tracking.settings.public_url,
            )
        background = [
            asyncio.create_task(self.collector.run_forever(self.stop), name="collector"),
            asyncio.create_task(self.guard.run(), name="guard"),
            asyncio.create_task(self.publishing.run(self.stop), name="publishing"),
        ]
        background += [
            asyncio.create_task(p.run_forever(self.stop), name=f"mailbox-{p.settings.name}")
            for p in self.mailboxes
        ]
        try:
            await self.dispatcher.run(self.stop)
        finally:
            self.stop.set()
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self.tracking is not None:
                await self.tracking.stop()
            await self.writer.close()
            await asyncio.to_thread(self.store.checkpoint)

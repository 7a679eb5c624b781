"""The headless engine: collection, dispatch, the guard, feedback (tracking, the bounce
mailboxes) and publishing in one asyncio program. SIGTERM or Ctrl-C stops it cleanly
(in-flight sends finish within the stop timeout, every lease is released); SIGHUP reloads
its configuration file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from engine.api import SendApi
from engine.clock import Clock, wait_event
from engine.config import LOG_FORMATS, Config, SecretRef
from engine.feedback.mailbox import MailboxPoller, PollResult
from engine.feedback.metrics import Metrics
from engine.feedback.tracking import SignalWriter, Tracking
from engine.intake.collector import Collector, PollSummary
from engine.intake.groupfeed import run_group_feeds
from engine.plugins import Plugins
from engine.publish.service import Outcome, Publishing
from engine.sending.dispatcher import Dispatcher
from engine.sending.guard import Guard
from engine.store import Store
from engine.store.engine_log import KEEP
from engine.store.errors import describe, is_transient
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


#: what is masked in the log records an engine keeps in the store (besides the configured
#: secrets' values): credentials in URLs, ``password=…``-style pairs, bearer tokens, tracking
#: tokens in paths (G3)
_MASKS = (
    (re.compile(r"(?i)(://[^/\s:@]+:)[^@\s/]+@"), r"\1***@"),
    (
        re.compile(r"(?i)\b(password|passwd|pwd|secret|token|auth_token|api_?key)(\s*[=:]\s*)\S+"),
        r"\1\2***",
    ),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"/([ocu])/[A-Za-z0-9._~-]{16,}"), r"/\1/***"),
)


def secret_values(config: Config) -> list[str]:
    """The values of the configuration's secrets (accounts, mailboxes, tracking, database),
    to mask wherever they would be written; secrets that cannot be read are skipped."""
    refs: list[SecretRef] = []
    for account in config.accounts.values():
        refs += [v for v in account.options.values() if isinstance(v, SecretRef)]
    refs += [m.password for m in config.mailboxes.values()]
    if config.tracking is not None:
        refs.append(config.tracking.secret)
    if config.engine.database_password is not None:
        refs.append(config.engine.database_password)
    found: list[str] = []
    for ref in refs:
        try:
            value = ref.reveal()
        except Exception:  # unreadable: the configuration check says so elsewhere
            value = ""
        if len(value) >= 4:
            found.append(value)
    return sorted(set(found), key=len, reverse=True)


def mask(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with the configured secrets' values and credential-like pairs replaced by
    ``***``."""
    for value in secrets:
        text = text.replace(value, "***")
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


class StoreLogHandler(logging.Handler):
    """Keeps an engine's log records (INFO and above) for the store's ``engine_log``, so a UI
    attached to this engine from elsewhere shows them. ``emit`` only buffers (bounded, never
    blocking, never failing the caller); ``flush_forever`` writes the buffer every ``every``
    seconds in one transaction, which also trims the table to its newest rows. Secrets are
    masked before anything is kept (``mask``)."""

    def __init__(
        self,
        store: Store,
        node: str,
        *,
        secrets: Sequence[str] = (),
        size: int = KEEP,
        every: float = 1.0,
    ) -> None:
        super().__init__(logging.INFO)
        self.store = store
        self.node = node
        self.secrets = list(secrets)
        self.every = every
        self.pending: deque[dict[str, Any]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            row = {
                "at": datetime.fromtimestamp(record.created, UTC),
                "node": self.node[:100],
                "level": record.levelname[:10],
                "logger": record.name[:100],
                "message": mask(message, self.secrets)[:4000],
            }
            with self._lock:
                self.pending.append(row)
        except Exception:  # a log line must never break the engine
            self.handleError(record)

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = list(self.pending)
            self.pending.clear()
        return rows

    def write(self) -> int:
        """Write what is buffered (blocking); on a database error it is dropped (the same
        records went to standard error too). Return how many rows were written."""
        rows = self.take()
        if not rows:
            return 0
        try:
            self.store.engine_log.add(rows)
        except Exception:
            return 0
        return len(rows)

    async def flush_forever(self, stop: asyncio.Event, clock: Clock) -> None:
        """Write the buffer every ``every`` seconds until ``stop``, then once more."""
        while not stop.is_set():
            await self.store.run(self.write)
            await wait_event(clock, stop, self.every)
        await self.store.run(self.write)


def signer_for(config: Config) -> Signer | None:
    """The token signer, when ``[tracking]`` is configured."""
    if config.tracking is None:
        return None
    return Signer(config.tracking.secret.reveal())


@dataclass
class RunSummary:
    """What ``disparo run --until-idle`` did, and what it could not do."""

    polls: list[PollSummary] = field(default_factory=list)
    mailboxes: list[PollResult] = field(default_factory=list)
    campaigns: list[tuple[int, str, str, int, int]] = field(default_factory=list)
    published: list[Outcome] = field(default_factory=list)
    #: what an operator must know: failing channels, held campaigns, the database
    problems: list[str] = field(default_factory=list)
    #: deliveries failed for a systemic reason, or a campaign cannot be sent as configured
    failed: bool = False
    #: stopped by a signal before it was done
    interrupted: bool = False


#: configuration that a running engine cannot take over without a restart
RESTART_ONLY = (
    ("engine", "database_url"),
    ("engine", "database_password"),
    ("engine", "lease"),
    ("engine", "heartbeat"),
    ("engine", "time_zone"),
    ("tracking", None),
    ("api", "listen"),
)


class Engine:
    """Everything ``disparo run`` runs."""

    def __init__(
        self,
        store: Store,
        plugins: Plugins,
        config: Config,
        clock: Clock,
        *,
        mode: str = "run",
        workers: int = 1,
        sender: bool = False,
    ) -> None:
        #: a sender process of ``run --workers``: it only sends (the first process collects,
        #: publishes, serves tracking and polls the mailboxes)
        self.sender = sender
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
            heartbeat=config.engine.heartbeat,
            stop_timeout=config.engine.stop_timeout,
            metrics=self.metrics,
            mode=mode,
            workers=workers,
        )
        self.node = self.dispatcher.node
        self.guard = Guard(store, config, clock)
        self.publishing = Publishing(store, plugins, config, clock)
        self.tracking: Tracking | None = None
        if config.tracking is not None:
            self.tracking = Tracking(
                store, config, clock, plugins=plugins, metrics=self.metrics, writer=self.writer
            )
        self.mailboxes = self._pollers(config)
        #: where the tracking endpoint listens once ``run`` started it
        self.listening: str | None = None
        #: the send API, served by ``run`` when [api.clients] are configured, and its address
        self.api: SendApi | None = None
        self.api_listening: str | None = None
        self._background: dict[str, asyncio.Task[None]] = {}
        self._collector_stop = asyncio.Event()
        self._signals = 0
        self._reloading: asyncio.Task[bool] | None = None
        #: what the last ``run_until_idle`` returned
        self.last_summary: RunSummary | None = None
        #: with ``run --workers``: waits for the other sender processes to finish (until
        #: idle), before publishing; returns their problems
        self.workers_done: Callable[[], Awaitable[list[str]]] | None = None

    def _pollers(self, config: Config) -> list[MailboxPoller]:
        if self.signer is None:
            return []
        return [
            MailboxPoller(
                self.store,
                settings,
                self.clock,
                self.signer,
                self.writer.apply_many,
                owner=self.node,
            )
            for settings in config.mailboxes.values()
            if settings.enabled and not self.sender
        ]

    # -- signals -----------------------------------------------------------------------------

    def request_stop(self, why: str = "a stop was asked") -> None:
        """SIGTERM, SIGINT: stop cleanly; a second one stops without waiting for the sends in
        flight (they are released and retried)."""
        self._signals += 1
        if self._signals == 1:
            log.info(
                "%s: stopping (messages in flight finish, within %g s; send it again to stop "
                "at once)",
                why,
                self.config.engine.stop_timeout.total_seconds(),
                extra={"event": "engine.stop_requested", "node": self.node},
            )
            self.stop.set()
        else:
            log.warning(
                "%s again: stopping at once; the sends in flight are abandoned and retried",
                why,
                extra={"event": "engine.stop_forced", "node": self.node},
            )
            self.dispatcher.abandon.set()

    def request_reload(self) -> None:
        """SIGHUP: read the configuration file again (in the background)."""
        if self._reloading is not None and not self._reloading.done():
            log.warning("SIGHUP: a reload is already under way")
            return
        self._reloading = asyncio.ensure_future(self._reload_logged())

    async def _reload_logged(self) -> bool:
        try:
            return await self.reload()
        except Exception:
            log.exception("SIGHUP: the reload failed; the engine goes on as it can")
            return False

    async def reload(self) -> bool:
        """Read the configuration file again and take it over: new, changed and removed
        accounts, sources, templates, wallets, mailboxes, the guard's limits, the log level.
        A file with problems is refused (logged) and the running configuration stays."""
        from engine.config import ConfigError, load_config

        path = self.config.path
        if path is None:
            log.warning("SIGHUP: the engine runs on the built-in defaults: nothing to reload")
            return False
        try:
            new = await asyncio.to_thread(load_config, path, plugins=self.plugins)
        except ConfigError as exc:
            problems = "\n".join(f"  {p}" for p in exc.problems)
            log.error(
                "SIGHUP: %s has %s problem(s); the running configuration stays:\n%s",
                path,
                len(exc.problems),
                problems,
                extra={"event": "config.refused", "problems": [str(p) for p in exc.problems]},
            )
            return False
        except Exception as exc:
            log.error(
                "SIGHUP: %s cannot be read (%s); the running configuration stays",
                path,
                exc,
                extra={"event": "config.refused", "problems": [str(exc)]},
            )
            return False
        old = self.config
        for section, key in RESTART_ONLY:
            before, after = old.raw.get(section, {}), new.raw.get(section, {})
            if (before if key is None else before.get(key)) != (
                after if key is None else after.get(key)
            ):
                where = f"[{section}]" if key is None else f"{section}.{key}"
                log.warning(
                    "SIGHUP: %s changed: it takes effect at the next start",
                    where,
                    extra={"event": "config.restart_needed", "key": where},
                )
        self.config = new
        logging.getLogger().setLevel(new.engine.log_level.upper())
        await self.dispatcher.reconfigure(new)
        self.guard.config = new
        self.publishing.config = new
        if new.sources != old.sources or new.wallets != old.wallets:
            self.collector.config = new
            if "collector" in self._background:
                await self._stop_task("collector", self._collector_stop)
                self._collector_stop = asyncio.Event()
                self._start_task("collector", self.collector.run_forever(self._collector_stop))
        else:
            self.collector.config = new
        if self.api is not None:
            self.api.config = new  # its clients' tokens and limits
        if new.groups != old.groups and "collector" in self._background:
            await self._stop_task("groups")
            if new.groups:
                self._start_task("groups", run_group_feeds(self.store, new, self.clock, self.stop))
        if new.mailboxes != old.mailboxes:
            running = "mailboxes" in {k.split(":")[0] for k in self._background}
            for poller in self.mailboxes:
                await self._stop_task(f"mailboxes:{poller.settings.name}")
                await self._release(poller)
            self.mailboxes = self._pollers(new)
            if running:
                self._start_pollers()
        added = sorted(set(new.accounts) - set(old.accounts))
        removed = sorted(set(old.accounts) - set(new.accounts))
        changed = sorted(
            n for n in set(new.accounts) & set(old.accounts) if new.accounts[n] != old.accounts[n]
        )
        log.info(
            "SIGHUP: configuration reloaded from %s: %s account(s)%s, %s source(s), %s "
            "template(s), %s mailbox(es)",
            path,
            len(new.accounts),
            "".join(
                f"; {label} {', '.join(names)}"
                for label, names in (("new", added), ("removed", removed), ("changed", changed))
                if names
            ),
            len(new.sources),
            len(new.templates),
            len(new.mailboxes),
            extra={
                "event": "config.reloaded",
                "accounts_added": added,
                "accounts_removed": removed,
                "accounts_changed": changed,
            },
        )
        return True

    # -- background tasks ------------------------------------------------------------------

    def _start_task(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._background[name] = asyncio.create_task(coro, name=name)

    def _start_pollers(self) -> None:
        for p in self.mailboxes:
            self._start_task(f"mailboxes:{p.settings.name}", p.run_forever(self.stop))

    async def _stop_task(self, name: str, stop: asyncio.Event | None = None) -> None:
        task = self._background.pop(name, None)
        if task is None:
            return
        if stop is not None:
            stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _release(self, poller: MailboxPoller) -> None:
        try:
            await poller.release()
        except Exception as exc:
            log.warning(
                "mailbox %s: its lease could not be released (%s); it runs out by itself",
                poller.settings.name,
                exc,
            )

    async def _stop_background(self) -> None:
        """Stop collecting, the guard, publishing and the mailbox pollers; give the
        mailboxes back."""
        self._collector_stop.set()
        for name in list(self._background):
            await self._stop_task(name)
        for poller in self.mailboxes:
            await self._release(poller)

    # -- running -----------------------------------------------------------------------------

    async def run_until_idle(self, *, settle: float = 2.0) -> RunSummary:
        """Poll every source, import what is ready, send everything due, and return; a stop
        (SIGTERM, SIGINT) ends it at the next step, cleanly."""
        summary = self.last_summary = RunSummary()
        if not await self.dispatcher.begin(self.stop):
            summary.interrupted = True
            await self.dispatcher.shutdown()
            return summary
        if self.sender:
            await self.dispatcher.run_until_idle(self.stop)
            summary.interrupted = self.stop.is_set()
            await self._problems(summary)
            return summary
        try:
            polls = asyncio.ensure_future(self.collector.run_until_idle(settle=settle))
            if await _first(polls, self.stop):
                summary.polls = polls.result()
            else:
                await _cancel(polls)
            if not self.stop.is_set():
                await self._check_guard()
                await self.dispatcher.run_until_idle(self.stop, shutdown=False)
            if self.workers_done is not None:  # the other sender processes finish first
                found = await self.workers_done()
                summary.problems += found
                summary.failed = summary.failed or bool(found)
            if not self.stop.is_set():
                published = asyncio.ensure_future(asyncio.to_thread(self.publishing.publish))
                if not await _first(published, self.stop):
                    await _cancel(published)
                elif (error := published.exception()) is not None:
                    log.error("publishing failed: %s", describe(error))
                    summary.problems.append(f"publishing failed: {describe(error)}")
                else:
                    summary.published = published.result()
            if self.mailboxes and not self.stop.is_set():
                self.writer.start()
                try:
                    for poller in self.mailboxes:
                        if self.stop.is_set():
                            break
                        polled = asyncio.ensure_future(poller.poll())
                        if await _first(polled, self.stop):
                            summary.mailboxes.append(polled.result())
                        else:
                            await _cancel(polled)
                        await self._release(poller)
                finally:
                    await self.writer.close()
                if not self.stop.is_set():
                    await self._check_guard()  # bounces that just came in count at once
        finally:
            await self.dispatcher.shutdown()
        summary.interrupted = self.stop.is_set()
        for c in await self.store.run(self.store.campaigns.recent, 50):
            summary.campaigns.append((c.id, c.name, c.status, c.recipients, c.counters["sent"]))
        await self._problems(summary)
        return summary

    async def _check_guard(self) -> None:
        try:
            await self.guard.check()
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("the guard could not check the accounts: %s", describe(exc))

    async def _problems(self, summary: RunSummary) -> None:
        """What went wrong, in an operator's words: each account failing for a systemic
        reason (with how many deliveries wait and when they are retried), each campaign that
        is held, a database that is unavailable."""
        tz = self.config.tz
        now = self.clock.now()

        def hhmm(value: datetime | None) -> str:
            return value.astimezone(tz).strftime("%H:%M") if value else "?"

        try:
            states = await self.store.run(self.store.accounts.states)
            retrying = await self.store.run(self.store.errors.retrying, now)
            held = await self.store.run(self.store.campaigns.recent, 200, status="held")
        except Exception as exc:
            summary.problems.append(f"the database is unavailable: {describe(exc)}")
            summary.failed = True
            return
        trouble = self.dispatcher.problems_now()
        failing = sorted(set(trouble) | {n for n, st in states.items() if st.breaker_open})
        for name in failing:
            st = states.get(name)
            error = trouble[name].error if name in trouble else (st.breaker_reason if st else "")
            text = f"{name}: {error}"
            n, first = retrying.get(name, (0, None))
            if n:
                text += f"; {n:,} deliveries retry at {hhmm(first)}"
            if st is not None and st.breaker_open:
                text += f" (the account is paused; next try at {hhmm(st.breaker_retry_at)})"
            summary.problems.append(text)
            summary.failed = True
        for c in held:
            summary.problems.append(f"campaign {c.id} ({c.name}) is held: {c.status_reason}")
            if self.dispatcher.held_for.get(c.id) in ("problem", "account"):
                summary.failed = True
        if self.store.outage is not None:
            summary.problems.append(
                f"the database has been unavailable since {hhmm(self.store.outage.since)}: "
                f"{self.store.outage.error}"
            )
            summary.failed = True

    async def run(self) -> None:
        """Run until ``stop`` is set (SIGTERM/SIGINT), then stop cleanly. Its log records
        (INFO and above, secrets masked) are kept in the store meanwhile (``engine_log``)."""
        handler = StoreLogHandler(self.store, self.node, secrets=secret_values(self.config))
        logging.getLogger().addHandler(handler)
        log_stop = asyncio.Event()
        flushing = asyncio.create_task(handler.flush_forever(log_stop, self.clock))
        try:
            await self._run()
        finally:
            logging.getLogger().removeHandler(handler)
            log_stop.set()
            with contextlib.suppress(Exception):
                await flushing

    async def _run(self) -> None:
        if not await self.dispatcher.begin(self.stop):
            await self.dispatcher.shutdown()
            return
        if self.sender:
            await self.dispatcher.run(self.stop)
            return
        # the endpoint's writes go through a writer process (``disparo tracking serve``'s), so
        # that they never hold this process's GIL; the bounce mailboxes' too
        self.writer.start(process=self.tracking is not None)
        sending = False
        try:  # from here on, whatever fails: the writer process is stopped (else exit waits)
            if self.tracking is not None:
                self.listening = await self.tracking.start()
                log.info(
                    "tracking endpoint listening on %s (public URL %s)",
                    self.listening,
                    self.tracking.settings.public_url,
                )
            if self.config.api.clients:
                kinds = {n: c.address_kind for n, c in self.plugins.channels().items()}
                self.api = SendApi(self.store, self.config, kinds)
                self.api_listening = await self.api.start()
                log.info("send API listening on %s", self.api_listening)
            self._start_task("collector", self.collector.run_forever(self._collector_stop))
            self._start_task("guard", self.guard.run())
            self._start_task("publishing", self.publishing.run(self.stop))
            if self.config.groups:
                self._start_task(
                    "groups", run_group_feeds(self.store, self.config, self.clock, self.stop)
                )
            self._start_pollers()
            sending = True
            await self.dispatcher.run(self.stop, before_release=self._stop_background)
        finally:
            self.stop.set()
            await self._stop_background()
            if not sending:  # a start that failed (an endpoint's port taken): leases given back
                await self.dispatcher.shutdown()
            if self.tracking is not None:
                await self.tracking.stop()
            if self.api is not None:
                await self.api.stop()
            await self.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.store.checkpoint)


async def _first(task: asyncio.Future[Any], stop: asyncio.Event) -> bool:
    """Wait for ``task`` or ``stop``; True when the task finished."""
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
    return task.done()


async def _cancel(task: asyncio.Future[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task

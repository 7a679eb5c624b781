"""The tracking endpoint (aiohttp): what comes back from people and providers (D17–D19).

Routes (``public_url`` in ``[tracking]`` is what the outside world sees; ``listen`` is where
this server binds, usually behind an HTTPS reverse proxy):

- ``GET /o/{token}.gif``: the open pixel of a delivery;
- ``GET /c/{token}``: a click, redirected to the campaign's link by its position; the target
  is read from the store (the links table), never from the request: no open redirect;
- ``GET /u/{token}``: the unsubscribe page, offering both scopes (this campaign, all future
  campaigns, D19); it changes nothing. ``POST /u/{token}`` with ``scope`` unsubscribes, and
  with ``List-Unsubscribe=One-Click`` (RFC 8058, what mail clients send) unsubscribes from
  all; neither needs cookies;
- the routes of the plugins' webhooks (``register_webhooks``): the Twilio channels' status
  callbacks and incoming messages, Amazon SES notifications for the e-mail channel…, each
  checking its provider's signature itself;
- ``GET /healthz`` (the database answers, and this process's last writes worked: 503 while
  they fail) and ``GET /metrics`` (Prometheus; only to clients from ``metrics_from`` that
  no reverse proxy forwarded, or with the bearer token of ``metrics_token_file``).

Every token is HMAC-SHA256 signed (``engine.tokens``) and checked in constant time; a
tampered or unknown token gets a plain 404 and changes nothing. Writes are batched: the
handlers queue signals and a single writer applies them, a few hundred per transaction; with
``process=True`` (``disparo tracking serve``, and ``disparo run`` for its endpoint) the
writer's transactions run in a child process (``WriterProcess``), so that they never hold the
endpoint's GIL. A writer process that dies is reported at once and replaced for the next
batch (which writes the lost batch again); after ``RESTARTS`` deaths within
``RESTART_WINDOW`` seconds the endpoint writes from its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import html
import ipaddress
import logging
import multiprocessing
import os
import re
import signal as signals
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from engine import __version__
from engine.clock import Clock
from engine.config import Config
from engine.events import DeliveryEvent, Signal
from engine.feedback.metrics import CONTENT_TYPE, Metrics
from engine.lifeline import Deaths, die_with_parent, gone, parent_gone
from engine.plugins import PluginError, Plugins, load_plugins
from engine.plugins.webhook import Webhooks
from engine.sandbox import StrictSandbox
from engine.store import Store
from engine.store.errors import Outage
from engine.store.feedback import Applied
from engine.tokens import Signer
from engine.web import serve

log = logging.getLogger(__name__)

#: a transparent 1×1 GIF
PIXEL = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
NO_STORE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"}
#: the pixel's headers, built once (no content-type parsing per request)
PIXEL_HEADERS = {"Content-Type": "image/gif", **NO_STORE}

#: the tracking endpoint's own paths: no plugin route may start with one
RESERVED = ("/o/", "/c/", "/u/", "/healthz", "/metrics")
#: headers a reverse proxy adds: their presence means the peer address is the proxy's
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host")

#: a writer process that dies is replaced, unless this many died within ``RESTART_WINDOW``
#: seconds: then the endpoint writes from its own process
RESTARTS = 3
RESTART_WINDOW = 600

#: link templates (``https://loja/{{ cpf }}``) render with each value URL-encoded
_LINKS = StrictSandbox(autoescape=False, finalize=lambda v: quote(str(v or ""), safe=""))


#: a signal as it waits in the writer's queue and crosses the pipe to the writer process: a
#: plain tuple in ``Signal``'s field order (built faster than the frozen dataclass, and
#: pickled fastest); ``_unpack`` makes it a ``Signal`` again where it is applied
_Packed = tuple[str, Any, str, "int | None", "str | None", "str | None", dict[str, Any]]
#: a queued signal and the future of whoever waits for it
_Item = tuple[_Packed, "asyncio.Future[Applied] | None"]


def _pack(s: Signal) -> _Packed:
    detail = s.detail if type(s.detail) is dict else dict(s.detail)  # a mapping proxy: no pickle
    return (s.kind, s.at, s.origin, s.delivery_id, s.dedupe_key, s.address, detail)


def _unpack(packed: Sequence[_Packed]) -> list[Signal]:
    return [Signal(k, a, o, d, key, addr, detail) for k, a, o, d, key, addr, detail in packed]


def _exit(code: int | None) -> str:
    """A process's exit code in words."""
    if code is None:
        return "an unknown status"
    if code < 0:
        try:
            return f"signal {signals.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit status {code}"


def _counted(signals: Sequence[Signal], results: Sequence[Applied]) -> Counter[tuple[str, str]]:
    """Events stored by (kind, the signal's origin): what ``/metrics`` counts."""
    found: Counter[tuple[str, str]] = Counter()
    for signal, result in zip(signals, results, strict=True):
        for e in result.events:
            found[e.kind, signal.origin] += 1
    return found


def _writer_main(conn: Connection, url: Any, parent: int) -> None:
    """The writer process: apply each batch received in one transaction, answer with the
    results asked for (an open nobody waits for needs none: only its count comes back), the
    events stored by kind and origin, or the error, and the store's outage state; stop at
    ``None`` or when the endpoint's process ``parent`` is gone (end of file, or on Linux the
    SIGTERM the kernel sends when it dies, kill -9 included), after finishing the batch in
    hand. A SIGTERM while the endpoint lives (a stop sent to the whole process group) is left
    to the endpoint: it stores what it answered through this process, then says ``None``."""
    # Ctrl-C reaches the whole process group: the endpoint stops first, then says so
    signals.signal(signals.SIGINT, signals.SIG_IGN)
    waiting = True  # for a batch (nothing in hand)

    def terminated(signum: int, frame: object) -> None:
        # the endpoint alive (a SIGTERM to the whole group, or the kernel's signal a moment
        # before its end shows): it stops this process once it stored what it answered, or
        # its end closes the pipe
        if parent_gone(parent) and waiting:
            log.warning("feedback writer: %s", gone(parent))
            raise SystemExit(0)
        # the endpoint gone with a batch in hand: that batch is finished first; its answer
        # finds no reader: the end

    signals.signal(signals.SIGTERM, terminated)
    if not die_with_parent(parent):
        log.warning("feedback writer: %s", gone(parent))
        return
    store = Store.open(url, upgrade=False)
    store.feedback  # noqa: B018 (imported before the first batch)
    # what start-up built (SQLAlchemy's tables, the modules) lives as long as the process: out
    # of the cyclic collector's rounds; and a collection every 10,000 net allocations, not
    # every 700: a batch's objects (a signal, its delivery, event and result per open) are
    # freed with the batch, but the default threshold collected ~20 times a batch of 2,000,
    # walking and promoting them (a tenth of this process's CPU)
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        conn.send("ready")
        while True:
            waiting = True
            try:
                packed = conn.recv()
            except (EOFError, OSError):  # the endpoint closes it only by ending
                # said once: the kernel's SIGTERM may come while this process closes the store
                waiting = False
                log.warning("feedback writer: %s", gone(parent))
                return
            waiting = False
            if packed is None:
                return
            signals_, wanted = packed
            batch = _unpack(signals_)
            try:
                results = store.feedback.apply(batch)
                chosen = (
                    dict(enumerate(results)) if wanted is None else {i: results[i] for i in wanted}
                )
                reply: tuple[Any, ...] = (
                    "ok",
                    chosen,
                    dict(_counted(batch, results)),
                    store.outage,
                )
            except Exception as exc:
                reply = ("error", f"{type(exc).__name__}: {exc}", None, store.outage)
            try:
                conn.send(reply)
            except OSError:  # the endpoint is gone; the batch is written
                return
    finally:
        store.close()
        conn.close()


class WriterProcess:
    """The feedback writer's transactions in a child process (``Feedback.apply`` on its own
    connection to the same store), fed one batch at a time through a pipe.

    Only the event loop talks to it, one batch in flight: the next batch is sent once the
    previous one is answered, so the pipe never holds more than one batch and a send never
    waits for the child's work.
    """

    def __init__(
        self, store: Store, on_death: Callable[[WriterProcess], None] | None = None
    ) -> None:
        """``on_death``: called (on the event loop) when the child ends without being asked
        to (``close``), at once, not at the next batch."""
        self.store = store
        self.on_death = on_death
        self._closing = False
        self._watched: int | None = None
        self._reaping: asyncio.Future[None] | None = None
        #: its death was reported (``on_death``)
        self.reported = False
        context = multiprocessing.get_context("spawn")  # a clean interpreter: no fork of threads
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_writer_main,
            args=(child, store.engine.url, os.getpid()),
            name="disparo-feedback-writer",
            daemon=True,
        )
        self.process.start()
        child.close()
        self._ready = False

    async def ready(self) -> None:
        """Wait until the child has opened the store (an interpreter starting takes a
        second or more on a busy machine; the endpoint listens only then)."""
        if not self._ready:
            await self._answer()
            self._ready = True
            if self.on_death is not None:
                self._watched = self.process.sentinel
                asyncio.get_running_loop().add_reader(self._watched, self._ended)

    def _ended(self) -> None:
        self._unwatch()
        if not self._closing:
            self._reaping = asyncio.ensure_future(self._reap())

    async def _reap(self) -> None:
        # its pipes close a moment before it can be waited for: then its exit code is known
        await asyncio.to_thread(self.process.join, 5)
        if not self._closing and not self.reported and self.on_death is not None:
            self.reported = True
            self.on_death(self)

    def _unwatch(self) -> None:
        if self._watched is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._watched)
            self._watched = None

    async def _answer(self) -> Any:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        fd = self.conn.fileno()

        def readable() -> None:
            loop.remove_reader(fd)
            try:
                answer.set_result(self.conn.recv())
            except (EOFError, OSError) as exc:
                answer.set_exception(ChildProcessError(f"the writer process is gone: {exc!r}"))

        loop.add_reader(fd, readable)
        try:
            return await answer
        finally:
            loop.remove_reader(fd)

    async def apply(
        self, batch: Sequence[_Packed], wanted: Sequence[int] | None = None
    ) -> tuple[dict[int, Applied], Counter[tuple[str, str]]]:
        """Apply ``batch`` (signals packed as they are queued: ``_pack``) in the child: the
        results of the signals at ``wanted`` (all when ``None``) by position, and the events
        stored by kind and origin. Raise ``ChildProcessError`` when the child is gone
        (nothing known of the batch), ``RuntimeError`` when its transaction failed."""
        await self.ready()
        try:
            self.conn.send((batch, wanted))
        except OSError as exc:
            raise ChildProcessError(f"the writer process is gone: {exc!r}") from exc
        status, found, counts, outage = await self._answer()
        self._outage(outage)
        if status != "ok":
            raise RuntimeError(found)
        return found, Counter(counts)

    def _outage(self, outage: Outage | None) -> None:
        """The child's view of the database, for ``/healthz``: a write that failed there is
        an outage here; one that worked ends a write outage."""
        if outage is not None:
            self.store.outage = outage
        elif self.store.outage is not None and self.store.outage.writes:
            self.store.outage = None

    async def close(self) -> None:
        """Tell the child to stop and wait for it (it finishes the batch in hand first)."""
        self._closing = True
        self._unwatch()
        try:
            self.conn.send(None)
        except OSError:
            pass
        await asyncio.to_thread(self.process.join, 60)
        if self.process.is_alive():
            log.error("the feedback writer process did not stop: killing it")
            self.process.kill()
            await asyncio.to_thread(self.process.join)
        self.conn.close()


class SignalWriter:
    """Applies queued signals in batches (group commit): many requests, one transaction.

    ``submit`` returns a future resolved once the signal is stored (or failed); handlers
    that must not answer before the write (an unsubscribe, a webhook) await it.
    """

    def __init__(
        self,
        store: Store,
        plugins: Plugins | None = None,
        metrics: Metrics | None = None,
        *,
        max_batch: int | None = None,
        linger: float = 0.005,
        process: bool = False,
    ) -> None:
        """``process``: run the transactions in a child process (``WriterProcess``) rather
        than in a worker thread of this one; not with a store on the test clock (``inline``).
        ``max_batch``: signals a transaction at most (default 500 in a thread, 2,000 in a
        process: another process writes, so bigger transactions, fewer commits)."""
        self.store = store
        self.plugins = plugins
        self.metrics = metrics
        self._max_batch = max_batch
        self.max_batch = max_batch or 500
        self.linger = linger
        #: ``None`` tells the writer to stop once everything before it is written; a signal
        #: (packed: ``_pack``) comes with the future of whoever waits for it, or none
        #: (``note_tracked``). A plain deque: an append per request, and the writer woken once per
        #: batch (``_wakeup``), not an ``asyncio.Queue``'s getter bookkeeping per signal
        self.queue: deque[_Item | None] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        #: signals submitted, and those stored (a batch that failed is not counted as stored)
        self.submitted = 0
        self.applied = 0
        self.process = process
        self.child: WriterProcess | None = None
        #: when writer processes died (``RESTARTS`` within ``RESTART_WINDOW`` s: write here)
        self.deaths = Deaths(RESTARTS, RESTART_WINDOW)

    def start(self, *, process: bool | None = None) -> None:
        """Start writing; ``process`` (default: as constructed) chooses a writer process."""
        if self.task is None:
            if process is not None:
                self.process = process
            self.process = self.process and not self.store.inline
            self.max_batch = self._max_batch or (2000 if self.process else 500)
            if self.process and self.child is None:
                self.child = WriterProcess(self.store, self._died)
            self.task = asyncio.create_task(self._run(), name="feedback-writer")

    def _died(self, child: WriterProcess) -> None:
        """The writer process ended on its own (killed, out of memory, a crash): say so at
        once; the next batch starts another one (``_store``)."""
        log.error(
            "the feedback writer process (pid %s) died with %s: a new one is started for the "
            "next batch, which stores the opens and clicks answered meanwhile; if this "
            "repeats, look for the cause in the system log (out of memory? killed?)",
            child.process.pid,
            _exit(child.process.exitcode),
            extra={"event": "tracking.writer_died", "exit": child.process.exitcode},
        )

    async def ready(self) -> None:
        """Start, and wait until the writer can write (its process has opened the store)."""
        self.start()
        if self.child is not None:
            try:
                await self.child.ready()
            except ChildProcessError:
                log.exception("the feedback writer process did not start: writing in this one")
                child, self.child = self.child, None
                await child.close()

    def _put(self, item: _Item | None) -> None:
        self.queue.append(item)
        wakeup = self._wakeup
        if wakeup is not None:  # the writer waits for a first signal: once per batch
            self._wakeup = None
            if not wakeup.done():
                wakeup.set_result(None)

    def submit(self, signal: Signal) -> asyncio.Future[Applied]:
        """Queue ``signal``; the future resolves once it is stored (or failed)."""
        future: asyncio.Future[Applied] = asyncio.get_running_loop().create_future()
        self._put((_pack(signal), future))
        self.submitted += 1
        return future

    def note_tracked(
        self, kind: str, at: datetime, delivery_id: int, detail: dict[str, Any]
    ) -> None:
        """Queue ``Signal(kind, at, "tracking", delivery_id=…, detail=…)`` (an open, a click:
        answered first), which nobody waits for; a failure to store it is logged. Queued as it
        crosses the pipe (``_pack``'s tuple): no dataclass built per request."""
        self._put(((kind, at, "tracking", delivery_id, None, None, detail), None))
        self.submitted += 1

    async def apply(self, signal: Signal) -> Applied:
        """Submit and wait until it is stored."""
        return await self.submit(signal)

    async def apply_many(self, signals: Sequence[Signal]) -> list[Applied]:
        """Submit several and wait until all are stored (the bounce mailbox's rounds)."""
        self.start()
        futures = [self.submit(s) for s in signals]
        return [await f for f in futures]

    async def _run(self) -> None:
        queue = self.queue
        while True:
            if not queue:
                self._wakeup = asyncio.get_running_loop().create_future()
                await self._wakeup
            first = queue.popleft()
            if first is None:
                return
            batch = [first]
            if self.linger:
                await asyncio.sleep(self.linger)  # let concurrent requests join
            stop = False
            while queue and len(batch) < self.max_batch:
                item = queue.popleft()
                if item is None:
                    stop = True
                    break
                batch.append(item)
            await self._write(batch)
            if stop:
                return

    async def _store(
        self, signals: list[_Packed], wanted: list[int] | None
    ) -> tuple[dict[int, Applied], Counter[tuple[str, str]]]:
        while self.child is not None:
            try:
                return await self.child.apply(signals, wanted)
            except ChildProcessError:
                # killed alone (the endpoint lives on): its transaction was rolled back
                # unless it died between its commit and its answer; a new writer process
                # writes this batch again, unless they die too often: then this process
                await self._restart()
        signals_ = _unpack(signals)
        results = await self.store.run(self.store.feedback.apply, signals_)
        return dict(enumerate(results)), _counted(signals_, results)

    async def _restart(self) -> None:
        """Replace a dead writer process: a new one, or none (write in this process) after
        ``RESTARTS`` deaths within ``RESTART_WINDOW`` seconds or when it cannot start."""
        child, self.child = self.child, None
        if child is None:
            return
        await child.close()
        if not child.reported:  # a batch found it dead before its end was seen
            child.reported = True
            self._died(child)
        if self.deaths.died(time.monotonic()):
            log.error(
                "the feedback writer process died %d times within %d min: the endpoint now "
                "stores opens and clicks from its own process (slower: it answers fewer "
                "requests a second); restart the service once the cause is fixed",
                len(self.deaths),
                RESTART_WINDOW // 60,
                extra={"event": "tracking.writer_given_up", "deaths": len(self.deaths)},
            )
            return
        fresh = WriterProcess(self.store, self._died)
        try:
            await fresh.ready()
        except ChildProcessError:
            log.exception("a new feedback writer process did not start: writing in this one")
            await fresh.close()
            return
        log.warning(
            "a new feedback writer process (pid %s) stores the opens and clicks",
            fresh.process.pid,
            extra={"event": "tracking.writer_restarted", "pid": fresh.process.pid},
        )
        self.child = fresh

    async def _write(self, batch: list[_Item]) -> None:
        # the observer hooks need every event; else only the results someone waits for
        observed = self.plugins is not None and self.plugins.observes_deliveries
        wanted = None if observed else [i for i, (_, f) in enumerate(batch) if f is not None]
        try:
            results, counts = await self._store([s for s, _ in batch], wanted)
        except Exception as exc:
            log.exception("could not store %d feedback signals", len(batch))
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            return
        self.applied += len(batch)
        for i, (_, future) in enumerate(batch):
            if future is not None and not future.done():
                future.set_result(results[i])
        if observed and self.plugins is not None:
            for i in range(len(batch)):
                for e in results[i].events:
                    await self.plugins.delivery_event(
                        DeliveryEvent(
                            e.kind,
                            e.at,
                            e.campaign_id,
                            e.delivery_id,
                            e.channel,
                            e.address,
                            e.detail,
                        )
                    )
        if self.metrics is not None:
            for (kind, origin), n in counts.items():
                self.metrics.feedback.labels(kind, origin).inc(n)

    async def close(self) -> None:
        """Write everything submitted so far (including a batch being gathered), then stop.

        The writer is never cancelled mid-batch: signals it already took from the queue
        (an open whose pixel was answered) would be lost.
        """
        if self.task is None:
            return
        task, self.task = self.task, None
        self._put(None)
        await asyncio.shield(task)
        if self.child is not None:
            child, self.child = self.child, None
            await child.close()


@dataclass
class _Links:
    """Links per campaign (immutable once recorded), kept in a small LRU."""

    store: Store
    size: int = 256

    def __post_init__(self) -> None:
        self.cache: OrderedDict[int, dict[int, str]] = OrderedDict()

    async def get(self, campaign_id: int) -> dict[int, str]:
        found = self.cache.get(campaign_id)
        if found is None:
            found = await self.store.run(self.store.feedback.links_of, campaign_id)
            if found:  # an empty answer is not cached: the links may be recorded right now
                self.cache[campaign_id] = found
                if len(self.cache) > self.size:
                    self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(campaign_id)
        return found


class _Context:
    """What the plugins' webhooks see of the endpoint (``WebhookContext``)."""

    def __init__(self, tracking: Tracking) -> None:
        self._tracking = tracking
        self.config = tracking.config
        self.clock = tracking.clock
        self.signer = tracking.signer
        self.public_url = tracking.settings.public_url

    async def apply(self, signals: Iterable[Signal]) -> None:
        await self._tracking.writer.apply_many(list(signals))

    async def delivery_by_provider_id(self, provider_id: str) -> int | None:
        store = self._tracking.store
        return await store.run(store.feedback.delivery_by_provider_id, provider_id)

    def count(self, route: str, outcome: str) -> None:
        self._tracking._count(route, outcome)


class Tracking:
    """The aiohttp application and what its handlers share."""

    def __init__(
        self,
        store: Store,
        config: Config,
        clock: Clock,
        *,
        plugins: Plugins | None = None,
        metrics: Metrics | None = None,
        writer: SignalWriter | None = None,
        webhooks: Sequence[type[Webhooks]] | None = None,
        writer_process: bool = False,
    ) -> None:
        """``webhooks``: the plugins' webhook classes to mount (default: every one the
        loaded plugins registered); ``writer_process``: without a ``writer``, store the
        signals from a child process (``SignalWriter(process=True)``)."""
        if config.tracking is None:
            raise ValueError("[tracking] is not configured")
        self.store = store
        self.config = config
        self.settings = config.tracking
        self.clock = clock
        self.signer = Signer(self.settings.secret.reveal())
        self.metrics = metrics or Metrics(store)
        self.writer = writer or SignalWriter(store, plugins, self.metrics, process=writer_process)
        self._own_writer = writer is None
        self.links = _Links(store)
        #: requests counted since ``/metrics`` last folded them into its counter
        #: (``_count``, ``fold_counts``)
        self._counts: Counter[tuple[str, str]] = Counter()
        self.metrics_from = [
            ipaddress.ip_network(n, strict=False) for n in self.settings.metrics_from
        ]
        token = self.settings.metrics_token
        self.metrics_token = token.reveal().strip().encode() if token is not None else b""
        self.app = web.Application(client_max_size=256 * 1024)
        self.app.add_routes(
            [
                web.get("/o/{token}", self.open),
                web.get("/c/{token}", self.click),
                web.get("/u/{token}", self.unsubscribe_page),
                web.post("/u/{token}", self.unsubscribe),
                web.get("/healthz", self.healthz),
                web.get("/metrics", self.metrics_page),
            ]
        )
        if webhooks is None:
            webhooks = list((plugins or load_plugins()).webhooks().values())
        self.webhooks = [cls(_Context(self)) for cls in webhooks]
        self._mount(self.webhooks)
        self.app.on_startup.append(self._startup)
        self.app.on_cleanup.append(self._cleanup)
        self.runner: web.AppRunner | None = None
        #: the time of the requests in this millisecond (``_now``)
        self._tick = -1
        self._stamp = clock.now()

    def _now(self) -> datetime:
        """The time of a request, to the millisecond: the requests of one millisecond share
        one ``datetime``, which the writer sends to its process and converts for the store
        once (pickle and the flush's binder see the same object)."""
        tick = int(self.clock.monotonic() * 1000)
        if tick != self._tick:
            self._tick, self._stamp = tick, self.clock.now()
        return self._stamp

    async def _startup(self, app: web.Application) -> None:
        await self.writer.ready()

    async def _cleanup(self, app: web.Application) -> None:
        for hooks in self.webhooks:
            try:
                await hooks.close()
            except Exception:
                log.exception("webhooks %s failed to close", hooks.name)
        if self._own_writer:
            await self.writer.close()

    def _mount(self, webhooks: Sequence[Webhooks]) -> None:
        """Mount every plugin's routes; a path the engine or another plugin has is refused."""
        taken = {(r.method, r.resource.canonical) for r in self.app.router.routes() if r.resource}
        for hooks in webhooks:
            for route in hooks.routes():
                key = (route.method, route.path)
                if key in taken or any(route.path.startswith(p) for p in RESERVED):
                    raise PluginError(
                        f"webhooks `{hooks.name}` cannot mount {route.method} {route.path}: "
                        "the path is the tracking endpoint's own or another plugin's"
                    )
                taken.add(key)
                self.app.router.add_route(route.method, route.path, route.handler)

    # -- serving ----------------------------------------------------------------------------

    async def start(self, listen: str | None = None) -> str:
        """Bind ``listen`` (default the configured one); return the bound ``host:port``."""
        self.runner, bound = await serve(
            self.app, listen or self.settings.listen, "[tracking] listen"
        )
        return bound

    async def stop(self) -> None:
        self.fold_counts()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def _count(self, route: str, outcome: str) -> None:
        # a plain count on the event loop: prometheus_client's inc() takes a lock each time;
        # ``fold_counts`` adds these to the counter before ``/metrics`` renders it
        self._counts[route, outcome] += 1

    def fold_counts(self) -> None:
        """Add the requests counted since the last call to ``disparo_tracking_requests``
        (on the event loop: ``/metrics`` calls it before rendering, so it is exact)."""
        counts, self._counts = self._counts, Counter()
        for (route, outcome), n in counts.items():
            self.metrics.requests.labels(route, outcome).inc(n)

    def _not_found(self, route: str) -> web.Response:
        self._count(route, "refused")
        return web.Response(status=404, text="not found\n", headers=NO_STORE)

    # -- opens, clicks, unsubscribes ---------------------------------------------------------

    async def open(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"].removesuffix(".gif")
        ids = self.signer.verify("o", token)
        if ids is None:
            return self._not_found("open")
        self.writer.note_tracked("open", self._now(), ids[0], _client(request))
        self._count("open", "ok")
        return web.Response(body=PIXEL, headers=PIXEL_HEADERS)

    async def click(self, request: web.Request) -> web.StreamResponse:
        ids = self.signer.verify("c", request.match_info["token"])
        if ids is None or len(ids) != 3:
            return self._not_found("click")
        campaign_id, delivery_id, position = ids
        url = (await self.links.get(campaign_id)).get(position)
        if url is None:
            return self._not_found("click")
        if "{{" in url:
            url = await self._personal(url, delivery_id)
            if url is None:
                return self._not_found("click")
        self.writer.note_tracked(
            "click",
            self._now(),
            delivery_id,
            # the URL as redirected to: a link made per recipient has their values, and the
            # result files (T8's CLIQUE) list what was clicked
            {"link": position, "url": url, **_client(request)},
        )
        self._count("click", "ok")
        # a plain 302 (no exception, no body): the Location that HTTPFound would send
        return web.Response(status=302, headers={"Location": _location(url), **NO_STORE})

    async def _personal(self, template: str, delivery_id: int) -> str | None:
        """A link made per recipient, rendered with their values (each URL-encoded)."""
        from engine.render import variables

        found = await self.store.run(self.store.feedback.recipient, delivery_id)
        if found is None:
            return None
        _, who = found
        try:
            url = _LINKS.from_string(template).render(variables(**who))
        except Exception:  # a template the sandbox refuses: no redirect
            log.warning("link template of delivery %s cannot be rendered", delivery_id)
            return None
        return url if re.match(r"https?://[^\s]+$", url, re.IGNORECASE) else None

    async def unsubscribe_page(self, request: web.Request) -> web.StreamResponse:
        if self.signer.verify("u", request.match_info["token"]) is None:
            return self._not_found("unsubscribe")
        self._count("unsubscribe-page", "ok")
        return web.Response(text=PAGE_CHOOSE, content_type="text/html", headers=NO_STORE)

    async def unsubscribe(self, request: web.Request) -> web.StreamResponse:
        ids = self.signer.verify("u", request.match_info["token"])
        if ids is None:
            return self._not_found("unsubscribe")
        form = await request.post()
        if form.get("List-Unsubscribe") == "One-Click":
            scope, via = "all", "one-click"
        elif form.get("scope") in ("campaign", "all"):
            scope, via = str(form["scope"]), "page"
        else:
            self._count("unsubscribe", "bad-request")
            return web.Response(status=400, text="choose scope=campaign or scope=all\n")
        await self.writer.apply(
            Signal(
                "unsubscribe",
                self.clock.now(),
                "tracking",
                delivery_id=ids[0],
                detail={"scope": scope, "via": via},
            )
        )
        self._count("unsubscribe", "ok")
        if via == "one-click":
            return web.Response(text="unsubscribed\n", headers=NO_STORE)
        page = PAGE_DONE_ALL if scope == "all" else PAGE_DONE_CAMPAIGN
        return web.Response(text=page, content_type="text/html", headers=NO_STORE)

    # -- health and metrics --------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        outage = self.store.outage
        if outage is not None:  # writes fail (a read may still work: SQLite's WAL)
            return web.json_response(
                {
                    "status": "error",
                    "database": f"unavailable since {outage.since.isoformat(timespec='seconds')}",
                    "error": outage.error,
                },
                status=503,
                headers=NO_STORE,
            )
        try:
            await asyncio.wait_for(self.store.run(self.store.ping), 5)
        except Exception as exc:
            return web.json_response(
                {"status": "error", "database": f"unreachable: {type(exc).__name__}"},
                status=503,
                headers=NO_STORE,
            )
        return web.json_response(
            {
                "status": "ok",
                "version": __version__,
                "database_ms": round((time.perf_counter() - started) * 1000, 1),
                "queued_signals": len(self.writer.queue),
                # where opens and clicks are written: a writer process, or this process
                # after the writer processes died too often (logged)
                "writer": "process" if self.writer.child is not None else "in-process",
            },
            headers=NO_STORE,
        )

    def metrics_refusal(self, request: web.Request) -> str | None:
        """Why ``/metrics`` is not served to this request, or ``None`` when it is.

        Served with ``Authorization: Bearer <metrics_token>`` (constant-time compare), from
        anywhere; else only to a client whose own address is in ``metrics_from`` *and* that
        no reverse proxy forwarded: behind a proxy on the same host every visitor's request
        comes from 127.0.0.1, so a proxy's header means the real client is unknown."""
        given = request.headers.get("Authorization", "")
        scheme, _, credential = given.partition(" ")
        if given:
            if (
                self.metrics_token
                and scheme.lower() == "bearer"
                and hmac.compare_digest(credential.strip().encode(), self.metrics_token)
            ):
                return None
            return "wrong or unknown metrics token ([tracking] metrics_token_file)"
        forwarded = [h for h in PROXY_HEADERS if h in request.headers]
        if forwarded:
            return (
                f"metrics are not served through a reverse proxy ({forwarded[0]} present): "
                "scrape the endpoint directly, or send `Authorization: Bearer <token>` with "
                "[tracking] metrics_token_file"
            )
        try:
            peer = ipaddress.ip_address(request.remote or "")
        except ValueError:
            peer = None
        if peer is None or not any(peer in n for n in self.metrics_from):
            return (
                "metrics are not served to this address: add its network to [tracking] "
                "metrics_from, or use a bearer token ([tracking] metrics_token_file)"
            )
        return None

    async def metrics_page(self, request: web.Request) -> web.StreamResponse:
        refused = self.metrics_refusal(request)
        if refused is not None:
            return web.Response(status=403, text=refused + "\n", headers=NO_STORE)
        self.fold_counts()
        body = await asyncio.to_thread(self.metrics.render)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, **NO_STORE})


@lru_cache(maxsize=4096)
def _location(url: str) -> str:
    """A link as a ``Location`` header (yarl's encoding, as ``HTTPFound`` does), once per
    link: a campaign's links are few and clicked again and again."""
    return str(URL(url))


def _client(request: web.Request) -> dict[str, str]:
    """A little about who fetched (for telling people from scanners later); no IP kept."""
    agent = request.headers.get("User-Agent", "")[:200]
    return {"agent": agent} if agent else {}


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}button{font-size:1rem;padding:.6rem 1rem;margin:.3rem 0;"
    "width:100%;cursor:pointer}small{color:#666}"
)


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="pt-BR"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>"
    )


PAGE_CHOOSE = _page(
    "Descadastrar",
    "<h1>Não quer mais receber estas mensagens?</h1>"
    '<form method="post"><input type="hidden" name="scope" value="campaign">'
    '<button type="submit">Não receber mais mensagens desta campanha</button></form>'
    '<form method="post"><input type="hidden" name="scope" value="all">'
    '<button type="submit">Não receber mais nenhuma mensagem</button></form>'
    "<p><small>Unsubscribe: the first button stops this campaign, the second stops all "
    "future campaigns.</small></p>",
)
PAGE_DONE_CAMPAIGN = _page(
    "Pronto",
    "<h1>Pronto.</h1><p>Você não receberá mais mensagens desta campanha.</p>"
    "<p><small>Done: you will get no more messages of this campaign.</small></p>",
)
PAGE_DONE_ALL = _page(
    "Pronto",
    "<h1>Pronto.</h1><p>Você não receberá mais nenhuma mensagem nossa.</p>"
    "<p><small>Done: you will get no more messages from us.</small></p>",
)

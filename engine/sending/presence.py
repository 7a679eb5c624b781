"""This engine process in the store: registered at start, a heartbeat every few seconds that
renews every lease it holds (claimed deliveries, sender accounts, bounce mailboxes), the
rescue of engines whose heartbeat stopped (kill -9, a lost host), and a clean goodbye.

Leases are short (30 s by default) because a live engine renews them: a crashed engine's
work is rescued within a lease and a heartbeat of its last sign of life. An engine that
cannot renew its own leases (the database is unreachable) stops starting sends before they
run out (``lease_ok``), so the work another engine rescues is never still being sent here.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from engine import __version__
from engine.clock import Clock, wait_event
from engine.store import Store
from engine.store.db import WRITE_LOCK
from engine.store.engines import Rescued
from engine.store.errors import backoff, describe, is_transient

log = logging.getLogger(__name__)


class Presence:
    """Registers, heartbeats, rescues and unregisters one engine process (``node``)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        node: str,
        *,
        lease: timedelta,
        heartbeat: timedelta,
        mode: str = "run",
        config: str | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.node = node
        self.lease = lease
        self.heartbeat = heartbeat
        self.mode = mode
        self.config = config
        self.detail: dict[str, Any] = {}
        #: the deliveries this process claimed and has not confirmed: what its heartbeat renews
        self.in_flight: set[int] = set()
        self.registered = False
        #: when the last heartbeat was written (our leases run ``lease`` from then)
        self.renewed_at: datetime | None = None
        self._next_beat: datetime | None = None
        #: engines we logged as waiting for (so the wait is said once)
        self._waiting_for: set[str] = set()
        #: the heartbeat each other engine had when this one first saw it
        self._seen: dict[str, datetime] = {}
        self._failures = 0

    # -- the heartbeat ---------------------------------------------------------------------

    async def register(self) -> None:
        """Record this engine as running (and rescue engines that stopped)."""
        await self.store.run(
            self.store.engines.register,
            self.node,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=__version__,
            mode=self.mode,
            lease=self.lease,
            config=self.config,
            detail=self.detail,
        )
        self.registered = True
        self.renewed_at = self.clock.now()
        self._next_beat = self.renewed_at + self.heartbeat
        log.info(
            "engine %s started (disparo %s, %s; leases of %g s renewed every %g s)",
            self.node,
            __version__,
            self.mode,
            self.lease.total_seconds(),
            self.heartbeat.total_seconds(),
            extra={"event": "engine.started", "node": self.node, "mode": self.mode},
        )
        await self.rescue()

    async def beat(self) -> None:
        """Renew every lease this engine holds; re-register if another engine took it for
        dead (it was out of touch with the database for longer than its lease)."""
        started = self.clock.now()
        renewed = await self.store.run(
            self.store.engines.beat,
            self.node,
            self.lease,
            in_flight=set(self.in_flight),
            detail=self.detail,
        )
        if not renewed.registered:
            log.error(
                "engine %s had been taken for stopped (no heartbeat for more than %g s) and its "
                "work given to other engines; registering again",
                self.node,
                self.lease.total_seconds(),
                extra={"event": "engine.reregistered", "node": self.node},
            )
            self.registered = False
            await self.register()
            return
        self.renewed_at = started
        self._next_beat = started + self.heartbeat

    def lease_ok(self) -> bool:
        """May this engine start a send now? Only while its leases are surely its own: the
        last heartbeat leaves at least a heartbeat's margin before they run out."""
        if self.renewed_at is None:
            return False
        return self.clock.now() < self.renewed_at + self.lease - self.heartbeat

    def due(self) -> bool:
        return self._next_beat is None or self.clock.now() >= self._next_beat

    async def beat_if_due(self) -> None:
        """For engines driven tick by tick (tests): beat and rescue when it is time."""
        if not self.registered:
            await self.register()
        elif self.due():
            await self.beat()
            await self.rescue()

    async def run(self, stop: asyncio.Event) -> None:
        """Heartbeat and rescue every ``heartbeat`` until ``stop``; a database that fails is
        retried (with a log line when it fails and when it is back)."""
        while not stop.is_set():
            try:
                if not self.registered:
                    await self.register()
                else:
                    await self.beat()
                    await self.rescue()
                if self._failures:
                    log.warning(
                        "engine %s: the database answers again; heartbeat renewed",
                        self.node,
                        extra={"event": "engine.database_back", "node": self.node},
                    )
                self._failures = 0
                wait = self.heartbeat.total_seconds()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("engine %s: the heartbeat failed", self.node)
                elif self._failures == 0:
                    log.warning(
                        "engine %s: cannot renew its leases, the database is unavailable (%s); "
                        "no new sends start until it answers",
                        self.node,
                        describe(exc),
                        extra={"event": "engine.database_unavailable", "node": self.node},
                    )
                wait = min(backoff(self._failures), self.heartbeat.total_seconds())
                self._failures += 1
            await wait_event(self.clock, stop, wait)

    # -- rescue ----------------------------------------------------------------------------

    async def rescue(self) -> list[Rescued]:
        """Give back the work of every engine whose heartbeat is older than its lease, and of
        claims whose lease ran out with no engine row to rescue them by."""
        now = self.clock.now()
        found: list[Rescued] = []
        for other in await self.store.run(self.store.engines.listing, held=False):
            if other.node == self.node or other.alive(now):
                continue
            rescued = await self.store.run(self.store.engines.rescue, other.node, by=self.node)
            if rescued is None:
                continue
            found.append(rescued)
            self._waiting_for.discard(other.node)
            silent = (now - rescued.heartbeat_at).total_seconds()
            log.warning(
                "engine %s stopped (no heartbeat for %.0f s); rescuing %s deliveries%s%s",
                rescued.node,
                silent,
                rescued.deliveries,
                f", accounts {', '.join(rescued.accounts)}" if rescued.accounts else "",
                f", mailboxes {', '.join(rescued.mailboxes)}" if rescued.mailboxes else "",
                extra={
                    "event": "engine.rescued",
                    "node": self.node,
                    "stopped_node": rescued.node,
                    "deliveries": rescued.deliveries,
                },
            )
        orphans = await self.store.run(
            self.store.claims.rescue_leases, owner=self.node, keep=set(self.in_flight)
        )
        if orphans:
            log.warning(
                "%s deliveries had lost their lease (their engine stopped, or the answer to "
                "their claim was lost): they will be sent",
                orphans,
                extra={"event": "engine.rescued", "node": self.node, "deliveries": orphans},
            )
        return found

    async def proven_alive(self) -> set[str]:
        """Other engines seen to beat since this one first looked: running for sure. (A fresh
        heartbeat alone proves nothing: an engine killed a second ago has one.)"""
        now = self.clock.now()
        alive: set[str] = set()
        for other in await self.store.run(self.store.engines.listing, held=False):
            if other.node == self.node or not other.alive(now):
                continue
            first = self._seen.setdefault(other.node, other.heartbeat_at)
            if other.heartbeat_at > first:
                alive.add(other.node)
        return alive

    async def others_holding(self) -> dict[str, int]:
        """Deliveries claimed by engines not proven alive (stopped, or not heard of since this
        engine looked): what an engine finishing its work waits for, until they beat again
        or are rescued. Each wait is logged once."""
        claimed = await self.store.run(self.store.claims.claimed_by)
        alive = await self.proven_alive()
        engines = {e.node: e for e in await self.store.run(self.store.engines.listing, held=False)}
        waiting = {
            owner: n for owner, n in claimed.items() if owner != self.node and owner not in alive
        }
        for owner, n in waiting.items():
            if owner in self._waiting_for:
                continue
            self._waiting_for.add(owner)
            other = engines.get(owner)
            if other is not None:
                last = other.heartbeat_at.isoformat(timespec="seconds")
                when = (
                    f"its last heartbeat was at {last}: waiting for it to beat again, or to "
                    f"rescue its work at {other.rescue_at().isoformat(timespec='seconds')}"
                )
            else:
                when = "it is not registered: waiting for its leases to run out"
            log.warning(
                "engine %s holds %s deliveries; %s",
                owner,
                n,
                when,
                extra={"event": "engine.waiting", "node": self.node, "other": owner},
            )
        return waiting

    # -- stopping --------------------------------------------------------------------------

    async def close(self, buckets: Mapping[str, float] | None = None) -> tuple[int, int, int]:
        """Give back every lease this engine holds and unregister it (a clean stop), with the
        tokens of each account's bucket (``buckets``): the next holder continues it (D10)."""
        released = await self.store.run(self.store.engines.release, self.node, buckets)
        await self.store.run(self.store.engines.unregister, self.node)
        self.registered = False
        if self.store.dialect == "sqlite" and WRITE_LOCK["writes"]:
            log.info(
                "engine %s: %s writes to the store, %.2f s in all waiting for SQLite's write lock",
                self.node,
                WRITE_LOCK["writes"],
                WRITE_LOCK["waited"],
                extra={
                    "event": "engine.write_lock",
                    "node": self.node,
                    "writes": WRITE_LOCK["writes"],
                    "waited_s": round(WRITE_LOCK["waited"], 3),
                },
            )
        return released

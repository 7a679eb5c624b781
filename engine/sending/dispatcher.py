"""Dispatch (D1–D13): campaigns start at their time, batches are released by the pacing math,
deliveries are claimed with a lease, sent within each account's token bucket, confirmed;
temporary failures back off; the deadline expires what is left.

One ``tick`` a second moves campaigns through their states and applies operator commands.
Each sender account has one ``AccountSender`` task: it sends one campaign at a time, picked by
priority then age, and re-picks at each batch boundary (D11), so a higher-priority campaign
takes the account over there. Several engine nodes may run: claims never overlap (D12), and an
account is leased to one node at a time, so its rate limit holds across nodes. Each node
heartbeats in the store and renews its leases (``Presence``); a stopped node's work is rescued.

Nothing spins: a campaign that cannot be sent as configured is held with the reason; one
picked again and again without anything to send is backed off; an account whose channel
fails for a systemic reason is paused by its circuit breaker, which probes before resuming;
a database that is unavailable is waited out (the engine keeps running, ``/healthz`` says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from engine.addresses import Checked, suppression_key
from engine.campaign import SETTLED_COUNTERS, Campaign
from engine.clock import Clock, wait_event
from engine.config import AccountSettings, Config
from engine.events import CampaignEvent, DeliveryEvent
from engine.feedback.metrics import Metrics
from engine.plugins import Plugins
from engine.plugins.channel import (
    CampaignProblem,
    Channel,
    ChannelContext,
    DeliveryInfo,
    Failed,
    Retry,
    SendResult,
    Sent,
)
from engine.render import variables
from engine.schedule import released_count
from engine.sending.accounts import resolve_account
from engine.sending.breaker import Breaker, Change
from engine.sending.bucket import TokenBucket
from engine.sending.presence import Presence
from engine.store import Store
from engine.store.accounts import AccountState
from engine.store.claims import Claimed, Outcome
from engine.store.delivery_errors import reason_key
from engine.store.errors import backoff, describe, is_transient
from engine.tokens import Signer

log = logging.getLogger(__name__)

#: an unpaced campaign yields to a higher-priority one every this many messages (D11)
SOFT_BATCH = 1000
FIRST_RETRY = timedelta(minutes=1)
#: an account held off (a provider's Retry-After) for longer than this: its sender gives
#: its claims back and waits instead of sitting on them past their lease
HELD = 5.0
MAX_RETRY = timedelta(hours=1)
GIVE_UP = timedelta(hours=48)
#: a campaign picked without anything to send waits 1, 2, 4… seconds, up to this, before it
#: is picked again (it never spins)
MAX_STALL = 300.0
#: campaigns held because they cannot be sent as configured are checked again this often
RECHECK = timedelta(minutes=5)
#: one progress line per sending account this often
PROGRESS_EVERY = timedelta(minutes=1)
#: hold reasons: what keeps a campaign from sending (its account's breaker lets a probe
#: through; the others wait for a person or the guard)
HELD_BY = ("account", "guard", "breaker", "problem")


def node_name() -> str:
    """This engine process, for leases: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def retry_delay(attempt: int, rng: random.Random) -> timedelta:
    """D13: the first retry after a minute, doubling, capped at an hour, with jitter."""
    base: timedelta = min(FIRST_RETRY * (2 ** min(max(0, attempt - 1), 10)), MAX_RETRY)
    jittered: timedelta = base * rng.uniform(1.0, 1.2)
    return jittered


def _clock_time(value: datetime, config: Config) -> str:
    return value.astimezone(config.tz).strftime("%H:%M:%S")


@dataclass
class Trouble:
    """A systemic failure of an account seen by this engine (for ``run --until-idle``)."""

    account: str
    error: str
    failures: int = 0


@dataclass
class Minute:
    """What one account did since its last progress line."""

    sent: int = 0
    retry: int = 0
    failed: int = 0
    other: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    campaigns: set[int] = field(default_factory=set)
    next_retry: datetime | None = None

    def add(self, campaign_id: int, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            if o.kind == "release":
                continue
            self.campaigns.add(campaign_id)
            if o.kind == "sent":
                self.sent += 1
            elif o.kind == "retry":
                self.retry += 1
                self.reasons[reason_key(o.cause or o.error)] += 1
                if o.next_attempt_at is not None and (
                    self.next_retry is None or o.next_attempt_at < self.next_retry
                ):
                    self.next_retry = o.next_attempt_at
            elif o.kind in ("failed", "bounced"):
                self.failed += 1
            else:
                self.other += 1

    @property
    def empty(self) -> bool:
        return not (self.sent or self.retry or self.failed or self.other)


class Dispatcher:
    """Everything that sends."""

    def __init__(
        self,
        store: Store,
        plugins: Plugins,
        config: Config,
        clock: Clock,
        *,
        node: str | None = None,
        signer: Signer | None = None,
        lease: timedelta = timedelta(seconds=30),
        heartbeat: timedelta | None = None,
        stop_timeout: timedelta = timedelta(seconds=10),
        tick_seconds: float = 1.0,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        mode: str = "run",
        workers: int = 1,
    ) -> None:
        self.store = store
        #: sender processes expected on this store (``run --workers``): until they had the
        #: time to start (a lease), this engine takes no more than its share of the accounts
        self.workers = workers
        #: running engine nodes on this store, this one included (refreshed at each tick)
        self.nodes = 1
        self.metrics = metrics
        self.plugins = plugins
        self.config = config
        self.clock = clock
        self.node = node or node_name()
        self.signer = signer
        self.lease = lease
        self.stop_timeout = stop_timeout
        self.tick_seconds = tick_seconds
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.presence = Presence(
            store,
            clock,
            self.node,
            lease=lease,
            heartbeat=heartbeat or min(timedelta(seconds=5), lease / 3),
            mode=mode,
            config=str(config.path) if config.path else None,
        )
        self.campaigns: dict[int, Campaign] = {}
        self.states: dict[str, AccountState] = {}
        #: why a campaign cannot be sent as configured (CampaignProblem), by campaign id
        self.problems: dict[int, str] = {}
        #: campaigns whose content the channel accepted (checked once per configuration)
        self.checked: set[int] = set()
        #: why each held campaign is held (one of HELD_BY)
        self.held_for: dict[int, str] = {}
        self.senders: dict[str, AccountSender] = {}
        #: systemic failures seen by this engine, by account (``run --until-idle`` reports them)
        self.trouble: dict[str, Trouble] = {}
        self.stopping = False
        #: set when a stop must not wait any longer (the stop timeout passed, a second signal)
        self.abandon = asyncio.Event()
        self._started = False
        self._beating: asyncio.Task[None] | None = None
        self._beat_stop = asyncio.Event()
        self._checkers: dict[str, Channel] = {}
        self._rechecked_at: datetime | None = None
        self._progress_at: datetime | None = None
        self._db_failures = 0
        self._confirmed = 0
        self._shut = False
        #: ticks done (tests wait for a few more)
        self._ticks = 0
        self._born = clock.monotonic()
        #: one sender at a time decides whether to take an account (its share)
        self.leasing = asyncio.Lock()

    def share(self) -> int:
        """How many sender accounts with work this engine leases at most: those accounts
        split evenly between the running engine nodes (sender accounts are the unit of
        parallelism), or between the expected ``workers`` while they start."""
        nodes = self.nodes
        if self.clock.monotonic() - self._born < self.lease.total_seconds():
            nodes = max(nodes, self.workers)
        busy = {c.account for c in self.campaigns.values() if c.status == "sending"}
        return max(1, -(-len(busy) // max(1, nodes)))

    def leased_here(self) -> list[str]:
        """The accounts with work this engine holds the lease of, by name (an account whose
        campaigns are done does not count: another node may need the place)."""
        now = self.clock.now()
        return sorted(
            s.name
            for s in self.senders.values()
            if s._lease_until is not None
            and s._lease_until > now
            and s.leased_by is None
            and s.working
        )

    # -- the tick ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Apply commands, move every open campaign along (D1, D2, D5, D8), start senders."""
        from engine.actions import apply_pending

        if not self._started:
            await self.start()
        if self._beating is None:  # driven tick by tick: heartbeat and rescue from here
            await self.presence.beat_if_due()
        now = self.clock.now()
        await apply_pending(self.store, self.plugins, on_change=self._changed)
        self.states = await self.store.run(self.store.accounts.states)
        if self._rechecked_at is None or now - self._rechecked_at >= RECHECK:
            self._rechecked_at = now
            self.checked -= set(self.problems)
            self.problems.clear()  # checked again below: still broken stays held, silently
        for campaign in await self.store.run(self.store.campaigns.open):
            await self._advance(campaign, now)
        self.campaigns = {c.id: c for c in await self.store.run(self.store.campaigns.open)}
        self.held_for = {k: v for k, v in self.held_for.items() if k in self.campaigns}
        wanted = {
            c.account
            for c in self.campaigns.values()
            if c.account and (c.status == "sending" or self.held_for.get(c.id) == "breaker")
        }
        for name in wanted:
            if name not in self.senders and name in self.config.accounts and not self.stopping:
                self.senders[name] = AccountSender(self, self.config.accounts[name])
        if self.workers > 1 or len(self.senders) > 1:
            self.nodes = 1 + len(await self.presence.proven_alive())
        for sender in self.senders.values():
            sender.ensure_running()
        self._report_progress(now)
        self._ticks += 1
        self.wake_senders()

    def wake_senders(self) -> None:
        """Tell every sender to look for work again (after a tick, a release, a problem)."""
        for sender in self.senders.values():
            sender.poke()

    async def _changed(
        self,
        campaign_id: int,
        status: str | None,
        previous: str | None,
        actor: str,
        kind: str = "status",
        detail: dict[str, Any] | None = None,
    ) -> None:
        if kind == "status" and actor not in ("engine", "deadline") and status != previous:
            log.info(
                "campaign %s: %s -> %s (by %s)",
                campaign_id,
                previous,
                status,
                actor,
                extra={
                    "event": "campaign.status",
                    "campaign_id": campaign_id,
                    "status": status,
                    "previous": previous,
                    "actor": actor,
                },
            )
        if self.plugins.observes_campaigns:
            await self.plugins.campaign_event(
                CampaignEvent(
                    kind, self.clock.now(), campaign_id, status, previous, actor, detail or {}
                )
            )

    async def _status(
        self, c: Campaign, status: str, actor: str, reason: str | None = None, **values: Any
    ) -> None:
        previous = await self.store.run(
            self.store.campaigns.set_status,
            c.id,
            status,
            actor=actor,
            reason=reason,
            expect=[c.status],
            values=values or None,
        )
        if previous is not None:
            level = logging.WARNING if status in ("held", "expired") else logging.INFO
            log.log(
                level,
                "campaign %s: %s -> %s%s",
                c.id,
                previous,
                status,
                f": {reason}" if reason else "",
                extra={
                    "event": "campaign.status",
                    "campaign_id": c.id,
                    "account": c.account,
                    "status": status,
                    "previous": previous,
                    "reason": reason,
                    "actor": actor,
                },
            )
            await self._changed(c.id, status, previous, actor)

    async def _reload(self, c: Campaign) -> Campaign:
        fresh = await self.store.run(self.store.campaigns.get, c.id)
        return fresh or c

    def _checker(self, account: str) -> Channel:
        """A channel object of the account, never opened: it checks campaigns' content."""
        checker = self._checkers.get(account)
        if checker is None:
            settings = self.config.accounts[account]
            cls = self.plugins.channels()[settings.channel]
            checker = cls(settings, ChannelContext(self.config, self.clock, self.signer))
            self._checkers[account] = checker
        return checker

    def _problem(self, c: Campaign, account: str) -> str | None:
        """Why the account's channel cannot send this campaign as configured, if it cannot
        (its ``prepare`` raised): checked once per configuration, then every few minutes."""
        if c.id in self.problems:
            return self.problems[c.id]
        if c.id in self.checked:
            return None
        try:
            checker = self._checker(account)
        except Exception as exc:
            self.problems[c.id] = f"the account {account} cannot be used: {exc}"
            self.checked.add(c.id)
            return self.problems[c.id]
        try:
            checker.prepare(c)
        except CampaignProblem as exc:
            self.problems[c.id] = str(exc)
        except Exception as exc:
            log.exception("the %s channel failed to prepare campaign %s", c.channel, c.id)
            self.problems[c.id] = f"the {c.channel} channel cannot prepare the campaign: {exc!r}"
        self.checked.add(c.id)
        return self.problems.get(c.id)

    def _hold(self, c: Campaign, account: str | None, why: str | None) -> tuple[str, str] | None:
        """(what, reason) that keeps the campaign from sending, or None."""
        if account is None:
            return "account", why or "no sender account"
        if account not in self.config.accounts:
            return "account", f"the account `{account}` is no longer in the configuration"
        state = self.states.get(account)
        if state is not None and state.guard_state == "paused" and not state.override_by:
            until = (
                state.paused_until.astimezone(self.config.tz).strftime("%d/%m %H:%M")
                if state.paused_until
                else "?"
            )
            return "guard", (
                f"account {account} is paused by the guard until {until}: "
                f"{state.pause_reason or ''}"
            ).strip()
        if state is not None and state.breaker_open:
            return "breaker", f"account {account} is paused: {state.breaker_reason}"
        problem = self._problem(c, account)
        if problem is not None:
            return "problem", problem
        return None

    async def _advance(self, c: Campaign, now: datetime) -> None:
        d = self.store.campaigns
        if c.deadline is not None and now >= c.deadline:  # D8
            expired = await self.store.run(d.close_out, c.id, "expired", "the deadline passed")
            if await self.store.run(d.has_open_deliveries, c.id):
                return  # in-flight sends finish (or expire) first
            left = expired or c.counters.get("expired", 0)
            await self._status(
                c,
                "expired" if left else "completed",
                "deadline",
                "the deadline passed (D8)" if left else None,
                finished_at=now,
            )
            return
        if c.status == "paused":
            return
        account = c.account
        why = None
        if account is None:
            account, why = resolve_account(self.config, c.channel, c.wallet, c.content.sender)
            if account is not None:
                await self.store.run(d.set_fields, c.id, account=account)
                c = await self._reload(c)
        held = self._hold(c, account, why)
        if held is not None:
            self.held_for[c.id] = held[0]
            if c.status != "held" or c.status_reason != held[1]:
                await self._status(c, "held", "engine", held[1])
            return
        self.held_for.pop(c.id, None)
        if now < c.start_at:  # D2
            if c.status != "scheduled":
                await self._status(c, "scheduled", "engine")
            return
        if c.status != "sending":
            await self._status(c, "sending", "engine", started_at=c.started_at or now)
            c = await self._reload(c)
        released = released_count(c, now)
        if released > c.released_batches and await self.store.run(
            d.release_batches, c.id, released
        ):
            await self._changed(
                c.id,
                "sending",
                "sending",
                "engine",
                "batch-released",
                {"batch": released, "of": c.batches},
            )
            self.wake_senders()
        if released >= c.batches and not await self.store.run(d.has_open_deliveries, c.id):
            await self._status(c, "completed", "engine", finished_at=now)

    def _report_progress(self, now: datetime) -> None:
        """Once a minute, one line per account that did something, and one for its retries."""
        if self._progress_at is None:
            self._progress_at = now
            return
        if now - self._progress_at < PROGRESS_EVERY:
            return
        self._progress_at = now
        for name, sender in self.senders.items():
            minute, sender.minute = sender.minute, Minute()
            if minute.empty:
                continue
            parts = []
            for cid in sorted(minute.campaigns):
                c = self.campaigns.get(cid)
                if c is not None and c.recipients:
                    settled = sum(c.counters.get(k, 0) for k in SETTLED_COUNTERS)
                    parts.append(f"campaign {cid} at {100 * settled // c.recipients} %")
                elif c is None:
                    parts.append(f"campaign {cid} done")
            log.info(
                "%s: %s sent, %s retrying, %s failed in the last minute%s",
                name,
                minute.sent,
                minute.retry,
                minute.failed,
                f"; {', '.join(parts)}" if parts else "",
                extra={
                    "event": "account.progress",
                    "account": name,
                    "sent": minute.sent,
                    "retrying": minute.retry,
                    "failed": minute.failed,
                    "campaigns": sorted(minute.campaigns),
                },
            )
            if minute.retry:
                reasons = ", ".join(f"{r} ({n})" for r, n in minute.reasons.most_common(3))
                more = len(minute.reasons) - 3
                log.warning(
                    "%s: %s deliveries to retry in the last minute: %s%s%s",
                    name,
                    minute.retry,
                    reasons,
                    f" and {more} other reason(s)" if more > 0 else "",
                    f"; the first retries at {_clock_time(minute.next_retry, self.config)}"
                    if minute.next_retry
                    else "",
                    extra={
                        "event": "account.retries",
                        "account": name,
                        "retrying": minute.retry,
                        "reasons": dict(minute.reasons.most_common(10)),
                    },
                )

    # -- the configuration -------------------------------------------------------------------

    async def reconfigure(self, config: Config) -> None:
        """Take a new configuration (SIGHUP): new and changed accounts get new senders (the
        old ones finish their chunk first), removed ones stop, held campaigns are checked
        again (a template added, an account configured)."""
        changed = {
            name
            for name, sender in self.senders.items()
            if config.accounts.get(name) != sender.settings
            or config.templates != self.config.templates
        }
        self.config = config
        self._checkers.clear()
        self.problems.clear()
        self.checked.clear()
        await self.store.run(
            self.store.accounts.sync, {name: a.channel for name, a in config.accounts.items()}
        )
        for name in config.accounts:
            # a paused account is probed at once: the fix may be in the file, or in a secret
            # it names (a password file, an environment the operator changed)
            if await self.store.run(self.store.accounts.probe_now, name):
                log.info(
                    "account %s: the configuration was reloaded; its channel is probed now",
                    name,
                    extra={"event": "account.probe", "account": name},
                )
        retiring = [self.senders[name] for name in changed]
        for sender in retiring:
            sender.retire()
        for sender in retiring:
            await sender.stop()  # its chunk is confirmed; the next tick starts the new sender
            if self.senders.get(sender.name) is sender:
                del self.senders[sender.name]
        for sender in self.senders.values():
            sender.context = ChannelContext(config, self.clock, self.signer)
            if not sender.breaker.closed:
                sender.breaker.retry_at = self.clock.now()
                sender.bucket.forgive()
                sender.poke()

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Register this engine (rescuing engines that stopped) and make sure every configured
        account has its state row (leases, guard, breaker)."""
        if not self.presence.registered:
            await self.presence.register()
        await self.store.run(
            self.store.accounts.sync,
            {name: a.channel for name, a in self.config.accounts.items()},
        )
        self._started = True

    async def begin(self, stop: asyncio.Event) -> bool:
        """Start (waiting out a database that is unavailable) and heartbeat in the background
        from now on; False if stopped first. ``run`` and ``run_until_idle`` begin by
        themselves; the engine begins earlier, so it is registered while it collects."""
        if not await self._start(stop):
            return False
        self._beat_in_background()
        return True

    async def _start(self, stop: asyncio.Event) -> bool:
        """Start, waiting out a database that is unavailable; False if stopped first."""
        if self._started:
            return True
        while not stop.is_set():
            try:
                await self.start()
            except Exception as exc:
                await self._failed(exc, stop)
                continue
            self._recovered()
            return True
        return False

    def _beat_in_background(self) -> None:
        if self._beating is None:
            self._beat_stop.clear()
            self._beating = asyncio.create_task(
                self.presence.run(self._beat_stop), name=f"heartbeat:{self.node}"
            )

    async def _failed(self, exc: Exception, stop: asyncio.Event) -> None:
        """A tick (or the start) failed: say so (once for a database outage), wait, go on."""
        wait = backoff(self._db_failures)
        if is_transient(exc):
            if self._db_failures == 0:
                log.warning(
                    "the database is unavailable (%s): sending waits; trying again every "
                    "few seconds",
                    describe(exc),
                    extra={"event": "database.unavailable", "node": self.node},
                )
        else:
            log.exception("the dispatcher's tick failed; trying again in %g s", wait)
        self._db_failures += 1
        await wait_event(self.clock, stop, wait)

    def _recovered(self) -> None:
        if self._db_failures:
            log.warning(
                "the database answers again after %s failed attempt(s): sending resumes",
                self._db_failures,
                extra={"event": "database.back", "node": self.node},
            )
        self._db_failures = 0

    async def run(
        self,
        stop: asyncio.Event,
        *,
        before_release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Tick every second until ``stop``; then stop cleanly (``shutdown``)."""
        try:
            if not await self.begin(stop):
                return
            while not stop.is_set():
                try:
                    await self.tick()
                except Exception as exc:
                    await self._failed(exc, stop)
                    continue
                self._recovered()
                await wait_event(self.clock, stop, self.tick_seconds)
        finally:
            await self.shutdown(before_release=before_release)

    async def run_until_idle(
        self, stop: asyncio.Event | None = None, *, settle_ticks: int = 2, shutdown: bool = True
    ) -> None:
        """Send everything due now (released batches, retries due), then stop (unless
        ``shutdown`` is False: the caller shuts down). Accounts that wait (paused by their
        breaker or the guard, held off by their provider, sent by another running engine) do
        not keep it going; ``stop`` ends it early."""
        stop = stop or asyncio.Event()
        quiet = 0
        try:
            if not await self.begin(stop):
                return
            while quiet < settle_ticks and not stop.is_set():
                before = self._confirmed
                try:
                    await self.tick()
                    await asyncio.sleep(0)
                    await self._senders_idle(stop)
                    busy = await self._busy()
                except Exception as exc:
                    await self._failed(exc, stop)
                    quiet = 0
                    continue
                self._recovered()
                quiet = 0 if busy else quiet + 1
                if busy and self._confirmed == before:
                    # waiting for something (another engine's leases, a token): not a spin
                    await wait_event(self.clock, stop, self.tick_seconds)
            if not stop.is_set():
                with contextlib.suppress(Exception):
                    await self.tick()  # record completions
        finally:
            if shutdown:
                await self.shutdown()

    async def _senders_idle(self, stop: asyncio.Event) -> None:
        """Wait until every sender is idle (or ``stop``)."""

        async def all_idle() -> None:
            for sender in list(self.senders.values()):
                await sender.idle.wait()

        waiter = asyncio.ensure_future(all_idle())
        stopper = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in (waiter, stopper):
                w.cancel()
            await asyncio.gather(waiter, stopper, return_exceptions=True)

    async def _busy(self) -> bool:
        """Is there work this engine can do now, or must it wait for another engine's leases?"""
        now = self.clock.now()
        alive = None
        for c in self.campaigns.values():
            if c.status != "sending" or c.account is None:
                continue
            sender = self.senders.get(c.account)
            if sender is None or sender.stalled(c.id, now):
                continue
            if not sender.can_send(now):
                if sender.leased_by is None:
                    continue  # paused, held off: not now
                alive = alive if alive is not None else await self.presence.proven_alive()
                if sender.leased_by in alive:
                    continue  # another running engine sends for this account
            batch = await self.store.run(
                self.store.campaigns.next_claimable, c.id, c.released_batches, now
            )
            if batch is not None:
                return True
        return bool(await self.presence.others_holding())

    async def shutdown(
        self, *, before_release: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Stop taking work; in-flight sends finish within the stop timeout and are confirmed;
        every lease this engine holds is released; it unregisters."""
        if self._shut:
            return
        self._shut = True
        self.stopping = True
        self.wake_senders()
        for sender in self.senders.values():
            sender.interrupt()
        started = self.clock.monotonic()
        flying = sum(s.in_flight for s in self.senders.values())
        if flying:
            log.info(
                "stopping: waiting up to %g s for %s message(s) in flight",
                self.stop_timeout.total_seconds(),
                flying,
                extra={"event": "engine.stopping", "node": self.node, "in_flight": flying},
            )
        tasks = [s.task for s in self.senders.values() if s.task is not None and not s.task.done()]
        if tasks:
            deadline = asyncio.ensure_future(
                wait_event(self.clock, self.abandon, self.stop_timeout.total_seconds())
            )
            try:
                await asyncio.wait({*tasks, deadline}, return_when=asyncio.FIRST_COMPLETED)
                while not deadline.done() and not all(t.done() for t in tasks):
                    await asyncio.wait({*tasks, deadline}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                deadline.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await deadline
            late = [t for t in tasks if not t.done()]
            if late:
                stuck = sum(s.in_flight for s in self.senders.values())
                log.warning(
                    "stopping: %s send(s) still running after %g s are abandoned; their "
                    "deliveries are released and retried",
                    stuck,
                    self.clock.monotonic() - started,
                    extra={"event": "engine.abandoned", "node": self.node, "in_flight": stuck},
                )
                self.abandon.set()
                for t in late:
                    t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        # each bucket as it is at the stop, for the next holder of its account (D10)
        buckets = {name: s.bucket.level() for name, s in self.senders.items()}
        self.senders.clear()
        if before_release is not None:
            await before_release()
        if self._beating is not None:
            self._beat_stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._beating
            self._beating = None
        if not self._started:
            return
        for attempt in range(4):
            try:
                deliveries, accounts, mailboxes = await self.presence.close(buckets)
            except Exception as exc:
                if not is_transient(exc) or attempt == 3 or self.abandon.is_set():
                    log.warning(
                        "engine %s stopped without releasing its leases (%s): another engine "
                        "rescues its work after %g s",
                        self.node,
                        describe(exc),
                        self.lease.total_seconds(),
                        extra={"event": "engine.stopped", "node": self.node},
                    )
                    break
                await wait_event(self.clock, self.abandon, backoff(attempt))
                continue
            log.info(
                "engine %s stopped: released %s claimed deliveries, %s account lease(s), "
                "%s mailbox lease(s)",
                self.node,
                deliveries,
                accounts,
                mailboxes,
                extra={
                    "event": "engine.stopped",
                    "node": self.node,
                    "released": deliveries,
                },
            )
            break
        self._started = False

    def problems_now(self) -> dict[str, Trouble]:
        """The accounts that failed for a systemic reason while this engine ran."""
        return dict(self.trouble)


#: a chunk claimed: its deliveries, their addresses normalised and the suppressed ones (D4)
ChunkClaim = tuple[list[Claimed], tuple[list[Checked], set[str]]]


def _fields(x: Claimed, address: str | None = None, kind: str = "email") -> dict[str, Any]:
    """What every outcome of ``x`` says: the delivery, its contact, the address (``address``,
    normalised, else as claimed) and its kind (a release uses neither)."""
    return {
        "delivery_id": x.id,
        "contact_id": x.contact_id,
        "address": address or x.address,
        "address_kind": kind,
    }


class AccountSender:
    """Sends for one account, one campaign at a time, within its rate (D10, D11)."""

    def __init__(self, dispatcher: Dispatcher, settings: AccountSettings) -> None:
        self.d = dispatcher
        self.settings = settings
        self.name = settings.name
        self.context = ChannelContext(dispatcher.config, dispatcher.clock, dispatcher.signer)
        self.bucket = TokenBucket(settings.rate, settings.burst, dispatcher.clock)
        self.breaker = Breaker(
            settings.breaker_failures, settings.breaker_pause, settings.breaker_max_pause
        )
        self.task: asyncio.Task[None] | None = None
        self.channel: Channel | None = None
        self.prepared: dict[int, Any] = {}
        self.links_recorded: set[int] = set()
        self.current: int | None = None
        self.current_batch = 0
        self.since_pick = 0
        self.idle = asyncio.Event()
        self.wake = asyncio.Event()
        #: messages being sent right now
        self.in_flight = 0
        #: the engine holding this account's lease when it is not this one
        self.leased_by: str | None = None
        #: campaigns picked without anything to send: (misses, not before)
        self.stalls: dict[int, tuple[int, datetime]] = {}
        self.minute = Minute()
        #: chunks whose sends may still run and whose outcomes are not stored yet, oldest
        #: first: at most two (the next chunk is claimed while the last one's sends finish;
        #: one older than that is confirmed before it is claimed: README "Crash safety")
        self._chunks: list[asyncio.Task[None]] = []
        #: the chunks whose every send has started (what is left of them: finishing the
        #: sends and storing the outcomes)
        self._dispatched: set[asyncio.Task[None]] = set()
        #: the account's connections in use, shared by its chunks (the channel's concurrency)
        self._slots: asyncio.Semaphore | None = None
        self._nap: asyncio.Future[None] | None = None
        self._lease_until: datetime | None = None
        self._retired = False
        self._crashes = 0
        self._restart_at: datetime | None = None
        self._last_crash: str | None = None
        self._db_failures = 0
        #: it holds the lease and has work (or is about to look for some): it counts in
        #: this engine's share of the accounts
        self.working = False

    # -- the task ------------------------------------------------------------------------

    def ensure_running(self) -> None:
        if self._retired or (self.task is not None and not self.task.done()):
            return
        now = self.d.clock.now()
        if self.task is not None and not self.task.cancelled():
            error = self.task.exception()
            if error is not None:
                if self._restart_at is None:
                    self._crashes += 1
                    wait = min(2.0 ** (self._crashes - 1), MAX_STALL)
                    self._restart_at = now + timedelta(seconds=wait)
                    if repr(error) != self._last_crash:
                        log.error(
                            "sender for %s stopped: %r; restarting in %g s",
                            self.name,
                            error,
                            wait,
                            exc_info=error,
                            extra={"event": "account.crashed", "account": self.name},
                        )
                    self._last_crash = repr(error)
                if now < self._restart_at:
                    return
        self._restart_at = None
        self.idle.clear()
        self.task = asyncio.create_task(self._run(), name=f"sender:{self.name}")

    def poke(self) -> None:
        """Wake the sender to look for work (it says it is idle again if it finds none)."""
        if self.task is not None and not self.task.done():
            self.idle.clear()
        self.wake.set()

    def retire(self) -> None:
        """Stop after the current chunk (its account changed or went away)."""
        self._retired = True
        self.poke()

    async def stop(self) -> None:
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    @property
    def running(self) -> bool:
        return not (self.d.stopping or self._retired)

    @property
    def _confirming(self) -> asyncio.Task[None] | None:
        """A chunk whose sends all started, still finishing them or storing their outcomes
        (None when there is none); a chunk still starting sends (waiting for a token) is the
        sender's own work, as it was before chunks overlapped."""
        for chunk in reversed(self._chunks):
            if chunk in self._dispatched and not chunk.done():
                return chunk
        return None

    async def _drain(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` chunks are still sending or confirming (their errors
        are raised here, as if the chunk had run in the sender itself)."""
        while len(self._chunks) > keep:
            chunk = self._chunks[0]
            try:
                await chunk  # a cancelled sender (an abandoned stop) cuts the chunk short
            finally:
                if chunk.done():
                    self._chunks.remove(chunk)
                    self._dispatched.discard(chunk)

    async def _rest(self, seconds: float | None) -> None:
        """Idle until woken (a tick, a stop) or ``seconds`` pass; what is in flight is sent
        and confirmed first."""
        await self._drain()
        self.idle.set()
        if seconds is None:
            await self.wake.wait()
        else:
            await wait_event(self.d.clock, self.wake, seconds)
        self.wake.clear()

    def can_send(self, now: datetime) -> bool:
        """Would this sender send now (it holds the lease, is not paused or held off)?"""
        if self.leased_by is not None:
            return False
        if not self.breaker.closed and not self.breaker.probe_due(now):
            return False
        return self.bucket.holding() <= HELD

    def stalled(self, campaign_id: int, now: datetime) -> bool:
        found = self.stalls.get(campaign_id)
        return found is not None and now < found[1]

    def _stall(self, campaign_id: int, why: str) -> None:
        misses, _ = self.stalls.get(campaign_id, (0, self.d.clock.now()))
        misses += 1
        wait = min(2.0 ** (misses - 1), MAX_STALL)
        self.stalls[campaign_id] = (misses, self.d.clock.now() + timedelta(seconds=wait))
        if misses in (3, 10):
            log.info(
                "account %s: campaign %s was picked %s times without progress (%s); next "
                "look in %g s",
                self.name,
                campaign_id,
                misses,
                why,
                wait,
                extra={
                    "event": "campaign.backoff",
                    "account": self.name,
                    "campaign_id": campaign_id,
                },
            )
        if self.current == campaign_id:
            self.current = None

    def _chunk(self) -> int:
        """How many deliveries to claim at once: a quarter of the lease's worth at the rate,
        at most four per connection (or 200). It bounds the duplicates after a crash (what
        was sent but not confirmed: two chunks, README "Crash safety"), so it stays small."""
        by_rate = int(self.settings.rate * self.d.lease.total_seconds() / 4)
        concurrency = self.channel.concurrency if self.channel else 8
        return max(1, min(200, concurrency * 4, by_rate))

    async def _lease(self) -> bool:
        if self.d.workers == 1 and self.d.nodes == 1:
            return await self._lease_now()
        async with self.d.leasing:  # the share is checked and taken by one sender at a time
            return await self._lease_now()

    async def _lease_now(self) -> bool:
        now = self.d.clock.now()
        if self._lease_until is not None and self.leased_by is None:
            held = self.d.leased_here()
            if self.name in held[self.d.share() :]:
                # more engines run now: hand this account over (between two chunks), with
                # its bucket, which the next holder continues (D10)
                await self.d.store.run(
                    self.d.store.accounts.unlease,
                    self.name,
                    self.d.node,
                    tokens=self.bucket.level(),
                )
                self._lease_until = None
                log.info(
                    "account %s: handed over to another engine node (this one sends %s of "
                    "the %s accounts)",
                    self.name,
                    self.d.share(),
                    len(self.d.senders),
                    extra={"event": "account.handed_over", "account": self.name},
                )
                return False
        elif len(set(self.d.leased_here()) - {self.name}) >= self.d.share():
            return False  # this engine has its share of the accounts: others take the rest
        if self._lease_until is not None and now < self._lease_until - self.d.lease / 2:
            return True
        seen = self.d.states.get(self.name)  # as this tick read it
        if (
            self.leased_by is not None
            and seen is not None
            and seen.lease_owner == self.leased_by
            and seen.lease_until is not None
            and seen.lease_until > now
        ):
            return False  # still another node's: no write to find it out again each tick
        ok = await self.d.store.run(
            self.d.store.accounts.lease, self.name, self.d.node, self.d.lease
        )
        if not ok:
            self._lease_until = None
            state = await self.d.store.run(self.d.store.accounts.states)
            holder = state.get(self.name)
            owner = holder.lease_owner if holder is not None else None
            if owner != self.leased_by and owner is not None:
                until = holder.lease_until if holder is not None else None
                log.info(
                    "account %s is sent by engine %s%s: this engine waits for it",
                    self.name,
                    owner,
                    f" (its lease runs until {_clock_time(until, self.d.config)} unless it "
                    "renews it)"
                    if until
                    else "",
                    extra={"event": "account.elsewhere", "account": self.name, "owner": owner},
                )
            self.leased_by = owner or "?"
            return False
        if self._lease_until is None or self.leased_by is not None:
            # the lease is (again) ours: take the breaker's state as the store has it
            mine = (await self.d.store.run(self.d.store.accounts.states)).get(self.name)
            if mine is not None and mine.bucket_at is not None:  # and its bucket (D10)
                self.bucket.adopt(mine.bucket_tokens or 0.0, (now - mine.bucket_at).total_seconds())
            if mine is not None:
                self.breaker.adopt(
                    mine.breaker_state,
                    (mine.breaker_reason or "").removeprefix("channel failing: ") or None,
                    mine.breaker_retry_at,
                    timedelta(seconds=mine.breaker_pause_s) if mine.breaker_pause_s else None,
                    mine.breaker_opened_at,
                    mine.breaker_failures,
                )
        if self._lease_until is None:
            self.working = True  # until a look finds nothing to send
        self.leased_by = None
        self._lease_until = now + self.d.lease
        return True

    async def _run(self) -> None:
        try:
            while self.running:
                try:
                    await self._step()
                    if self._db_failures:
                        log.warning(
                            "account %s: the database answers again; sending resumes",
                            self.name,
                            extra={"event": "database.back", "account": self.name},
                        )
                    self._db_failures = 0
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    if self._db_failures == 0:
                        log.warning(
                            "account %s: the database is unavailable (%s); sending waits",
                            self.name,
                            describe(exc),
                            extra={"event": "database.unavailable", "account": self.name},
                        )
                    self._db_failures += 1
                    self._lease_until = None
                    await self._rest(backoff(self._db_failures - 1))
        finally:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                for chunk in self._chunks:  # abandoned: the chunks' sends are cut short
                    chunk.cancel()
            try:  # a stop: the chunks' sends finish and their outcomes are stored
                await asyncio.gather(*self._chunks, return_exceptions=True)
            finally:
                self._chunks.clear()
                self._dispatched.clear()
                self._slots = None
            if self.channel is not None:
                with contextlib.suppress(Exception):
                    await self.channel.close()
                self.channel = None
            self.idle.set()

    async def _open(self) -> bool:
        """Open the channel (a pool, a client); a channel that cannot start pauses the
        account (its breaker) and is tried again at the probe."""
        if self.channel is not None:
            return True
        cls = self.d.plugins.channels()[self.settings.channel]
        channel: Channel = cls(self.settings, self.context)
        try:
            await channel.open()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await channel.close()
            log.exception("account %s: the %s channel could not start", self.name, cls.name)
            await self._record(
                self.breaker.failed(
                    f"the channel could not start: {exc!r}", self.d.clock.now(), force=True
                )
            )
            return False
        self.channel = channel
        self._slots = asyncio.Semaphore(channel.concurrency)
        self._crashes = 0
        return True

    async def _step(self) -> None:
        now = self.d.clock.now()
        if not await self._lease():
            await self._rest(5)  # another engine sends for this account
            return
        probe = False
        if not self.breaker.closed:
            if not self.breaker.probe_due(now):
                assert self.breaker.retry_at is not None
                await self._rest((self.breaker.retry_at - now).total_seconds())
                return
            probe = True
        held = self.bucket.holding()
        if held > HELD:  # a provider asked the account to wait (Retry, scope account)
            await self._rest(held)
            return
        if probe and self.channel is None:
            self.breaker.probing = True  # starting the channel is the probe
        if not await self._open():
            return
        campaign, claim = await self._pick(probe=probe)
        self.working = campaign is not None
        if campaign is None:
            await self._rest(None)  # every tick wakes senders: no polling here
            return
        self.idle.clear()
        await self._send_chunk(campaign, probe=probe, claim=claim)

    async def _pick(self, *, probe: bool = False) -> tuple[Campaign | None, ChunkClaim | None]:
        """D11: keep the current campaign within its batch; at a boundary (or without work)
        take the highest-priority, then oldest, campaign with work ready now. A probe (the
        breaker is half-open) takes a campaign held only by the account's breaker.

        With the chunk that follows, kept in the current campaign, the claim it would make
        next (``_send_chunk``: nothing is awaited between the two) is made in the same trip to
        the store's thread, right after the check of the batch; else the claim is None."""
        d = self.d
        now = d.clock.now()

        def ready(c: Campaign) -> bool:
            if c.account != self.name or self.stalled(c.id, now):
                return False
            if c.status == "sending":
                return True
            return probe and c.status == "held" and d.held_for.get(c.id) == "breaker"

        candidates = sorted(
            (c for c in d.campaigns.values() if ready(c)),
            key=lambda c: (-c.priority, c.created_at, c.id),
        )
        current = d.campaigns.get(self.current) if self.current is not None else None
        if current is not None and ready(current):
            soft = current.pacing is None and self.since_pick >= SOFT_BATCH
            claim = self._claimer(current) if self._claims_at_once(current, probe) else None
            keep = self.current_batch

            def check() -> tuple[int | None, Any]:
                assert current is not None
                batch = d.store.campaigns.next_claimable(current.id, current.released_batches, now)
                if claim is not None and not soft and batch is not None and batch == keep:
                    return batch, claim()
                return batch, None

            batch, claimed = await d.store.run(check)
            if batch is not None and batch == self.current_batch and not soft:
                return current, claimed
        for c in candidates:
            batch = await d.store.run(
                d.store.campaigns.next_claimable, c.id, c.released_batches, now
            )
            if batch is not None:
                if c.id != self.current:
                    log.info(
                        "account %s now sends campaign %s (priority %s)",
                        self.name,
                        c.id,
                        c.priority,
                        extra={
                            "event": "account.campaign",
                            "account": self.name,
                            "campaign_id": c.id,
                        },
                    )
                self.current, self.current_batch, self.since_pick = c.id, batch, 0
                return c, None
        self.current = None
        return None, None

    def _claims_at_once(self, c: Campaign, probe: bool) -> bool:
        """Would ``_send_chunk`` claim for ``c`` right away, without awaiting anything first
        (prepared, its links registered, the heartbeat on time, not alone)?"""
        return (
            not probe
            and self.breaker.closed
            and c.id in self.prepared
            and c.id in self.links_recorded
            and self.channel is not None
            and self.d.presence.lease_ok()
        )

    def _claimer(self, c: Campaign, *, probe: bool = False) -> Callable[[], ChunkClaim]:
        """The claim of a chunk of ``c`` as one call on the store's thread."""
        d = self.d
        channel = self.channel
        assert channel is not None
        kind = c.address_kind
        limit = 1 if probe else self._chunk()

        def claim() -> ChunkClaim:
            """The claim, its addresses normalised and which are suppressed (D4): one trip
            to the store's thread."""
            claimed = d.store.claims.claim(
                c.id, owner=d.node, released=c.released_batches, limit=limit, lease=d.lease
            )
            checked = [channel.normalise(x.address) for x in claimed]
            keys = [suppression_key(kind, n.value) for n in checked if n.value]
            return claimed, (checked, d.store.claims.suppressed(kind, keys))

        return claim

    def _prepare(self, c: Campaign) -> Any:
        assert self.channel is not None
        if c.id not in self.prepared:
            self.prepared[c.id] = self.channel.prepare(c)
        return self.prepared[c.id]

    async def _send_chunk(
        self,
        c: Campaign,
        *,
        probe: bool = False,
        claim: ChunkClaim | None = None,
    ) -> None:
        """Claim a chunk of ``c`` (unless ``_pick`` claimed it: ``claim``) and start its sends."""
        d = self.d
        if claim is not None:
            prepared = self.prepared.get(c.id)
            if prepared is not None and self._claims_at_once(c, probe):
                await self._sending(c, *claim, prepared=prepared, probe=probe)
            elif claim[0]:  # changed during the trip (the breaker opened): claimed for nothing
                await self._confirm(c, [Outcome(kind="release", **_fields(x)) for x in claim[0]])
            return
        try:
            prepared = self._prepare(c)
        except Exception as exc:
            if isinstance(exc, CampaignProblem):
                d.problems[c.id] = str(exc)
            else:
                log.exception("the %s channel failed to prepare campaign %s", c.channel, c.id)
                d.problems[c.id] = f"the {c.channel} channel cannot prepare the campaign: {exc!r}"
            d.checked.add(c.id)
            self._stall(c.id, d.problems[c.id])  # the next tick holds it, with the reason
            return
        if c.id not in self.links_recorded:
            assert self.channel is not None
            urls = list(self.channel.tracked_links(prepared))
            if urls:  # before the first send: a click must always find its link
                await d.store.run(d.store.feedback.register_links, c.id, urls)
            self.links_recorded.add(c.id)
        if not d.presence.lease_ok():
            await self._rest(1)  # the heartbeat is late (the database): claim nothing now
            return
        # a probe goes alone: what is in flight is confirmed before it is claimed
        alone = probe or not self.breaker.closed
        if alone:
            await self._drain(0)
        claimed, checks = await d.store.run(self._claimer(c, probe=probe))
        await self._sending(c, claimed, checks, prepared=prepared, probe=probe, alone=alone)

    async def _sending(
        self,
        c: Campaign,
        claimed: list[Claimed],
        checks: tuple[list[Checked], set[str]],
        *,
        prepared: Any,
        probe: bool,
        alone: bool = False,
    ) -> None:
        """The chunk just claimed: its sends started in a task of their own once the chunk
        before the last is confirmed (at most two chunks in flight)."""
        d = self.d
        if not claimed:
            self._stall(c.id, "nothing could be claimed")
            return
        d.presence.in_flight.update(x.id for x in claimed)  # renewed by each heartbeat
        if not alone:
            # at most two chunks with sends not confirmed (README "Crash safety"): the one
            # whose last sends are finishing, and this one. The claim above ran while the
            # chunk before those was confirmed (a claim sends nothing: claimed deliveries
            # that were never started go back to pending); this chunk starts sending only now
            try:
                await self._drain(1)
            except BaseException:
                await self._confirm(c, [Outcome(kind="release", **_fields(x)) for x in claimed])
                raise
        self.stalls.pop(c.id, None)
        if probe:
            self.breaker.probing = True
            log.info(
                "account %s: probing the channel with one delivery (paused since %s: %s)",
                self.name,
                _clock_time(self.breaker.opened_at, d.config) if self.breaker.opened_at else "?",
                self.breaker.last_error,
                extra={"event": "account.probe", "account": self.name},
            )
        dispatched: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        chunk = asyncio.create_task(
            self._chunk_task(c, prepared, claimed, checks, dispatched, probe=probe),
            name=f"chunk:{self.name}:{c.id}",
        )
        self._chunks.append(chunk)
        if probe:
            await self._drain()
            return
        # the next chunk is picked and claimed while this one's last sends finish
        await asyncio.wait({dispatched, chunk}, return_when=asyncio.FIRST_COMPLETED)
        if chunk.done():
            await self._drain()  # its error, if any, is the sender's

    def _started_all(self, dispatched: asyncio.Future[None]) -> None:
        """The running chunk has started every send it will (the sender may claim the next)."""
        if not dispatched.done():
            dispatched.set_result(None)
        task = asyncio.current_task()
        if task is not None:
            self._dispatched.add(task)

    async def _chunk_task(
        self,
        c: Campaign,
        prepared: Any,
        claimed: list[Claimed],
        checks: tuple[list[Checked], set[str]],
        dispatched: asyncio.Future[None],
        *,
        probe: bool,
    ) -> None:
        """One chunk's sends, then its outcomes stored; ``dispatched`` is set once every send
        of it has started (or was decided without sending)."""
        d = self.d
        outcomes: list[Outcome | None] = [None] * len(claimed)
        changes: list[Change] = []
        try:
            await self._process(
                c, prepared, claimed, checks, outcomes, changes, dispatched, probe=probe
            )
        finally:
            self._started_all(dispatched)
            done = [o for o in outcomes if o is not None]
            # what never got an outcome (a stop cut the chunk short) is released at shutdown
            d.presence.in_flight.difference_update(
                x.id for x, o in zip(claimed, outcomes, strict=True) if o is None
            )
            await self._confirm(c, done)
            for change in changes:
                await self._record(change)

    async def _record(self, change: Change | None) -> None:
        """Persist and tell a change of the breaker (opened, a failed probe, closed)."""
        if change is None:
            return
        d = self.d
        b = self.breaker
        now = d.clock.now()
        if change == "closed":
            paused = (now - b.opened_at).total_seconds() if b.opened_at else 0
            log.warning(
                "account %s resumes: a probe worked (it was paused for %.0f s: %s)",
                self.name,
                paused,
                b.last_error,
                extra={"event": "account.resumed", "account": self.name, "by": "breaker"},
            )
            await self._store_retrying(
                d.store.accounts.close_breaker,
                self.name,
                detail={"paused_s": round(paused), "last_error": b.last_error},
            )
            d.trouble.pop(self.name, None)
            return
        assert b.retry_at is not None and b.pause is not None
        reason = f"channel failing: {b.last_error}"
        if change == "opened":
            log.warning(
                "account %s paused: %s (%s consecutive failures); one delivery probes the "
                "channel at %s",
                self.name,
                reason,
                b.opened_after,
                _clock_time(b.retry_at, d.config),
                extra={
                    "event": "account.paused",
                    "account": self.name,
                    "by": "breaker",
                    "reason": reason,
                    "retry_at": b.retry_at.isoformat(),
                },
            )
        else:
            log.warning(
                "account %s: the probe failed (%s); next probe at %s (in %g s)",
                self.name,
                b.last_error,
                _clock_time(b.retry_at, d.config),
                b.pause.total_seconds(),
                extra={
                    "event": "account.probe_failed",
                    "account": self.name,
                    "reason": reason,
                    "retry_at": b.retry_at.isoformat(),
                },
            )
        await self._store_retrying(
            d.store.accounts.open_breaker,
            self.name,
            reason=reason,
            failures=b.failures,
            retry_at=b.retry_at,
            pause=b.pause,
            audit=change == "opened",
        )
        d.wake_senders()

    async def _store_retrying(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """A write that must happen (a confirmation, the breaker): retried while the database
        is unavailable, until the stop timeout gives up on it."""
        d = self.d
        attempt = 0
        while True:
            try:
                await d.store.run(fn, *args, **kwargs)
                if attempt:
                    log.warning(
                        "account %s: the database answers again; recorded after %s attempt(s)",
                        self.name,
                        attempt + 1,
                        extra={"event": "database.back", "account": self.name},
                    )
                return
            except Exception as exc:
                if not is_transient(exc) or d.abandon.is_set():
                    raise
                if attempt == 0:
                    log.warning(
                        "account %s: cannot record what was sent, the database is unavailable "
                        "(%s); trying again",
                        self.name,
                        describe(exc),
                        extra={"event": "database.unavailable", "account": self.name},
                    )
                await wait_event(d.clock, d.abandon, backoff(attempt))
                attempt += 1

    async def _confirm(self, c: Campaign, outcomes: list[Outcome]) -> None:
        d = self.d
        if not outcomes:
            return
        try:
            await self._store_retrying(
                d.store.claims.confirm, c.id, d.node, outcomes, account=self.name
            )
        except Exception as exc:
            d.presence.in_flight.difference_update(o.delivery_id for o in outcomes)
            log.error(
                "account %s: %s outcome(s) of campaign %s could not be recorded (%s): those "
                "deliveries go back to pending and may be sent again",
                self.name,
                len(outcomes),
                c.id,
                describe(exc),
                extra={"event": "confirm.lost", "account": self.name, "campaign_id": c.id},
            )
            return
        d.presence.in_flight.difference_update(o.delivery_id for o in outcomes)
        d._confirmed += len(outcomes)
        self.minute.add(c.id, outcomes)
        if d.metrics is not None:
            counted = Counter(o.kind for o in outcomes if o.kind != "release")
            for kind, n in counted.items():
                d.metrics.messages.labels(self.name, c.channel, kind).inc(n)
        if d.plugins.observes_deliveries:
            now = d.clock.now()
            for o in outcomes:
                if o.kind != "release":
                    await d.plugins.delivery_event(
                        DeliveryEvent(
                            o.kind,
                            now,
                            c.id,
                            o.delivery_id,
                            c.channel,
                            o.address,
                            {
                                k: v
                                for k, v in (
                                    ("reason", o.error),
                                    ("provider_id", o.provider_id),
                                    ("message_id", o.message_id),
                                )
                                if v
                            },
                        )
                    )

    async def _take(self) -> bool:
        """A token from the bucket, waiting for it at the rate (D10), unless the account is
        held off for more than ``HELD`` seconds or the engine stops (a stop cuts the wait)."""
        while True:
            if self.bucket.holding() > HELD or self.d.stopping:
                return False
            wait = self.bucket.try_take()
            if wait == 0:
                return True
            nap = asyncio.ensure_future(self.d.clock.sleep(wait))
            self._nap = nap
            try:
                await nap
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not nap.cancelled() or (task is not None and task.cancelling()):
                    raise  # the sender itself is cancelled
            finally:
                self._nap = None

    def interrupt(self) -> None:
        """A stop: cut a wait for a token short (the claims are given back)."""
        if self._nap is not None:
            self._nap.cancel()

    def _may_start(self, c: Campaign, probe: bool) -> bool:
        """May one more message of this chunk start now?"""
        d = self.d
        if d.stopping or not d.presence.lease_ok():
            return False
        state = d.campaigns.get(c.id)
        if state is None:
            return False
        if probe:
            return self.breaker.probing and state.status in ("sending", "held")
        return state.status == "sending" and self.breaker.closed

    async def _process(
        self,
        c: Campaign,
        prepared: Any,
        claimed: list[Claimed],
        checks: tuple[list[Checked], set[str]],
        outcomes: list[Outcome | None],
        changes: list[Change],
        dispatched: asyncio.Future[None],
        *,
        probe: bool = False,
    ) -> None:
        """Checks at send time (D4, D8), then sends within the bucket and concurrency; the
        outcomes land in ``outcomes`` as they come (a stop may cut the chunk short).
        ``dispatched`` is set once the last send has started."""
        d = self.d
        channel = self.channel
        assert channel is not None
        kind = c.address_kind
        checked, suppressed = checks
        now = d.clock.now()
        since = (
            now - timedelta(hours=c.exclude_recent_hours)
            if c.exclude_recent_hours is not None
            else None
        )
        if self._slots is None:
            self._slots = asyncio.Semaphore(channel.concurrency)
        slots = self._slots
        bucket = self.bucket
        tasks: list[asyncio.Task[None]] = []

        def base(x: Claimed, address: str | None) -> dict[str, Any]:
            return _fields(x, address, kind)

        async def send_one(i: int, x: Claimed, address: str) -> None:
            self.in_flight += 1
            try:
                delivery = DeliveryInfo(
                    id=x.id,
                    campaign_id=c.id,
                    address=address,
                    variables=variables(
                        name=x.name,
                        email=x.email,
                        phone=x.phone,
                        external_key=x.external_key,
                        fields=x.fields,
                    ),
                    message=(x.payload or {}).get("message"),
                    normalised=True,
                )
                try:
                    result: SendResult = await channel.send(prepared, delivery)
                except Exception as exc:  # a broken channel: systemic, the delivery is retried
                    # the first of a run of failures with its traceback; the breaker and the
                    # minute's summary tell the rest
                    log.log(
                        logging.ERROR if self.breaker.failures == 0 else logging.DEBUG,
                        "channel %s failed on delivery %s",
                        c.channel,
                        x.id,
                        exc_info=True,
                        extra={"event": "channel.raised", "account": self.name},
                    )
                    result = Retry(f"the channel raised {exc!r}", scope="account")
                outcomes[i] = self._outcome(c, x, result, address, kind)
                if isinstance(result, Retry) and result.scope == "account":
                    trouble = d.trouble.setdefault(self.name, Trouble(self.name, result.reason))
                    trouble.error, trouble.failures = result.reason, trouble.failures + 1
                    change = self.breaker.failed(result.reason, d.clock.now())
                else:
                    change = self.breaker.worked()
                if change is not None:
                    changes.append(change)
            finally:
                self.in_flight -= 1
                slots.release()

        if self._may_start(c, probe):
            # connections first, then tokens: a token taken while a connection opens would
            # start its message late, bunched with the next second's (D10 at the provider)
            with contextlib.suppress(Exception):
                await channel.ready(min(len(claimed), channel.concurrency))
        try:
            for i, x in enumerate(claimed):
                n = checked[i]
                if not self._may_start(c, probe):
                    outcomes[i] = Outcome(kind="release", **base(x, None))
                    continue
                if n.value is None:
                    outcomes[i] = Outcome(
                        kind="failed",
                        error=f"the address cannot be used: {n.error}",
                        **base(x, None),
                    )
                    continue
                if suppression_key(kind, n.value) in suppressed:
                    outcomes[i] = Outcome(
                        kind="suppressed",
                        error="the address is suppressed (D4)",
                        **base(x, n.value),
                    )
                    continue
                if since is not None and x.last_interaction_at and x.last_interaction_at >= since:
                    outcomes[i] = Outcome(
                        kind="skipped",
                        error=f"interaction in the last {c.exclude_recent_hours} h (_x, D4)",
                        **base(x, n.value),
                    )
                    continue
                await slots.acquire()
                # a token at once (the usual case), else wait for it in ``_take``
                if (
                    bucket.holding() > HELD or d.stopping or bucket.try_take() != 0
                ) and not await self._take():
                    # the account holds off (a provider's Retry-After): give the claims back
                    slots.release()
                    outcomes[i] = Outcome(kind="release", **base(x, None))
                    continue
                # D8: never at or after the deadline
                if c.deadline is not None and d.clock.now() >= c.deadline:
                    slots.release()
                    outcomes[i] = Outcome(
                        kind="expired", error="the deadline passed (D8)", **base(x, n.value)
                    )
                    continue
                if not self._may_start(c, probe):
                    slots.release()
                    outcomes[i] = Outcome(kind="release", **base(x, None))
                    continue
                tasks.append(asyncio.create_task(send_one(i, x, n.value)))
            self.since_pick += len(claimed)
            self._started_all(dispatched)
            if tasks:
                await asyncio.gather(*tasks)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    def _outcome(
        self, c: Campaign, x: Claimed, result: SendResult, address: str | None, kind: str
    ) -> Outcome:
        """What ``result`` of sending ``x`` to ``address`` (of ``kind``) means for it."""
        d = self.d
        if isinstance(result, Sent):  # the usual case: by position, without _fields' dict
            return Outcome(
                x.id,
                "sent",
                x.contact_id,
                address or x.address,
                result.provider_id,
                result.message_id,
                address_kind=kind,
            )
        base = _fields(x, address, kind)
        if isinstance(result, Failed):
            if result.bounce:
                return Outcome(kind="bounced", error=result.reason, suppress="bounce", **base)
            return Outcome(kind="failed", error=result.reason, suppress=result.suppress, **base)
        assert isinstance(result, Retry)
        now = d.clock.now()
        if result.scope == "account":  # the provider, not this recipient: the account waits
            self.bucket.hold_off(min(result.retry_after or FIRST_RETRY.total_seconds(), 3600))
        delay = retry_delay(x.attempts + 1, d.rng)
        if result.retry_after:
            delay = max(delay, timedelta(seconds=result.retry_after))
        first = x.first_attempt_at or now
        at = now + delay
        scope = result.scope
        if c.deadline is not None and at >= c.deadline:
            return Outcome(
                kind="failed",
                error=f"gave up at the deadline: {result.reason}",
                cause=f"gave up at the deadline: {result.reason}",
                scope=scope,
                **base,
            )
        if at > first + GIVE_UP:
            return Outcome(
                kind="failed",
                error=f"gave up after 48 h ({x.attempts + 1} attempts): {result.reason}",
                cause=f"gave up after 48 h: {result.reason}",
                scope=scope,
                **base,
            )
        return Outcome(kind="retry", error=result.reason, next_attempt_at=at, scope=scope, **base)

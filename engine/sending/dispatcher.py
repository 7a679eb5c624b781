"""Dispatch (D1–D13): campaigns start at their time, batches are released by the pacing math,
deliveries are claimed with a lease, sent within each account's token bucket, confirmed;
temporary failures back off; the deadline expires what is left.

One ``tick`` a second moves campaigns through their states and applies operator commands.
Each sender account has one ``AccountSender`` task: it sends one campaign at a time, picked by
priority then age, and re-picks at each batch boundary (D11), so a higher-priority campaign
takes the account over there. Several engine nodes may run: claims never overlap (D12), and an
account is leased to one node at a time, so its rate limit holds across nodes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from engine.addresses import suppression_key
from engine.campaign import Campaign
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
from engine.sending.bucket import TokenBucket
from engine.store import Store
from engine.store.claims import Claimed, Outcome
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


def node_name() -> str:
    """This engine process, for leases: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def retry_delay(attempt: int, rng: random.Random) -> timedelta:
    """D13: the first retry after a minute, doubling, capped at an hour, with jitter."""
    base: timedelta = min(FIRST_RETRY * (2 ** min(max(0, attempt - 1), 10)), MAX_RETRY)
    jittered: timedelta = base * rng.uniform(1.0, 1.2)
    return jittered


@dataclass
class Prepared:
    campaign_id: int
    value: Any


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
        lease: timedelta = timedelta(minutes=5),
        tick_seconds: float = 1.0,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.plugins = plugins
        self.config = config
        self.clock = clock
        self.node = node or node_name()
        self.signer = signer
        self.lease = lease
        self.tick_seconds = tick_seconds
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self.campaigns: dict[int, Campaign] = {}
        #: why a campaign cannot be sent as configured (CampaignProblem), by campaign id
        self.problems: dict[int, str] = {}
        self.senders: dict[str, AccountSender] = {}
        self.stopping = False
        self._ticks = 0
        self.until_idle = False
        self._started = False

    # -- the tick ----------------------------------------------------------------------------

    async def tick(self) -> None:
        """Apply commands, move every open campaign along (D1, D2, D5, D8), start senders."""
        from engine.actions import apply_pending

        if not self._started:
            await self.start()
        now = self.clock.now()
        await apply_pending(self.store, self.plugins, on_change=self._changed)
        if self._ticks % 10 == 0 or self.until_idle:
            rescued = await self.store.run(self.store.claims.rescue_leases)
            if rescued:
                log.warning(
                    "%s deliveries had lost their lease (an engine stopped): retried", rescued
                )
        self._ticks += 1
        states = await self.store.run(self.store.accounts.states)
        for campaign in await self.store.run(self.store.campaigns.open):
            await self._advance(campaign, now, states)
        self.campaigns = {c.id: c for c in await self.store.run(self.store.campaigns.open)}
        for name in {
            c.account for c in self.campaigns.values() if c.status == "sending" and c.account
        }:
            if name not in self.senders and name in self.config.accounts and not self.stopping:
                self.senders[name] = AccountSender(self, self.config.accounts[name])
        for sender in self.senders.values():
            sender.ensure_running()
        self.wake_senders()

    def wake_senders(self) -> None:
        """Tell every sender to look for work again (after a tick, a release, a problem)."""
        for sender in self.senders.values():
            sender.wake.set()

    async def _changed(
        self,
        campaign_id: int,
        status: str | None,
        previous: str | None,
        actor: str,
        kind: str = "status",
        detail: dict[str, Any] | None = None,
    ) -> None:
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
            log.info(
                "campaign %s: %s -> %s%s", c.id, previous, status, f" ({reason})" if reason else ""
            )
            await self._changed(c.id, status, previous, actor)

    async def _reload(self, c: Campaign) -> Campaign:
        fresh = await self.store.run(self.store.campaigns.get, c.id)
        return fresh or c

    async def _advance(self, c: Campaign, now: datetime, states: dict[str, Any]) -> None:
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
        reason = None
        if account is None:
            account, reason = resolve_account(self.config, c.channel, c.wallet, c.content.sender)
            if account is not None:
                await self.store.run(d.set_fields, c.id, account=account)
                c = await self._reload(c)
        if account is not None and account not in self.config.accounts:
            reason = f"the account `{account}` is no longer in the configuration"
        elif account is not None:
            state = states.get(account)
            if state is not None and state.guard_state == "paused" and not state.override_by:
                until = (
                    state.paused_until.astimezone(self.config.tz).strftime("%d/%m %H:%M")
                    if state.paused_until
                    else "?"
                )
                reason = (
                    f"account {account} is paused by the guard until {until}: "
                    f"{state.pause_reason or ''}"
                ).strip()
        if reason is None and c.id in self.problems:
            reason = self.problems[c.id]
        if reason is not None:
            if c.status != "held" or c.status_reason != reason:
                await self._status(c, "held", "engine", reason)
            return
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

    # -- running -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Make sure every configured account has its state row (leases, guard)."""
        self._started = True
        await self.store.run(
            self.store.accounts.sync,
            {name: a.channel for name, a in self.config.accounts.items()},
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every second until ``stop``; then stop cleanly."""
        await self.start()
        try:
            while not stop.is_set():
                await self.tick()
                await wait_event(self.clock, stop, self.tick_seconds)
        finally:
            await self.shutdown()

    async def run_until_idle(self, *, settle_ticks: int = 2) -> None:
        """Send everything due now (released batches, retries due), then stop."""
        await self.start()
        self.until_idle = True
        quiet = 0
        try:
            while quiet < settle_ticks:
                await self.tick()
                await asyncio.sleep(0)
                for sender in self.senders.values():
                    await sender.idle.wait()
                busy = False
                for c in self.campaigns.values():
                    if (
                        c.status == "sending"
                        and await self.store.run(
                            self.store.campaigns.next_claimable,
                            c.id,
                            c.released_batches,
                            self.clock.now(),
                        )
                        is not None
                    ):
                        busy = True
                others = await self.store.run(self.store.claims.claimed_by_others, self.node)
                if not busy and others:
                    busy = True  # an engine died holding leases: wait for them to run out
                    await wait_event(self.clock, asyncio.Event(), self.tick_seconds)
                quiet = 0 if busy else quiet + 1
            await self.tick()  # record completions
        finally:
            await self.shutdown()

    async def shutdown(self) -> None:
        """Stop taking work; in-flight sends finish and are confirmed; the rest is released."""
        self.stopping = True
        self.wake_senders()
        for sender in list(self.senders.values()):
            await sender.stop()
        self.senders.clear()
        released = await self.store.run(self.store.claims.release_all, self.node)
        if released:
            log.info("released %s claimed deliveries for other nodes or the next start", released)


class AccountSender:
    """Sends for one account, one campaign at a time, within its rate (D10, D11)."""

    def __init__(self, dispatcher: Dispatcher, settings: AccountSettings) -> None:
        self.d = dispatcher
        self.settings = settings
        self.name = settings.name
        self.bucket = TokenBucket(settings.rate, settings.burst, dispatcher.clock)
        self.task: asyncio.Task[None] | None = None
        self.channel: Channel | None = None
        self.prepared: dict[int, Any] = {}
        self.links_recorded: set[int] = set()
        self.current: int | None = None
        self.current_batch = 0
        self.since_pick = 0
        self.idle = asyncio.Event()
        self.wake = asyncio.Event()
        self._confirming: asyncio.Task[None] | None = None
        self._lease_until: datetime | None = None

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            if self.task is not None and self.task.done() and not self.task.cancelled():
                error = self.task.exception()
                if error is not None:
                    log.error("sender for %s stopped: %r; restarting", self.name, error)
            self.idle.clear()
            self.task = asyncio.create_task(self._run(), name=f"sender:{self.name}")

    async def stop(self) -> None:
        if self.task is not None:
            await self.task

    def _chunk(self) -> int:
        by_rate = int(self.settings.rate * self.d.lease.total_seconds() / 4)
        concurrency = self.channel.concurrency if self.channel else 8
        return max(1, min(200, concurrency * 4, by_rate))

    async def _lease(self) -> bool:
        now = self.d.clock.now()
        if self._lease_until is not None and now < self._lease_until - self.d.lease / 2:
            return True
        ok = await self.d.store.run(
            self.d.store.accounts.lease, self.name, self.d.node, self.d.lease
        )
        self._lease_until = now + self.d.lease if ok else None
        return bool(ok)

    async def _run(self) -> None:
        cls = self.d.plugins.channels()[self.settings.channel]
        context = ChannelContext(self.d.config, self.d.clock, self.d.signer)
        self.channel = cls(self.settings, context)
        await self.channel.open()
        try:
            while not self.d.stopping:
                if not await self._lease():
                    self.idle.set()
                    await self.d.clock.sleep(5)
                    continue
                held = self.bucket.holding()
                if held > HELD:  # a provider asked the account to wait (Retry, scope account)
                    self.idle.set()
                    await wait_event(self.d.clock, self.wake, held)
                    self.wake.clear()
                    continue
                campaign = await self._pick()
                if campaign is None:
                    self.idle.set()
                    await self.wake.wait()  # every tick wakes senders: no polling here
                    self.wake.clear()
                    continue
                self.idle.clear()
                await self._send_chunk(campaign)
        finally:
            if self._confirming is not None:
                await self._confirming
            await self.channel.close()
            self.idle.set()

    async def _pick(self) -> Campaign | None:
        """D11: keep the current campaign within its batch; at a boundary (or without work)
        take the highest-priority, then oldest, campaign with work ready now."""
        d = self.d
        now = d.clock.now()
        candidates = sorted(
            (c for c in d.campaigns.values() if c.account == self.name and c.status == "sending"),
            key=lambda c: (-c.priority, c.created_at, c.id),
        )
        current = d.campaigns.get(self.current) if self.current is not None else None
        if current is not None and current.status == "sending":
            batch = await d.store.run(
                d.store.campaigns.next_claimable, current.id, current.released_batches, now
            )
            soft = current.pacing is None and self.since_pick >= SOFT_BATCH
            if batch is not None and batch == self.current_batch and not soft:
                return current
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
                    )
                self.current, self.current_batch, self.since_pick = c.id, batch, 0
                return c
        self.current = None
        return None

    def _prepare(self, c: Campaign) -> Any:
        assert self.channel is not None
        if c.id not in self.prepared:
            self.prepared[c.id] = self.channel.prepare(c)
        return self.prepared[c.id]

    async def _send_chunk(self, c: Campaign) -> None:
        d = self.d
        try:
            prepared = self._prepare(c)
        except CampaignProblem as exc:
            d.problems[c.id] = str(exc)
            self.current = None
            return
        if c.id not in self.links_recorded:
            assert self.channel is not None
            urls = list(self.channel.tracked_links(prepared))
            if urls:  # before the first send: a click must always find its link
                await d.store.run(d.store.feedback.register_links, c.id, urls)
            self.links_recorded.add(c.id)
        claimed = await d.store.run(
            d.store.claims.claim,
            c.id,
            owner=d.node,
            released=c.released_batches,
            limit=self._chunk(),
            lease=d.lease,
        )
        if not claimed:
            self.current = None
            return
        outcomes = await self._process(c, prepared, claimed)
        self.since_pick += len(claimed)
        if self._confirming is not None:
            await self._confirming  # one confirmation in flight: it overlaps the next chunk
        self._confirming = asyncio.create_task(self._confirm(c, outcomes))

    async def _confirm(self, c: Campaign, outcomes: list[Outcome]) -> None:
        d = self.d
        await d.store.run(d.store.claims.confirm, c.id, d.node, outcomes, account=self.name)
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

    async def _process(self, c: Campaign, prepared: Any, claimed: list[Claimed]) -> list[Outcome]:
        """Checks at send time (D4, D8), then sends within the bucket and concurrency."""
        d = self.d
        channel = self.channel
        assert channel is not None
        kind = c.address_kind
        checked = [channel.normalise(x.address) for x in claimed]
        suppressed = await d.store.run(
            d.store.claims.suppressed,
            kind,
            [suppression_key(kind, n.value) for n in checked if n.value],
        )
        now = d.clock.now()
        since = (
            now - timedelta(hours=c.exclude_recent_hours)
            if c.exclude_recent_hours is not None
            else None
        )
        outcomes: list[Outcome | None] = [None] * len(claimed)
        slots = asyncio.Semaphore(channel.concurrency)
        tasks: list[asyncio.Task[None]] = []

        def base(x: Claimed, address: str | None) -> dict[str, Any]:
            return {
                "delivery_id": x.id,
                "contact_id": x.contact_id,
                "address": address or x.address,
                "address_kind": kind,
            }

        async def send_one(i: int, x: Claimed, address: str) -> None:
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
                )
                try:
                    result: SendResult = await channel.send(prepared, delivery)
                except Exception as exc:  # a broken channel: the delivery is retried
                    log.exception("channel %s failed on delivery %s", c.channel, x.id)
                    result = Retry(f"internal error: {exc!r}")
                outcomes[i] = self._outcome(c, x, result, base(x, address))
            finally:
                slots.release()

        for i, x in enumerate(claimed):
            n = checked[i]
            state = d.campaigns.get(c.id)
            if d.stopping or state is None or state.status != "sending":
                outcomes[i] = Outcome(kind="release", **base(x, None))
                continue
            if n.value is None:
                outcomes[i] = Outcome(
                    kind="failed", error=f"the address cannot be used: {n.error}", **base(x, None)
                )
                continue
            if suppression_key(kind, n.value) in suppressed:
                outcomes[i] = Outcome(
                    kind="suppressed", error="the address is suppressed (D4)", **base(x, n.value)
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
            if not await self.bucket.take_unless_held(HELD):
                # the account holds off (a provider's Retry-After): give the claims back
                slots.release()
                outcomes[i] = Outcome(kind="release", **base(x, None))
                continue
            now = d.clock.now()
            state = d.campaigns.get(c.id)
            if c.deadline is not None and now >= c.deadline:  # D8: never at or after it
                slots.release()
                outcomes[i] = Outcome(
                    kind="expired", error="the deadline passed (D8)", **base(x, n.value)
                )
                continue
            if d.stopping or state is None or state.status != "sending":
                slots.release()
                outcomes[i] = Outcome(kind="release", **base(x, None))
                continue
            tasks.append(asyncio.create_task(send_one(i, x, n.value)))
        if tasks:
            await asyncio.gather(*tasks)
        return [o for o in outcomes if o is not None]

    def _outcome(
        self, c: Campaign, x: Claimed, result: SendResult, base: dict[str, Any]
    ) -> Outcome:
        d = self.d
        if isinstance(result, Sent):
            return Outcome(
                kind="sent", provider_id=result.provider_id, message_id=result.message_id, **base
            )
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
        if c.deadline is not None and at >= c.deadline:
            return Outcome(kind="failed", error=f"gave up at the deadline: {result.reason}", **base)
        if at > first + GIVE_UP:
            return Outcome(
                kind="failed",
                error=f"gave up after 48 h ({x.attempts + 1} attempts): {result.reason}",
                **base,
            )
        return Outcome(kind="retry", error=result.reason, next_attempt_at=at, **base)

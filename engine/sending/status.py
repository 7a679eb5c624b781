"""How sending stands, for people: a campaign's live schedule and an account's guard rates,
the engines running, and what goes wrong (errors by reason, retries, paused accounts),
computed once here for ``disparo campaign show``, ``disparo accounts``, ``disparo status``,
the terminal UI and ``/metrics`` (the dispatcher and the guard use the same
``engine.schedule`` and ``engine.rates``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from engine.campaign import Campaign
from engine.clock import Clock
from engine.config import Config
from engine.plugins import Plugins
from engine.plugins.channel import Channel, ChannelContext
from engine.rates import Limits, Rates
from engine.reads import Trouble, account_rate, trouble_from
from engine.schedule import Schedule, live
from engine.store import Store
from engine.store.accounts import AccountState
from engine.store.delivery_errors import ErrorCount
from engine.store.engines import EngineInfo

#: why a campaign is not done (one class with the quick reader's ``Trouble``)
CampaignTrouble = Trouble

__all__ = [
    "CampaignTrouble",
    "EnginesHeader",
    "account_errors",
    "account_rate",
    "account_rates",
    "campaign_schedule",
    "campaign_trouble",
    "describe_accounts",
    "engine_json",
    "engines_header",
]


def campaign_schedule(
    store: Store,
    config: Config,
    campaign: Campaign,
    now: datetime,
    *,
    rate: float | None = None,
) -> Schedule:
    """The campaign's schedule at ``now``: its batches as released (its pauses shift them),
    what is open in each, and the projection at ``rate`` (default: its account's rate)."""
    return live(
        campaign,
        now,
        rate=rate or account_rate(config, campaign),
        open_by_batch=store.views.open_by_batch(campaign),
    )


def account_rates(config: Config, state: AccountState) -> Rates:
    """An account's 24-hour rates as of the guard's last check, against its configured
    limits (the defaults when it is no longer configured)."""
    settings = config.accounts.get(state.name)
    return state.rates(settings.limits if settings is not None else Limits())


def describe_accounts(config: Config, plugins: Plugins, clock: Clock) -> Iterable[str]:
    """One line per account: where it sends (for logs at start)."""
    for name, settings in config.accounts.items():
        cls = plugins.channels()[settings.channel]
        channel: Channel = cls(settings, ChannelContext(config, clock))
        yield f"{name}: {channel.describe()}, {settings.rate:g}/s"


# -- engines -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnginesHeader:
    """The engines on this store, as the UI's header and ``disparo status`` show them."""

    now: datetime
    running: tuple[EngineInfo, ...]
    #: registered engines whose heartbeat is older than their lease (stopped unannounced)
    unresponsive: tuple[EngineInfo, ...]

    @property
    def ok(self) -> bool:
        """At least one engine runs (the UI's commands will be applied)."""
        return bool(self.running)

    @property
    def last_heartbeat(self) -> datetime | None:
        return max((e.heartbeat_at for e in self.running), default=None)

    @property
    def text(self) -> str:
        """One line: "2 engines running (host-a, host-b)", "no engine running"…"""
        if self.running:
            hosts = ", ".join(sorted({e.host for e in self.running}))
            n = len(self.running)
            return f"{n} engine{'s' if n > 1 else ''} running ({hosts})"
        if self.unresponsive:
            last = max(e.heartbeat_at for e in self.unresponsive)
            ago = int((self.now - last).total_seconds())
            return f"no engine running (the last one was heard of {ago} s ago)"
        return "no engine running"


def engines_header(store: Store, now: datetime) -> EnginesHeader:
    """Which engines run now: one query of the engines table (and what they hold)."""
    listed = store.engines.listing()
    return EnginesHeader(
        now,
        tuple(e for e in listed if e.alive(now)),
        tuple(e for e in listed if not e.alive(now)),
    )


def engine_json(e: EngineInfo, now: datetime, tz: tzinfo) -> dict[str, Any]:
    """One engine for ``disparo status --json``."""
    return {
        "node": e.node,
        "host": e.host,
        "pid": e.pid,
        "version": e.version,
        "mode": e.mode,
        "config": e.config,
        "started_at": e.started_at.astimezone(tz).isoformat(timespec="seconds"),
        "heartbeat_at": e.heartbeat_at.astimezone(tz).isoformat(timespec="seconds"),
        "heartbeat_age_s": round((now - e.heartbeat_at).total_seconds(), 1),
        "lease_s": e.lease.total_seconds(),
        "accounts": list(e.accounts),
        "mailboxes": list(e.mailboxes),
        "in_flight": e.in_flight,
        # sender workers of ``run --workers`` that died too often and are not started again
        "workers_given_up": list(e.detail.get("workers_given_up", [])),
    }


# -- what goes wrong -------------------------------------------------------------------------


def campaign_trouble(store: Store, campaign: Campaign, *, limit: int = 5) -> CampaignTrouble:
    """A few indexed reads: the campaign's error counts, its deliveries waiting for a retry
    grouped by reason, and its account's pause (for ``campaign show`` and the UI); what they
    mean is ``engine.reads.trouble_from``'s, as for ``disparo campaign show``'s quick path."""
    errors = store.errors.for_campaign(campaign.id, limit=50)
    waiting = store.errors.waiting(campaign.id, limit=limit)
    state = store.accounts.states().get(campaign.account) if campaign.account else None
    return trouble_from(errors, waiting, state)


def account_errors(
    store: Store, *, since: datetime | None = None, limit: int = 5
) -> dict[str, list[ErrorCount]]:
    """Per sender account, its most frequent error reasons (for ``accounts``, the UI)."""
    return store.errors.for_accounts(since=since, limit=limit)

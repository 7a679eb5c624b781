"""How sending stands, for people: a campaign's live schedule and an account's guard rates,
computed once here for ``disparo campaign show``, ``disparo accounts``, the terminal UI and
``/metrics`` (the dispatcher and the guard use the same ``engine.schedule`` and
``engine.rates``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from engine.campaign import Campaign
from engine.clock import Clock
from engine.config import Config
from engine.plugins import Plugins
from engine.plugins.channel import Channel, ChannelContext
from engine.rates import Limits, Rates
from engine.schedule import DEFAULT_RATE, Schedule, live
from engine.store import Store
from engine.store.accounts import AccountState


def account_rate(config: Config, campaign: Campaign) -> float:
    """The rate its sender account sends at (D10), else the default (D9)."""
    account = config.accounts.get(campaign.account or "")
    return account.rate if account is not None else DEFAULT_RATE


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

"""An account's usage ("Exibir uso das contas", seed 002): its settings (never a secret), the
messages it sent per hour over the last 24 hours, and its bounce and complaint rates against
its limits (D14, D15), for ``disparo accounts show`` and the UI's account screen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.config import AccountSettings, SecretRef
from engine.rates import Rates
from engine.store import Store
from engine.store.schema import events

HOURS = 24


@dataclass(frozen=True)
class HourCount:
    """Messages sent in the hour starting at ``start``."""

    start: datetime
    sent: int


@dataclass(frozen=True)
class AccountUsage:
    """What ``accounts show`` prints."""

    name: str
    channel: str
    settings: dict[str, Any]
    hours: list[HourCount]
    rates: Rates

    def as_json(self, tz: Any) -> dict[str, Any]:
        r = self.rates
        return {
            "name": self.name,
            "channel": self.channel,
            "settings": self.settings,
            "sent_per_hour": [
                {"hour": h.start.astimezone(tz).isoformat(timespec="minutes"), "sent": h.sent}
                for h in self.hours
            ],
            "sent_24h": r.sent,
            "bounces_24h": r.bounces,
            "complaints_24h": r.complaints,
            "bounce_rate": round(r.bounce_rate, 3),
            "bounce_limit": r.limits.bounce_limit,
            "bounce_over": r.bounces_over,
            "complaint_rate": round(r.complaint_rate, 4),
            "complaint_limit": r.limits.complaint_limit,
            "complaint_over": r.complaints_over,
            "min_sample": r.limits.min_sample,
            "judged": r.judged,
        }


def shown_settings(s: AccountSettings) -> dict[str, Any]:
    """The account's settings as they may be shown: a secret says only where it is read from."""

    def value(v: Any) -> Any:
        if isinstance(v, SecretRef):
            return f"(secret, from {v.describe()})"
        if isinstance(v, timedelta):
            return f"{int(v.total_seconds())}s"
        if isinstance(v, str | int | float | bool) or v is None:
            return v
        if isinstance(v, list | tuple):
            return [value(x) for x in v]
        return str(v)

    return {
        "channel": s.channel,
        "sandbox": s.sandbox,
        "rate": s.rate,
        "burst": s.burst,
        "concurrency": s.concurrency,
        "bounce_limit": s.bounce_limit,
        "complaint_limit": s.complaint_limit,
        "min_sample": s.min_sample,
        "min_pause": value(s.min_pause),
        "breaker_failures": s.breaker_failures,
        "breaker_pause": value(s.breaker_pause),
        "breaker_max_pause": value(s.breaker_max_pause),
        **{k: value(v) for k, v in sorted(s.options.items())},
    }


def sent_per_hour(store: Store, account: str, now: datetime) -> list[HourCount]:
    """Messages sent in each of the last 24 hours (whole hours, the current one last), in one
    pass over the account's ``sent`` events (the (account, kind, at) index)."""
    top = now.replace(minute=0, second=0, microsecond=0)
    starts = [top - timedelta(hours=HOURS - 1 - i) for i in range(HOURS)]
    at = events.c.at
    columns = [
        sa.func.coalesce(
            sa.func.sum(sa.case((sa.and_(at >= s, at < s + timedelta(hours=1)), 1), else_=0)), 0
        )
        for s in starts
    ]
    with store.read() as c:
        row = c.execute(
            sa.select(*columns).where(
                events.c.account == account, events.c.kind == "sent", at >= starts[0]
            )
        ).one()
    return [HourCount(s, int(n)) for s, n in zip(starts, row, strict=True)]


def account_usage(store: Store, settings: AccountSettings, now: datetime) -> AccountUsage:
    """The usage of one configured account, counted now (D14's trailing 24 hours)."""
    rates = Rates(*store.accounts.counts(settings.name, now - timedelta(hours=24)), settings.limits)
    return AccountUsage(
        settings.name,
        settings.channel,
        shown_settings(settings),
        sent_per_hour(store, settings.name, now),
        rates,
    )

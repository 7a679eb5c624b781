"""The guard (D14–D16): every 5 minutes, each account's bounce and complaint rates over the
trailing 24 hours; above the limits (with enough messages to judge) the account pauses and
its campaigns are held; it resumes by itself after the minimum pause once the rates are back
under. An admin override, with a reason, keeps an account sending."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from engine.clock import Clock
from engine.config import AccountSettings, Config
from engine.rates import Rates
from engine.store import Store
from engine.store.accounts import AccountState

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class Decision:
    state: str  # ok | paused
    paused_until: datetime | None
    reason: str | None
    #: "paused" or "resumed" when this check changes the state
    change: str | None = None


def decide(settings: AccountSettings, rates: Rates, state: AccountState, now: datetime) -> Decision:
    """D15/D16 for one account (pure): ``rates`` carry the account's limits."""
    too_many = rates.breaches()
    paused = state.guard_state == "paused"
    if state.override_by:
        return Decision("ok", None, None, "resumed" if paused else None)
    if paused:
        until = state.paused_until
        if (until is None or now >= until) and not too_many:
            return Decision("ok", None, None, "resumed")
        return Decision("paused", until, state.pause_reason)
    if too_many:
        return Decision("paused", now + settings.min_pause, "; ".join(too_many), "paused")
    return Decision("ok", None, None)


class Guard:
    """Checks every account every 5 minutes (on the injected clock)."""

    def __init__(self, store: Store, config: Config, clock: Clock) -> None:
        self.store = store
        self.config = config
        self.clock = clock

    async def check(self) -> dict[str, Decision]:
        """One pass over the configured accounts."""
        d = self.store.accounts
        await self.store.run(d.sync, {name: a.channel for name, a in self.config.accounts.items()})
        states = await self.store.run(d.states)
        now = self.clock.now()
        decisions: dict[str, Decision] = {}
        for name, settings in self.config.accounts.items():
            sent, bounces, complaints = await self.store.run(d.counts, name, now - WINDOW)
            rates = Rates(sent, bounces, complaints, settings.limits)
            decision = decide(settings, rates, states[name], now)
            decisions[name] = decision
            values: dict[str, Any] = {
                "checked_at": now,
                "sent_24h": sent,
                "bounces_24h": bounces,
                "complaints_24h": complaints,
            }
            audit: str | None = None
            detail: dict[str, object] = {}
            if decision.change == "paused":
                log.warning(
                    "account %s paused by the guard until %s: %s",
                    name,
                    decision.paused_until,
                    decision.reason,
                    extra={
                        "event": "account.paused",
                        "account": name,
                        "by": "guard",
                        "reason": decision.reason,
                    },
                )
                until = decision.paused_until.isoformat() if decision.paused_until else None
                values |= {
                    "guard_state": "paused",
                    "paused_at": now,
                    "paused_until": decision.paused_until,
                    "pause_reason": decision.reason,
                }
                audit, detail = "account.paused", {"reason": decision.reason, "until": until}
            elif decision.change == "resumed":
                log.info(
                    "account %s resumes (bounces %.2f %%, complaints %.3f %% over 24 h)%s",
                    name,
                    rates.bounce_rate,
                    rates.complaint_rate,
                    f": the guard is overridden by {states[name].override_by}"
                    if states[name].override_by
                    else "",
                    extra={"event": "account.resumed", "account": name, "by": "guard"},
                )
                values |= {"guard_state": "ok", "paused_until": None, "pause_reason": None}
                audit = "account.resumed"
                detail = {"bounce_rate": rates.bounce_rate, "complaint_rate": rates.complaint_rate}
            await self.store.run(
                partial(d.set_guard, name, actor="guard", audit=audit, detail=detail, **values)
            )
        return decisions

    async def run(self) -> None:
        """Check now, then every 5 minutes, until cancelled."""
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("the guard's check failed; trying again in 5 minutes")
            await self.clock.sleep(EVERY.total_seconds())

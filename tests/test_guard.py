"""The guard (D14–D16): trailing-24 h bounce and complaint rates, minimum sample, pause, auto
resume, admin override; and campaigns held while their account is paused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.actions import apply_pending
from engine.clock import TestClock
from engine.config import AccountSettings
from engine.plugins import reset_plugins
from engine.rates import Rates
from engine.sending.guard import Guard, decide
from engine.store import Store
from engine.store import schema as t
from engine.store.accounts import AccountState
from tests.world import Scripted, World, make_world, phones

NOW = datetime.fromisoformat("2026-11-23T12:00:00+00:00")
ACCOUNT = AccountSettings("sms", "sms-long", 10, 10, {})
LIMITS = ACCOUNT.limits


def state(**kw: Any) -> AccountState:
    values: dict[str, Any] = dict(
        name="sms",
        channel="sms-long",
        guard_state="ok",
        paused_at=None,
        paused_until=None,
        pause_reason=None,
        override_by=None,
        override_reason=None,
        override_at=None,
        checked_at=None,
        sent_24h=0,
        bounces_24h=0,
        complaints_24h=0,
        lease_owner=None,
        lease_until=None,
    )
    values.update(kw)
    return AccountState(**values)


@pytest.mark.parametrize(("bounces", "pauses"), [(49, False), (50, False), (51, True)])
def test_d15_pauses_only_above_5_percent(bounces: int, pauses: bool) -> None:
    decision = decide(ACCOUNT, Rates(1000, bounces, 0, LIMITS), state(), NOW)
    assert (decision.change == "paused") is pauses
    if pauses:
        assert decision.paused_until == NOW + timedelta(hours=24)
        assert "bounce rate 5.10 % > 5 % (51 of 1000 in 24 h)" in (decision.reason or "")


@pytest.mark.parametrize(("complaints", "pauses"), [(1, False), (2, True)])
def test_d15_complaints_above_a_tenth_of_a_percent(complaints: int, pauses: bool) -> None:
    decision = decide(ACCOUNT, Rates(1000, 0, complaints, LIMITS), state(), NOW)
    assert (decision.change == "paused") is pauses


def test_d15_below_the_minimum_sample_nothing_pauses() -> None:
    assert decide(ACCOUNT, Rates(199, 199, 199, LIMITS), state(), NOW).change is None
    assert decide(ACCOUNT, Rates(200, 11, 0, LIMITS), state(), NOW).change == "paused"


def test_d15_resumes_after_the_minimum_pause_when_rates_are_back() -> None:
    paused = state(
        guard_state="paused", paused_until=NOW + timedelta(hours=2), pause_reason="bounce rate 6 %"
    )
    assert decide(ACCOUNT, Rates(1000, 0, 0, LIMITS), paused, NOW).state == "paused"  # too soon
    later = NOW + timedelta(hours=3)
    assert decide(ACCOUNT, Rates(1000, 60, 0, LIMITS), paused, later).state == "paused"  # still bad
    assert decide(ACCOUNT, Rates(1000, 10, 0, LIMITS), paused, later).change == "resumed"


def test_d16_an_override_keeps_the_account_sending() -> None:
    over = state(override_by="admin", override_reason="list verified by hand")
    assert decide(ACCOUNT, Rates(1000, 500, 50, LIMITS), over, NOW).state == "ok"


def test_limits_are_configurable_per_account() -> None:
    strict = AccountSettings("sms", "sms-long", 10, 10, {}, bounce_limit=2.0, min_sample=50)
    assert decide(strict, Rates(100, 3, 0, strict.limits), state(), NOW).change == "paused"


# -- with the store and the dispatcher ---------------------------------------------------------


@pytest.fixture
def world(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("DISPARO_BLOCK_PLUGINS", "twilio")
    reset_plugins()
    yield from make_world(tmp_path, store, clock)


def add_events(store: Store, kind: str, n: int, at: datetime) -> None:
    with store.write() as c:
        c.execute(
            sa.insert(t.events),
            [
                {"at": at, "kind": kind, "account": "sms", "origin": "test", "detail": {}}
                for _ in range(n)
            ],
        )


async def test_the_guard_window_holds_campaigns_then_lets_them_go(
    world: World, clock: TestClock
) -> None:
    guard = Guard(world.store, world.config, clock)
    # 1,000 sent and 60 hard bounces reported by the mailbox hours later (6 %)
    add_events(world.store, "sent", 1000, clock.now() - timedelta(hours=10))
    add_events(world.store, "bounced", 60, clock.now() - timedelta(hours=1))
    decisions = await guard.check()
    assert decisions["sms"].change == "paused"
    cid = world.import_("smslong", phones(20)).campaign_id
    await world.run(60)
    campaign = world.campaign(cid)
    assert campaign.status == "held" and "paused by the guard" in (campaign.status_reason or "")
    assert Scripted.log == []
    states = world.store.accounts.states()
    assert states["sms"].sent_24h == 1000 and states["sms"].bounces_24h == 60
    # 24 h later the old sends and bounces left the window: the rates are back, it resumes
    await clock.advance(timedelta(hours=24, minutes=5))
    assert (await guard.check())["sms"].change == "resumed"
    await world.run(10)
    assert world.campaign(cid).status == "completed" and len(world.sends(cid)) == 20
    actions = [e.action for e in world.store.audit.entries(target="account:sms")]
    assert actions[:2] == ["account.resumed", "account.paused"]


async def test_an_admin_override_is_recorded_and_honoured(world: World, clock: TestClock) -> None:
    guard = Guard(world.store, world.config, clock)
    add_events(world.store, "sent", 1000, clock.now())
    add_events(world.store, "bounced", 100, clock.now())
    await guard.check()
    world.store.commands.submit(
        actor="op", role="operator", action="override", target="account:sms", args={"reason": "x"}
    )
    world.store.commands.submit(
        actor="root", role="admin", action="override", target="account:sms", args={}
    )
    world.store.commands.submit(
        actor="root",
        role="admin",
        action="override",
        target="account:sms",
        args={"reason": "list cleaned by hand"},
    )
    results = await apply_pending(world.store)
    assert [r.ok for r in results] == [False, False, True]
    assert "needs admin" in results[0].message and "needs a reason" in results[1].message
    state_now = world.store.accounts.states()["sms"]
    assert state_now.override_by == "root" and state_now.override_reason == "list cleaned by hand"
    assert (await guard.check())["sms"].state == "ok"
    cid = world.import_("smslong", phones(5)).campaign_id
    await world.run(5)
    assert world.campaign(cid).status == "completed"
    entry = world.store.audit.entries(target="account:sms")[0]
    assert entry.action == "account.override" and entry.actor == "root"

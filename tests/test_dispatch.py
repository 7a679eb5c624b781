"""Dispatch on the test clock (D1–D13): start, pacing, deadline, priority, token bucket,
retries, suppressions at send time, operator commands, leases, several engine nodes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.actions import apply_pending
from engine.clock import TestClock
from engine.plugins import reset_plugins
from engine.plugins.channel import Failed, Retry
from engine.schedule import released_count
from engine.sending.dispatcher import Dispatcher, retry_delay
from engine.store import Store
from engine.store import schema as t
from tests.world import Scripted, World, make_world, minutes, phones


@pytest.fixture
def world(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("DISPARO_BLOCK_PLUGINS", "twilio")  # the scripted channels take its names
    reset_plugins()
    yield from make_world(tmp_path, store, clock)


async def test_d5_q15020_on_1000_contacts_releases_7_batches_20_minutes_apart(
    world: World, clock: TestClock
) -> None:
    report = world.import_("smslong_q15020", phones(1000))
    cid = report.campaign_id
    assert cid is not None and report.batches == 7
    start = clock.now()
    await world.run(minutes(125).total_seconds(), step=5)
    sends = world.sends(cid)
    assert len(sends) == 1000 and len({s.address for s in sends}) == 1000
    # each batch starts at its release, start + (k-1)·20 min, and is sent within 15 s at 10/s
    by_batch = Counter((s.at - start) // minutes(20) for s in sends)
    assert [by_batch[k] for k in range(7)] == [150] * 6 + [100]
    for k in range(7):
        first = min(s.at for s in sends if (s.at - start) // minutes(20) == k)
        assert first - start >= minutes(20) * k
        assert first - start < minutes(20) * k + timedelta(seconds=10)
    await world.run(5)
    campaign = world.campaign(cid)
    assert campaign.status == "completed" and campaign.counters["sent"] == 1000
    assert world.statuses(cid) == {"sent": 1000}


async def test_d2_campaign_starts_at_its_start_time(world: World, clock: TestClock) -> None:
    local = clock.now().astimezone(world.config.tz)
    start = (local + timedelta(hours=2)).strftime("%d%m%y%H%M")
    cid = world.import_(f"smslong_i{start}", phones(5)).campaign_id
    assert cid is not None
    await world.run(3600, step=60)
    assert world.sends(cid) == [] and world.campaign(cid).status == "scheduled"
    await world.run(3600 + 120, step=60)
    assert len(world.sends(cid)) == 5
    assert min(s.at for s in world.sends(cid)) >= clock.now() - timedelta(minutes=3)


async def test_d8_the_deadline_expires_what_is_left(world: World, clock: TestClock) -> None:
    local = clock.now().astimezone(world.config.tz)
    deadline = local + timedelta(minutes=50)
    cid = world.import_(f"smslong_q25020_LE{deadline:%d%m%y%H%M}", phones(400)).campaign_id
    assert cid is not None
    await world.run(minutes(90).total_seconds(), step=10)
    sends = world.sends(cid)
    # batches at 0, 20 and 40 minutes go out; the one at 60 is after the 50-minute deadline
    assert len(sends) == 300
    assert max(s.at for s in sends) < deadline.astimezone(UTC)
    campaign = world.campaign(cid)
    assert campaign.status == "expired" and campaign.counters["expired"] == 100
    assert world.statuses(cid) == {"sent": 300, "expired": 100}


async def test_d8_nothing_is_sent_at_or_after_the_deadline_inside_a_batch(
    world: World, clock: TestClock
) -> None:
    local = clock.now().astimezone(world.config.tz)
    deadline = (local + timedelta(minutes=1)).replace(second=0, microsecond=0)
    world.config.accounts["sms"].__dict__["rate"] = 1.0  # slow account: 1 message a second
    cid = world.import_(f"smslong_LE{deadline:%d%m%y%H%M}", phones(300)).campaign_id
    assert cid is not None
    await world.run(240, step=1)
    sends = world.sends(cid)
    assert sends and all(s.at < deadline.astimezone(UTC) for s in sends)
    assert world.campaign(cid).status == "expired"
    statuses = world.statuses(cid)
    assert statuses["sent"] == len(sends) and statuses["expired"] == 300 - len(sends)


async def test_d10_token_bucket_rate_plus_burst_in_every_second(
    world: World, clock: TestClock
) -> None:
    cid = world.import_("smslong", phones(600)).campaign_id
    await world.run(70, step=0.25)
    times = sorted(s.at for s in world.sends(cid))
    assert len(times) == 600
    start = times[0]
    for i, at in enumerate(times):  # every window [at, at + 1 s)
        window = sum(1 for other in times[i : i + 40] if other - at < timedelta(seconds=1))
        assert window <= 10 + 10
    assert times[-1] - start >= timedelta(seconds=(600 - 10) / 10 - 1)  # sustained 10/s


async def test_d11_priority_takes_the_account_over_at_a_batch_boundary(
    world: World, clock: TestClock
) -> None:
    low = world.import_("smslong_q50010", phones(400)).campaign_id  # 2 batches, 10 min apart
    await world.run(5)
    high = world.import_("smslong", phones(50, start=1000)).campaign_id
    assert low is not None and high is not None
    world.store.commands.submit(
        actor="ana",
        role="operator",
        action="priority",
        target=f"campaign:{high}",
        args={"priority": 5},
    )
    await world.run(minutes(15).total_seconds(), step=1)
    sends = world.sends()
    order = [s.campaign_id for s in sends]
    # the low campaign's first batch (200) was under way: it is finished first, then the
    # high-priority one takes over, then the low one's second batch
    first_high = order.index(high)
    assert order[:first_high].count(low) >= 200 - 10 or order[:first_high].count(low) == 200
    assert order.count(high) == 50
    last_high = len(order) - 1 - order[::-1].index(high)
    assert order[last_high + 1 :] == [low] * (len(order) - last_high - 1)
    assert world.campaign(high).status == "completed"


async def test_d11_equal_priority_oldest_first_and_no_interleaving(
    world: World, clock: TestClock
) -> None:
    a = world.import_("smslong", phones(100)).campaign_id
    b = world.import_("smslong", phones(100, start=500)).campaign_id
    await world.run(30, step=0.5)
    order = [s.campaign_id for s in world.sends()]
    assert order == [a] * 100 + [b] * 100


async def test_d13_retries_back_off_then_succeed(world: World, clock: TestClock) -> None:
    number = phones(1)[0]
    Scripted.script[number] = [Retry("451 busy"), Retry("451 busy")]
    cid = world.import_("smslong", [number]).campaign_id
    await world.run(600, step=5)
    attempts = [s.at for s in world.sends(cid)]
    assert len(attempts) == 3
    assert timedelta(seconds=60) <= attempts[1] - attempts[0] <= timedelta(seconds=80)
    assert timedelta(seconds=120) <= attempts[2] - attempts[1] <= timedelta(seconds=150)
    with world.store.read() as c:
        row = c.execute(sa.select(t.deliveries)).one()
    assert row.status == "sent" and row.attempts == 3
    assert world.campaign(cid).status == "completed"


async def test_d13_retry_after_is_honoured(world: World) -> None:
    number = phones(1)[0]
    Scripted.script[number] = [Retry("429 slow down", retry_after=600)]
    cid = world.import_("smslong", [number]).campaign_id
    await world.run(900, step=10)
    first, second = (s.at for s in world.sends(cid))
    assert second - first >= timedelta(seconds=600)


async def test_a_retry_of_one_delivery_does_not_hold_the_account(world: World) -> None:
    first, second = phones(2)
    Scripted.script[first] = [Retry("452 mailbox busy", retry_after=600)]
    cid = world.import_("smslong", [first, second]).campaign_id
    await world.run(30, step=1)
    sent = {s.address: s.at for s in world.sends(cid)}
    assert second in sent and sent[second] - world.clock.now() < timedelta(seconds=30)


async def test_a_retry_of_the_account_holds_every_send_of_it(world: World) -> None:
    numbers = phones(30)
    Scripted.script[numbers[0]] = [Retry("429 slow down", retry_after=600, scope="account")]
    cid = world.import_("smslong", numbers).campaign_id
    start = world.clock.now()
    await world.run(900, step=10)
    sends = world.sends(cid)
    assert len(sends) == 31  # every recipient, and the first one twice
    # only what had started when the provider answered went out (at most a burst of the
    # bucket, 10/s); the rest waited out the account's hold-off
    early = [s for s in sends if s.at - start < timedelta(seconds=600)]
    assert numbers[0] in {s.address for s in early} and len(early) <= 10


async def test_d13_gives_up_after_48_hours(world: World) -> None:
    number = phones(1)[0]
    Scripted.script[number] = [Retry("451 busy")] * 200
    cid = world.import_("smslong", [number]).campaign_id
    await world.run(timedelta(hours=50).total_seconds(), step=300)
    with world.store.read() as c:
        row = c.execute(sa.select(t.deliveries)).one()
    assert row.status == "failed" and "gave up after 48 h" in row.error
    assert row.attempts >= 45  # 1, 2, 4 … minutes, then hourly for two days
    assert world.campaign(cid).status == "completed"


def test_retry_delay_doubles_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    delays = [retry_delay(n, rng) for n in range(1, 10)]
    assert timedelta(minutes=1) <= delays[0] <= timedelta(minutes=1.2)
    assert timedelta(minutes=2) <= delays[1] <= timedelta(minutes=2.4)
    assert all(d <= timedelta(hours=1.2) for d in delays)
    assert delays[-1] >= timedelta(hours=1)


async def test_d13_permanent_failures_bounce_and_suppress(world: World) -> None:
    a, b, c_ = phones(3)
    Scripted.script[a] = [Failed("invalid number", bounce=True)]
    Scripted.script[b] = [Failed("the recipient opted out (STOP)", suppress="stop")]
    cid = world.import_("smslong", [a, b, c_]).campaign_id
    await world.run(10)
    assert world.statuses(cid) == {"bounced": 1, "failed": 1, "sent": 1}
    found = {s.address: s.origin for s in world.store.suppressions.search()}
    assert found == {a: "bounce", b: "stop"}
    # and the next campaign never sends to them (D4)
    again = world.import_("smslong", [a, b, c_]).campaign_id
    await world.run(10)
    assert world.statuses(again) == {"suppressed": 2, "sent": 1}


async def test_d4_suppressions_and_x_are_enforced_at_send_time(
    world: World, clock: TestClock
) -> None:
    a, b, c_ = phones(3)
    local = clock.now().astimezone(world.config.tz)
    start = (local + timedelta(hours=1)).strftime("%d%m%y%H%M")
    cid = world.import_(f"smslong_x24_i{start}", [a, b, c_]).campaign_id
    world.store.suppressions.add("phone", a, origin="manual", actor="test")
    other = world.import_("smslong", [b]).campaign_id  # b hears from another campaign first
    await world.run(minutes(70).total_seconds(), step=30)
    assert world.statuses(other) == {"sent": 1}
    assert world.statuses(cid) == {"suppressed": 1, "skipped": 1, "sent": 1}
    assert [s.address for s in world.sends(cid)] == [c_]


async def test_pause_stops_sending_within_a_tick_and_resume_shifts_the_schedule(
    world: World, clock: TestClock
) -> None:
    world.config.accounts["sms"].__dict__["rate"] = 2.0
    cid = world.import_("smslong_q50010", phones(100)).campaign_id  # 2 batches, 10 min apart
    await world.run(5)
    before = len(world.sends(cid))
    world.store.commands.submit(
        actor="ana",
        role="operator",
        action="pause",
        target=f"campaign:{cid}",
        args={"reason": "client asked"},
    )
    await world.run(2)
    paused = len(world.sends(cid))
    assert paused - before <= 2 + 4  # what was in flight at that moment (rate 2/s)
    await world.run(minutes(30).total_seconds(), step=10)
    assert len(world.sends(cid)) == paused and world.campaign(cid).status == "paused"
    world.store.commands.submit(
        actor="ana", role="operator", action="resume", target=f"campaign:{cid}"
    )
    await world.run(minutes(5).total_seconds(), step=2)
    campaign = world.campaign(cid)
    assert campaign.status == "sending" and campaign.released_batches == 1  # shifted by 30 min
    assert len(world.sends(cid)) == 50
    await world.run(minutes(10).total_seconds(), step=2)
    assert len(world.sends(cid)) == 100
    entries = world.store.audit.entries(target=f"campaign:{cid}")
    assert any(e.actor == "ana" and e.detail.get("to") == "paused" for e in entries)


async def test_cancel_and_refusals(world: World) -> None:
    cid = world.import_("smslong_q10010", phones(100)).campaign_id
    await world.run(3)
    world.store.commands.submit(
        actor="ana",
        role="operator",
        action="cancel",
        target=f"campaign:{cid}",
        args={"reason": "wrong list"},
    )
    world.store.commands.submit(
        actor="vic", role="viewer", action="pause", target=f"campaign:{cid}"
    )
    world.store.commands.submit(
        actor="ana", role="operator", action="resume", target=f"campaign:{cid}"
    )
    applied = await apply_pending(world.store)
    assert [a.ok for a in applied] == [True, False, False]
    assert "viewer role may not pause" in applied[1].message
    assert "is cancelled: only a paused campaign is resumed" in applied[2].message
    await world.run(minutes(20).total_seconds(), step=10)
    campaign = world.campaign(cid)
    assert campaign.status == "cancelled" and campaign.counters["cancelled"] == 90
    assert len(world.sends(cid)) == 10


async def test_d12_a_lost_lease_is_rescued_and_sent(world: World, clock: TestClock) -> None:
    cid = world.import_("smslong", phones(20)).campaign_id
    await world.dispatcher.tick()
    crashed = world.store.claims.claim(
        cid, owner="dead-node", released=1, limit=20, lease=timedelta(minutes=5)
    )
    assert len(crashed) == 20
    await world.run(60)
    assert world.sends(cid) == []  # leased by a node that is gone: not touched
    await world.run(minutes(6).total_seconds(), step=5)
    assert len(world.sends(cid)) == 20 and world.statuses(cid) == {"sent": 20}


async def test_two_engine_nodes_share_the_work_without_duplicates(
    world: World, clock: TestClock
) -> None:
    world.dispatchers.extend(
        [
            Dispatcher(world.store, world.plugins, world.config, clock, node="node-a"),
            Dispatcher(world.store, world.plugins, world.config, clock, node="node-b"),
        ]
    )
    cid = world.import_("smslong", phones(300)).campaign_id
    await world.run(60, step=0.5)
    sends = world.sends(cid)
    assert len(sends) == 300 and len({s.delivery_id for s in sends}) == 300
    times = sorted(s.at for s in sends)
    for i, at in enumerate(times):  # the account's rate holds across nodes (one leases it)
        assert sum(1 for o in times[i : i + 40] if o - at < timedelta(seconds=1)) <= 20


async def test_a_campaign_without_an_account_is_held_until_one_exists(
    world: World, clock: TestClock
) -> None:
    cid = world.import_("smsshort", phones(3)).campaign_id  # no sms-short account configured
    await world.run(3)
    campaign = world.campaign(cid)
    assert campaign.status == "held" and "no sender account for channel `sms-short`" in (
        campaign.status_reason or ""
    )
    from engine.config import AccountSettings

    accounts = dict(world.config.accounts)
    accounts["short"] = AccountSettings("short", "sms-short", 10, 10, {})
    object.__setattr__(world.config, "accounts", accounts)
    world.dispatchers.clear()
    await world.run(5)
    assert world.campaign(cid).status == "completed" and len(world.sends(cid)) == 3


def test_released_count_follows_the_schedule_and_its_pauses(world: World) -> None:
    cid = world.import_("smslong_q10010", phones(100)).campaign_id
    c = world.campaign(cid)
    start = datetime(2026, 11, 23, 12, tzinfo=UTC)
    c = c.__class__(**{**c.__dict__, "started_at": start, "paused_seconds": 600})
    assert released_count(c, start) == 0
    assert released_count(c, start + minutes(10)) == 1
    assert released_count(c, start + minutes(29)) == 2
    assert released_count(c, start + minutes(500)) == 10

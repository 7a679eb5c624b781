"""The schedule (D5–D9): pacing, batch sizes, release times, finish, expirations, pauses."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.campaign import Campaign
from engine.schedule import (
    Pacing,
    batch_of,
    batch_sizes,
    live,
    plan,
    release_at,
)

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
Q15020 = Pacing.percent(15, timedelta(minutes=20))


def test_d5_q15020_on_1000_contacts_is_7_batches_20_minutes_apart() -> None:
    assert batch_sizes(1000, Q15020) == [150] * 6 + [100]
    p = plan(1000, START, pacing=Q15020, rate=10)
    assert [b.release_at for b in p.batches] == [
        START + timedelta(minutes=20 * k) for k in range(7)
    ]
    assert [b.index for b in p.batches] == list(range(1, 8))


def test_d5_size_is_rounded_up() -> None:
    assert Pacing.percent(15, timedelta(minutes=1)).batch_size(10) == 2  # ceil(1.5)
    assert batch_sizes(10, Pacing.percent(15, timedelta(minutes=1))) == [2] * 5
    assert batch_sizes(1, Pacing.percent(1, timedelta(minutes=1))) == [1]


def test_d6_size_pacing() -> None:
    pacing = Pacing.size(5000, timedelta(hours=1))
    assert batch_sizes(50_000, pacing) == [5000] * 10  # the seed's example: 10 sends, 1 h apart
    assert batch_sizes(12_000, pacing) == [5000, 5000, 2000]
    assert release_at(START, 10, pacing) == START + timedelta(hours=9)


def test_d7_no_pacing_releases_everything_at_start() -> None:
    assert batch_sizes(1234, None) == [1234]
    p = plan(1234, START, rate=10)
    assert len(p.batches) == 1 and p.batches[0].release_at == START
    assert p.finish_at == START + timedelta(seconds=123.4)


def test_empty_campaign() -> None:
    p = plan(0, START, pacing=Q15020)
    assert p.batches == () and p.expired == 0 and p.finish_at is None


def test_batch_index_matches_sizes() -> None:
    sizes = batch_sizes(1000, Q15020)
    indexes = [batch_of(i, 1000, Q15020) for i in range(1000)]
    assert [indexes.count(k) for k in range(1, 8)] == sizes


def test_d9_done_at_follows_the_rate_and_waits_for_the_previous_batch() -> None:
    # 150 at 0.1/s takes 1500 s = 25 min > the 20 min interval: batch 2 starts when 1 is done
    p = plan(300, START, pacing=Pacing.percent(50, timedelta(minutes=20)), rate=0.1)
    b1, b2 = p.batches
    assert b1.done_at == START + timedelta(minutes=25)
    assert b2.release_at == START + timedelta(minutes=20)
    assert b2.begin_at == b1.done_at and b2.done_at == START + timedelta(minutes=50)
    assert p.finish_at == b2.done_at


def test_d8_batches_released_at_or_after_the_deadline_expire() -> None:
    deadline = START + timedelta(minutes=60)  # batch 4 is released exactly at the deadline
    p = plan(1000, START, pacing=Q15020, rate=10, deadline=deadline)
    assert [b.expired for b in p.batches] == [False] * 3 + [True] * 4
    assert p.expired == 150 * 3 + 100
    json = p.as_json(ZoneInfo("America/Sao_Paulo"))
    assert json["expired"] == 550
    assert [b["expired"] for b in json["batches"]] == [False] * 3 + [True] * 4
    assert json["batches"][0] == {
        "index": 1,
        "size": 150,
        "open": 150,
        "release_at": "2026-11-23T09:00:00-03:00",
        "done_at": "2026-11-23T09:00:15-03:00",
        "expired": False,
    }
    assert set(json) >= {"batches", "finish_at", "expired"}


def test_d8_a_batch_cut_by_the_deadline_partly_expires() -> None:
    # 100 messages at 1/s starting at START: messages 0..29 start before START+30s
    p = plan(100, START, rate=1, deadline=START + timedelta(seconds=30))
    assert p.batches[0].sent == 30 and p.expired == 70 and not p.batches[0].expired


def test_rate_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rate"):
        plan(10, START, rate=0)


_PACINGS = st.one_of(
    st.none(),
    st.builds(
        Pacing.percent,
        st.integers(1, 99),
        st.integers(1, 999).map(lambda m: timedelta(minutes=m)),
    ),
    st.builds(
        Pacing.size, st.integers(500, 50_000), st.integers(1, 48).map(lambda h: timedelta(hours=h))
    ),
)


@settings(max_examples=300)
@given(
    recipients=st.integers(0, 2_000_000),
    pacing=_PACINGS,
    rate=st.floats(min_value=0.01, max_value=5000, allow_nan=False),
    deadline_minutes=st.none() | st.integers(-60, 60 * 24 * 30),
)
def test_property_schedule(
    recipients: int,
    pacing: Pacing | None,
    rate: float,
    deadline_minutes: int | None,
) -> None:
    deadline = START + timedelta(minutes=deadline_minutes) if deadline_minutes is not None else None
    p = plan(recipients, START, pacing=pacing, rate=rate, deadline=deadline)
    sizes = [b.size for b in p.batches]
    # sizes sum to N, and every batch but the last has the computed size
    assert sum(sizes) == recipients
    if sizes:
        assert all(
            s == (pacing.batch_size(recipients) if pacing else recipients) for s in sizes[:-1]
        )
        assert 0 < sizes[-1] <= sizes[0]
    for b in p.batches:
        # batch k released at start + (k-1)·interval
        interval = pacing.interval if pacing else timedelta(0)
        assert b.release_at == START + (b.index - 1) * interval
        # nothing released at or after the deadline is counted as sent
        if deadline is not None and b.release_at >= deadline:
            assert b.sent == 0 and b.expired
        # never sent after the deadline: the last counted message starts before it
        if deadline is not None and b.sent:
            last_start = b.begin_at + timedelta(seconds=(b.sent - 1) / rate)
            assert last_start < deadline + timedelta(microseconds=1)
        assert b.begin_at >= b.release_at and b.done_at >= b.begin_at
    assert p.expired == sum(b.size - b.sent for b in p.batches)
    assert 0 <= p.expired <= recipients
    if deadline is None:
        assert p.expired == 0
    if pacing is not None and pacing.kind == "percent" and recipients:
        assert len(sizes) == math.ceil(recipients / math.ceil(recipients * pacing.value / 100))


def campaign(**kw: object) -> Campaign:
    values: dict[str, object] = {
        "id": 1,
        "name": "x",
        "channel": "sms-long",
        "status": "sending",
        "start_at": START,
        "started_at": START,
        "pacing": Pacing.size(100, timedelta(minutes=10)),
        "recipients": 300,
        "audience": 300,
        "batches": 3,
    }
    values.update(kw)
    return Campaign(**values)  # type: ignore[arg-type]


def test_live_projection_batch_after_batch_at_the_rate_with_the_deadline() -> None:
    c = campaign()
    now = START + timedelta(minutes=12)
    left = {1: 0, 2: 40, 3: 100}
    # 40 at 1/s: until 12:12:40; batch 3 waits for 12:20, then 100 s: 12:21:40
    s = live(c, now, rate=1.0, open_by_batch=left)
    assert s.released == 2 and s.next_release is s.batches[2]
    assert s.finish_at == START + timedelta(minutes=21, seconds=40) and s.expired == 0
    late = live(campaign(deadline=START + timedelta(minutes=21)), now, rate=1.0, open_by_batch=left)
    assert late.expired == 40  # message k of batch 3 starts at 12:20 + k s; 60 start in time
    assert live(c, now, rate=1.0, open_by_batch={1: 0, 2: 0, 3: 0}).finish_at is None


def test_d7_a_pause_shifts_every_later_release() -> None:
    paused = campaign(paused_seconds=300, status="sending")
    s = live(paused, START + timedelta(minutes=12), rate=1.0)
    assert [b.release_at for b in s.batches] == [
        START + timedelta(minutes=5 + 10 * k) for k in range(3)
    ]
    assert s.released == 1
    # a pause still running stops the clock too
    running = campaign(status="paused", paused_since=START + timedelta(minutes=8))
    assert live(running, START + timedelta(minutes=30), rate=1.0).released == 1


def test_a_live_schedule_seen_at_its_start_is_the_plan() -> None:
    c = campaign(started_at=None, status="scheduled", deadline=START + timedelta(minutes=25))
    expected = plan(300, START, pacing=c.pacing, rate=0.5, deadline=c.deadline)
    assert live(c, START, rate=0.5) == expected

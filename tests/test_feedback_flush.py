"""The feedback writer's set-based flush (issue 16, goal 3; D17–D19): a batch of opens,
clicks and unsubscribes becomes one driver executemany per table and shape of change, and
stores exactly what the per-row statements stored — times, JSON details, counters — on
SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from engine.events import Signal
from engine.store import Store
from engine.store import schema as t
from tests.test_results_export import NOW, _fill


def test_a_batch_of_signals_is_stored_as_per_row_writes_would(store: Store) -> None:
    _fill(store, n=12)
    at = NOW + timedelta(hours=1, microseconds=5)
    later = at + timedelta(minutes=1)
    with store.write() as c:  # a clean slate for the counted columns
        c.execute(sa.update(t.deliveries).values(opened_at=None, clicked_at=None))
        c.execute(sa.delete(t.events))
    signals = [
        Signal("open", at, "tracking", delivery_id=1, detail={"agent": "Mozilla ção"}),
        Signal("open", later, "tracking", delivery_id=1),  # a second open: an event only
        Signal("click", at, "tracking", delivery_id=2, detail={"link": 0}),
        Signal("click", later, "tracking", delivery_id=2, detail={"link": 1}),
        Signal("click", at, "tracking", delivery_id=3, detail={"link": 1}),
        Signal("open", at, "tracking", delivery_id=999),  # unknown
        Signal("open", at, "ses", delivery_id=4, dedupe_key="k1"),
        Signal("open", later, "ses", delivery_id=4, dedupe_key="k1"),  # its duplicate
    ]
    applied = store.feedback.apply(signals)
    assert [a.unknown for a in applied] == [False] * 5 + [True, False, False]
    assert [a.duplicate for a in applied] == [False] * 7 + [True]
    with store.read() as c:
        stored = c.execute(
            sa.select(t.events.c.kind, t.events.c.delivery_id, t.events.c.at, t.events.c.detail,
                      t.events.c.dedupe_key, t.events.c.campaign_id)
            .order_by(t.events.c.id)
        ).all()  # fmt: skip
        marks = {
            r.id: (r.opened_at, r.clicked_at)
            for r in c.execute(sa.select(t.deliveries).where(t.deliveries.c.id <= 4))
        }
        opened, clicked, clicks = c.execute(
            sa.select(t.campaigns.c.opened, t.campaigns.c.clicked, t.campaigns.c.clicks)
        ).one()
        touched = dict(
            c.execute(
                sa.select(t.contacts.c.id, t.contacts.c.last_interaction_at).where(
                    t.contacts.c.id.in_([2, 3])
                )
            ).all()
        )
    assert [(e.kind, e.delivery_id) for e in stored] == [
        ("open", 1), ("open", 1), ("click", 2), ("click", 2), ("click", 3), ("open", 4)
    ]  # fmt: skip
    assert stored[0].at == at and stored[0].detail == {"agent": "Mozilla ção"}
    assert stored[3].detail == {"link": 1} and stored[5].dedupe_key == "k1"
    assert {e.campaign_id for e in stored} == {1}
    assert marks[1] == (at, None) and marks[2] == (at, at) and marks[3] == (at, at)
    assert marks[4] == (at, None)
    assert (opened, clicked, clicks) == (4, 2, 3)
    assert touched == {2: later, 3: at}
    # what the flush wrote compares with what SQLAlchemy writes (the same stored text)
    with store.read() as c:
        n = c.execute(
            sa.select(sa.func.count())
            .select_from(t.deliveries)
            .where(t.deliveries.c.opened_at == at)
        ).scalar()
    assert n == 4


def test_equal_details_of_other_types_or_order_keep_their_own_json(store: Store) -> None:
    """The flush serialises a flat detail once per distinct value: 1, True, 1.0 and "1" are
    different details (different JSON), and so are the same items in another order; a
    nested detail is serialised as it is."""
    _fill(store, n=12)
    with store.write() as c:
        c.execute(sa.delete(t.events))
    details: list[dict[str, object]] = [
        {"link": 1},
        {"link": True},
        {"link": 1.0},
        {"link": "1"},
        {"link": 1},
        {"a": "x", "b": "y"},
        {"b": "y", "a": "x"},
        {"link": 1, "url": None},
        {"nested": {"k": [1, 2]}},
        {},
    ]
    at = NOW + timedelta(hours=1)
    store.feedback.apply([Signal("open", at, "tracking", delivery_id=1, detail=d) for d in details])
    with store.read() as c:
        stored = [r[0] for r in c.execute(sa.select(t.events.c.detail).order_by(t.events.c.id))]
        raw = [
            r[0]
            for r in c.exec_driver_sql("SELECT CAST(detail AS TEXT) FROM events ORDER BY id").all()
        ]
    assert stored == details
    assert [type(d.get("link")) for d in stored[:5]] == [int, bool, float, str, int]
    if store.dialect == "sqlite":  # PostgreSQL's jsonb orders the keys itself
        assert list(stored[6]) == ["b", "a"]  # the order as given
    assert len(set(raw[:4])) == 4 and raw[0] == raw[4]

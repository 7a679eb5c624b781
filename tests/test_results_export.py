"""The results file's fast path (D17, E2): ``write_results`` writes from plain tuples and
formats times through a per-minute cache; it must give exactly the cells of ``result_row``
over ``RecipientResult`` (what the terminal UI and ``campaign results`` show), on SQLite and
PostgreSQL, in zones with half-hour offsets and in years whose offsets had seconds."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from engine.csvsafe import SafeWriter
from engine.publish.results import RESULT_COLUMNS, LocalTimes, result_row, write_results
from engine.store import Store
from engine.store import schema as t

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMES = [
    NOW,
    NOW + timedelta(microseconds=1),
    datetime(2026, 2, 22, 2, 59, 59, 999999, tzinfo=UTC),  # Sao Paulo's last DST change
    datetime(1900, 1, 1, 3, 6, 27, tzinfo=UTC),  # local mean time: -3:06:28
    datetime(2026, 10, 25, 0, 59, 59, tzinfo=UTC),  # Lisbon's DST ending
    datetime(2026, 10, 25, 1, 0, 0, tzinfo=UTC),
]


def _fill(store: Store, n: int = 60) -> None:
    with store.write() as c:
        c.execute(sa.insert(t.wallets), [{"id": 1, "code": "W1", "created_at": NOW}])
        c.execute(
            sa.insert(t.campaigns),
            [
                {
                    "id": 1,
                    "name": "c",
                    "wallet_id": 1,
                    "channel": "email",
                    "account": "email",
                    "status": "sending",
                    "priority": 0,
                    "start_at": NOW,
                    "recipients": n,
                    "batches": 1,
                    "released_batches": 1,
                    "paused_seconds": 0,
                    "sent": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                    "settings": {},
                }
            ],
        )
        c.execute(
            sa.insert(t.links),
            [{"campaign_id": 1, "position": p, "url": f"https://x.example/{p}"} for p in (0, 1)],
        )
        names = ["Ana", "=1+1", "\x07bell", "tab\tin", "", None, "-5", "Zé\x85"]
        c.execute(
            sa.insert(t.contacts),
            [
                {
                    "id": i,
                    "identity": f"id{i}",
                    "external_key": ["", None, f"+{i}", f"k{i}"][i % 4],
                    "name": names[i % len(names)],
                    "fields": {},
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i in range(1, n)
            ],
        )
        statuses = ["pending", "sent", "delivered", "failed", "bounced", "cancelled"]
        c.execute(
            sa.insert(t.deliveries),
            [
                {
                    "id": i,
                    "campaign_id": 1,
                    "contact_id": i if i < n else None,
                    "position": n - i,  # not the id order
                    "batch": 1,
                    "address": f"@a{i}" if i % 7 == 0 else f"a{i}@x.example",
                    "status": statuses[i % len(statuses)],
                    "attempts": 1,
                    "error": ["", None, "=caixa cheia", "motivo\x1b[0m"][i % 4],
                    "provider_status": None if i % 2 else "delivered",
                    "sent_at": TIMES[i % len(TIMES)],
                    "delivered_at": TIMES[(i + 1) % len(TIMES)] if i % 3 else None,
                    "opened_at": TIMES[(i + 2) % len(TIMES)] if i % 4 else None,
                    "clicked_at": TIMES[(i + 3) % len(TIMES)] if i % 5 == 0 else None,
                    "complained_at": TIMES[i % len(TIMES)] if i % 11 == 0 else None,
                    "unsubscribed": [None, "campaign", "all"][i % 3],
                }
                for i in range(1, n + 1)
            ],
        )
        c.execute(
            sa.insert(t.events),
            [
                {
                    "at": NOW,
                    "kind": "click",
                    "campaign_id": 1,
                    "delivery_id": i,
                    "origin": "tracking",
                    "detail": {"link": k % 3},  # link 2 is unknown
                }
                for i in range(5, n + 1, 5)
                for k in range(i % 4 + 1)
            ],
        )


@pytest.mark.parametrize("zone", ["America/Sao_Paulo", "Asia/Kolkata", "Europe/Lisbon", "UTC"])
def test_results_file_is_the_cells_of_result_row(store: Store, zone: str) -> None:
    _fill(store)
    tz = ZoneInfo(zone)
    expected = io.StringIO(newline="")
    reference = SafeWriter(expected)
    reference.writerow(RESULT_COLUMNS)
    for chunk in store.results.all(1, chunk=7):
        for r in chunk:
            reference.writerow(result_row(r, tz))
    got = io.StringIO(newline="")
    assert write_results(store, 1, got, tz) == 60
    assert got.getvalue() == expected.getvalue()
    assert "'=1+1" in got.getvalue() and "\ufffd" in got.getvalue()


def test_local_times_match_a_conversion_per_value() -> None:
    for zone in ("America/Sao_Paulo", "Asia/Kathmandu", "Australia/Lord_Howe"):
        tz = ZoneInfo(zone)
        when = LocalTimes(tz)
        start = datetime(1890, 1, 1, tzinfo=UTC)
        for step in range(0, 400_000, 7):
            at = start + timedelta(hours=step * 3.3, seconds=step % 61)
            stamp = at.replace(tzinfo=None).isoformat(sep=" ")
            assert when(stamp) == at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S"), stamp
    assert LocalTimes(UTC)(None) == ""

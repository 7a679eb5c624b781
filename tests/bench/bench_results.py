"""Results export benchmark (issue 16, goal 5): a campaign of 1,000,000 recipients (BENCH_ROWS)
exported as its results file (D17) by ``export_results``, against a bare reference in the same
run: one SQL query (deliveries, contacts and the clicked URLs grouped per delivery) read by the
``sqlite3`` driver and written with ``csv.writer``, formatting the times in the same zone. The
two files must be byte-identical; figures are rows per second, the median of 3 paired runs,
and the ratio (goal: ≥ 0.6×).
"""

from __future__ import annotations

import csv
import json
import sqlite3
import statistics
import time
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from engine.clock import TestClock
from engine.publish.results import ENCODING, RESULT_COLUMNS, export_results
from engine.store import Store
from engine.store import schema as t
from engine.store.results import STATUS_REASONS  # D17: why each one was not sent (data, not work)
from tests.bench.conftest import rows

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
TZ = ZoneInfo("America/Sao_Paulo")
ROUNDS = 3
URLS = ("https://exemplo.com.br/a", "https://exemplo.com.br/b?x=1", "https://loja.example/c")


def _stamp(at: datetime) -> str:
    """A time as SQLAlchemy's SQLite dialect stores it (naive UTC, microseconds)."""
    return at.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def build(folder: Path, n: int) -> Path:
    """A SQLite store holding one campaign of ``n`` recipients in every state."""
    db = folder / "results.db"
    store = Store.open(f"sqlite:///{db}", clock=TestClock(NOW))
    with store.write() as c:
        c.execute(sa.insert(t.wallets), [{"id": 1, "code": "W1", "created_at": NOW}])
        c.execute(
            sa.insert(t.campaigns),
            [
                {
                    "id": 1,
                    "name": "bench",
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
            [{"campaign_id": 1, "position": i, "url": u} for i, u in enumerate(URLS)],
        )
    store.engine.dispose()
    raw = sqlite3.connect(db)
    created = _stamp(NOW)
    contacts = []
    deliveries = []
    events = []
    for i in range(1, n + 1):
        name = f"Cliente {i}" if i % 97 else f'=HYPERLINK("x")\x07{i}'
        contacts.append((i, f"id{i}", f"{i:011d}" if i % 3 else None, name, "{}", created, created))
        kind = i % 20
        sent = NOW - timedelta(seconds=(n - i) * 0.013)
        status = "pending" if kind == 0 else "failed" if kind == 1 else "delivered"
        error = "caixa cheia" if kind == 1 else None
        done = status == "delivered"
        opened = done and kind % 4 == 0
        clicked = done and kind in (4, 8)
        deliveries.append(
            (
                i,
                1,
                i,
                i - 1,
                1,
                f"cliente{i}@exemplo.com.br",
                status,
                1,
                error,
                "delivered" if done else None,
                _stamp(sent) if done else None,
                _stamp(sent + timedelta(seconds=2)) if done else None,
                _stamp(sent + timedelta(minutes=7, seconds=i % 60)) if opened else None,
                _stamp(sent + timedelta(minutes=9)) if clicked else None,
                "campaign" if i % 501 == 0 else "all" if i % 1003 == 0 else None,
            )
        )
        if clicked:
            for k in range(1 + i % 3):
                events.append(
                    (_stamp(sent), "click", 1, i, "tracking", json.dumps({"link": (i + k) % 3}))
                )
    raw.executemany(
        "INSERT INTO contacts (id, identity, external_key, name, fields, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        contacts,
    )
    raw.executemany(
        "INSERT INTO deliveries (id, campaign_id, contact_id, position, batch, address, status,"
        " attempts, error, provider_status, sent_at, delivered_at, opened_at, clicked_at,"
        " unsubscribed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        deliveries,
    )
    raw.executemany(
        "INSERT INTO events (at, kind, campaign_id, delivery_id, origin, detail)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        events,
    )
    raw.commit()
    raw.close()
    return db


BARE_QUERY = """
SELECT coalesce(c.external_key, c.identity), c.name, d.address, d.status, d.provider_status,
       d.sent_at, d.delivered_at, d.opened_at, d.clicked_at, d.complained_at, d.unsubscribed,
       d.error, k.urls
FROM deliveries d
LEFT JOIN contacts c ON c.id = d.contact_id
LEFT JOIN (
    SELECT e.delivery_id AS id,
           json_group_array(coalesce(l.url, 'link ' || json_extract(e.detail, '$.link'))) AS urls
    FROM (SELECT * FROM events WHERE campaign_id = 1 AND kind = 'click' ORDER BY id) e
    LEFT JOIN links l ON l.campaign_id = 1 AND l.position = json_extract(e.detail, '$.link')
    GROUP BY e.delivery_id
) k ON k.id = d.id
WHERE d.campaign_id = 1
ORDER BY d.position
"""


def bare_export(db: Path, target: Path) -> int:
    """The reference: one query, the driver's tuples, csv.writer, times formatted (cached)."""

    @lru_cache(maxsize=65536)
    def when(stamp: str | None) -> str:
        if stamp is None:
            return ""
        at = datetime.fromisoformat(stamp).replace(tzinfo=UTC).astimezone(TZ)
        return at.strftime("%Y-%m-%d %H:%M:%S")

    def safe(text: str | None) -> str:
        text = text or ""
        if not text.isprintable():
            starts = text[:1] in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f" or (
                "\x10" <= text[:1] <= "\x1f" or "\x7f" <= text[:1] <= "\x9f"
            )
            text = "".join(
                "\ufffd"
                if ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f"
                or "\x10" <= ch <= "\x1f"
                or "\x7f" <= ch <= "\x9f"
                else ch
                for ch in text
            )
            if starts:
                return "'" + text
        return "'" + text if text.startswith(("=", "+", "-", "@", "\t", "\r")) else text

    raw = sqlite3.connect(db)
    n = 0
    with target.open("w", encoding=ENCODING, newline="") as handle:
        out = csv.writer(handle, delimiter=";", lineterminator="\r\n")
        out.writerow(RESULT_COLUMNS)
        for code, name, addr, status, pstat, s, d, o, k, comp, unsub, err, urls in raw.execute(
            BARE_QUERY
        ):
            found = json.loads(urls) if urls else []
            out.writerow(
                (
                    safe(code),
                    safe(name),
                    safe(addr),
                    status,
                    safe(pstat),
                    when(s),
                    when(d),
                    when(o),
                    when(k),
                    len(found),
                    safe(" ".join(dict.fromkeys(found))),
                    ""
                    if status in ("sent", "delivered")
                    else safe(err or STATUS_REASONS.get(status, f"not sent ({status})")),
                    "sim" if unsub in ("campaign", "all") else "nao",
                    "sim" if unsub == "all" else "nao",
                    when(comp),
                )
            )
            n += 1
    raw.close()
    return n


def bench_results_export(tmp_path: Path) -> None:
    n = rows(1_000_000)
    started = time.perf_counter()
    db = build(tmp_path, n)
    took = time.perf_counter() - started
    print(f"\nResults export: {n:,} recipients (SQLite), built in {took:.1f} s")
    store = Store.open(f"sqlite:///{db}", clock=TestClock(NOW))
    ours: list[float] = []
    bare: list[float] = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        written = bare_export(db, tmp_path / "bare.csv")
        bare.append(written / (time.perf_counter() - started))
        started = time.perf_counter()
        written = export_results(store, 1, tmp_path / "ours.csv", TZ)
        ours.append(written / (time.perf_counter() - started))
        assert written == n
        assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "bare.csv").read_bytes()
    a, b = statistics.median(ours), statistics.median(bare)
    runs = ", ".join(f"{x:,.0f}" for x in ours)
    print(f"  export_results          {a:10,.0f} rows/s (median of {ROUNDS}; runs {runs})")
    print(f"  bare query + csv.writer {b:10,.0f} rows/s (byte-identical file)")
    print(f"  ratio                   {a / b:10.2f}× (goal ≥ 0.6×)")

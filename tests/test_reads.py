"""``engine.reads``: the read-only queries of ``disparo campaigns`` without SQLAlchemy (issue
16, goal 7). The compiled module is what the store's statements compile to today; the reader
gives the very campaigns the store does, on SQLite and PostgreSQL, for campaigns of every
status; the command prints the same both ways; and a store not at head (or no store) is left
to the store's own path, which migrates or explains."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.campaign import STATUSES
from engine.cli.context import AppContext
from engine.reads import QuickReader, quick_head
from engine.store import Store
from engine.store import schema as t
from engine.store.compiled_reads import DEFAULT_OUTPUT, REGENERATE, render_reads

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def test_the_committed_queries_are_what_the_statements_compile_to() -> None:
    assert DEFAULT_OUTPUT.read_text(encoding="utf-8") == render_reads(), (
        f"engine/reads_sql.py is out of date: run `{REGENERATE}` and commit it"
    )


def test_the_generator_checks_and_writes(tmp_path: Path) -> None:
    out = tmp_path / "reads_sql.py"
    command = [sys.executable, "-m", "engine.store.compiled_reads"]
    stale = subprocess.run([*command, str(out), "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and REGENERATE in stale.stderr
    subprocess.run([*command, str(out)], check=True, capture_output=True)
    assert out.read_text(encoding="utf-8") == render_reads()
    assert subprocess.run([*command, str(out), "--check"]).returncode == 0


def _campaigns(store: Store) -> None:
    """A campaign of every status, with and without wallet, pacing, deadline, reason…"""
    with store.write() as c:
        c.execute(sa.insert(t.wallets), [{"id": 1, "code": "W1", "created_at": NOW}])
        rows: list[dict[str, Any]] = []
        for i, status in enumerate(STATUSES, start=1):
            created = NOW - timedelta(hours=i)
            rows.append(
                {
                    "id": i,
                    "name": f"mailing_231126_{i:03d}_cW1_smslong — ação",
                    "wallet_id": 1 if i % 2 else None,
                    "channel": "sms-long" if i % 3 else "email",
                    "account": None if i == 1 else f"acct{i % 3}",
                    "origin": "file" if i % 2 else "api",
                    "status": status,
                    "status_reason": f"why {status}" if status in ("held", "paused") else None,
                    "priority": i % 3,
                    "start_at": created,
                    "started_at": created if status != "scheduled" else None,
                    "deadline": NOW + timedelta(hours=i) if i % 2 == 0 else None,
                    "finished_at": NOW if status in ("completed", "cancelled", "expired") else None,
                    "pacing_kind": ("percent", "size", None)[i % 3],
                    "pacing_value": (10, 500, None)[i % 3],
                    "pacing_interval_s": (3600, 600, None)[i % 3],
                    "exclude_recent_hours": 24 if i == 3 else None,
                    "recipients": 1000 * i,
                    "audience": 1000 * i,
                    "batches": 10,
                    "released_batches": i % 10,
                    "paused_seconds": 30 * i,
                    "paused_since": NOW if status == "paused" else None,
                    "sent": 100 * i,
                    "bounced": i,
                    "clicks": 2 * i,
                    "created_at": created,
                    "updated_at": NOW,
                    "settings": {"k": i},
                }
            )
        c.execute(sa.insert(t.campaigns), rows)


def test_the_reader_gives_what_the_store_gives(store: Store, db_url: str) -> None:
    _campaigns(store)
    reader = QuickReader.open(db_url)
    assert reader is not None, "a store at head is read without SQLAlchemy"
    try:
        assert reader.recent_campaigns(50) == store.campaigns.recent(50)
        assert reader.recent_campaigns(3) == store.campaigns.recent(3)
        for status in STATUSES:
            found = reader.recent_campaigns(50, status=status)
            assert found == store.campaigns.recent(50, status=status)
            assert [c.status for c in found] == [status]
    finally:
        reader.close()


def test_the_command_prints_the_same_both_ways(
    store: Store, db_url: str, tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _campaigns(store)
    config = tmp_path / "disparo.toml"
    config.write_text(f'[engine]\ndatabase_url = "{db_url}"\n', encoding="utf-8")
    used: list[int] = []
    recent = QuickReader.recent_campaigns

    def spy(self: QuickReader, limit: int, *, status: str | None = None) -> Any:
        used.append(limit)
        return recent(self, limit, status=status)

    monkeypatch.setattr(QuickReader, "recent_campaigns", spy)
    commands = [
        ["campaigns"],
        ["campaigns", "--json"],
        ["campaigns", "--limit", "3"],
        *(["campaigns", "--status", s, "--json"] for s in STATUSES),
        ["campaigns", "--status", "held"],
    ]
    quick = [run_cli("--config", str(config), *args) for args in commands]
    assert len(used) == len(commands), "the quick path served every command"
    monkeypatch.setattr(AppContext, "quick_reader", property(lambda self: None))
    slow = [run_cli("--config", str(config), *args) for args in commands]
    assert len(used) == len(commands)
    for args, q, s in zip(commands, quick, slow, strict=True):
        assert q.exit_code == s.exit_code == 0, (args, q.output, s.output)
        assert q.output == s.output, args
    assert "why held" in quick[-1].output


def test_a_store_not_at_head_is_left_to_the_store(store: Store, db_url: str) -> None:
    assert quick_head() is not None
    with store.write() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num = '0001_older'"))
    assert QuickReader.open(db_url) is None


def test_no_database_or_an_unknown_url_is_left_to_the_store(tmp_path: Path) -> None:
    assert QuickReader.open(f"sqlite:///{tmp_path / 'none.db'}") is None
    assert QuickReader.open("sqlite://") is None
    assert QuickReader.open("mysql://u@h/db") is None
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    assert QuickReader.open(f"sqlite:///{empty}") is None  # no alembic_version: never migrated


ACCOUNTS = {"acct0": "email", "acct1": "sms-long", "acct2": "email"}


def _accounts(store: Store, now: datetime) -> None:
    """Accounts in every guard and breaker state, with sends, bounces (one delivery bounced
    twice), complaints, errors by reason and deliveries in flight, inside and outside 24 h."""
    _campaigns(store)
    with store.write() as c:
        for row in [
            {"name": "acct0", "channel": "email", "guard_state": "ok", "updated_at": now},
            {
                "name": "acct1",
                "channel": "sms-long",
                "guard_state": "paused",
                "paused_at": now - timedelta(hours=1),
                "paused_until": now + timedelta(hours=1),
                "pause_reason": "bounce rate 7 % over 5 % (D14)",
                "checked_at": now,
                "sent_24h": 300,
                "bounces_24h": 21,
                "updated_at": now,
            },
            {
                "name": "acct2",
                "channel": "email",
                "guard_state": "paused",
                "override_by": "ana",
                "override_reason": "known list",
                "override_at": now,
                "breaker_state": "open",
                "breaker_reason": "421 busy",
                "breaker_failures": 5,
                "breaker_opened_at": now - timedelta(minutes=3),
                "breaker_retry_at": now + timedelta(minutes=2),
                "bucket_tokens": 2.5,
                "bucket_at": now,
                "updated_at": now,
            },
        ]:  # one by one: each row has its own columns
            c.execute(sa.insert(t.accounts).values(**row))  # fmt: skip
        events: list[dict[str, Any]] = []
        for i in range(40):
            account = f"acct{i % 3}"
            at = now - timedelta(hours=(i % 30))  # some older than 24 h
            kind = ("sent", "sent", "bounced", "complaint")[i % 4]
            events.append(
                {"at": at, "kind": kind, "campaign_id": 3, "delivery_id": 100 + i // 8,
                 "account": account, "origin": "engine", "detail": {}}
            )  # fmt: skip
        c.execute(sa.insert(t.events), events)
        c.execute(
            sa.insert(t.delivery_errors),
            [
                {"campaign_id": cid, "account": f"acct{cid % 3}", "outcome": outcome,
                 "reason": reason, "scope": scope, "count": n,
                 "first_at": now - timedelta(hours=h + 1), "last_at": now - timedelta(hours=h)}
                for cid, outcome, reason, scope, n, h in [
                    (3, "retry", "421 try later", "account", 7, 1),
                    (6, "retry", "421 try later", "account", 2, 3),
                    (3, "bounced", "550 <address> unknown", "delivery", 9, 2),
                    (4, "failed", "timeout", "account", 1, 30),
                    (5, "failed", "invalid number", "delivery", 4, 5),
                    (2, "retry", "throttled", "account", 12, 0),
                ]
            ],
        )  # fmt: skip
        c.execute(
            sa.insert(t.deliveries),
            [
                {"campaign_id": cid, "position": p, "batch": 1, "address": f"a{cid}.{p}@x.com",
                 "status": status, "attempts": 1,
                 "lease_until": now + timedelta(minutes=5) if status == "claimed" else None}
                for cid in (3, 4, 5)  # sending, paused, held
                for p, status in enumerate(("claimed", "claimed", "pending", "sent"))
            ],
        )  # fmt: skip


def test_the_reader_gives_the_accounts_the_store_gives(store: Store, db_url: str) -> None:
    now = datetime.now(UTC)
    _accounts(store, now)
    reader = QuickReader.open(db_url)
    assert reader is not None
    try:
        assert reader.account_states() == store.accounts.states()
        assert reader.in_flight() == store.campaigns.in_flight()
        assert sum(reader.in_flight().values()) > 0
        for since in (now - timedelta(hours=24), now - timedelta(hours=2), now):
            for name in (*ACCOUNTS, "unknown"):
                assert reader.account_counts(name, since) == store.accounts.counts(name, since)
            assert reader.account_errors(since=since, limit=5) == store.errors.for_accounts(
                since=since, limit=5
            )
        assert reader.account_errors(since=now - timedelta(days=2), limit=1) == (
            store.errors.for_accounts(since=now - timedelta(days=2), limit=1)
        )
        assert reader.account_counts("acct1", now - timedelta(hours=24)) != (0, 0, 0)
    finally:
        reader.close()


def _accounts_config(tmp_path: Path, db_url: str, names: dict[str, str]) -> Path:
    config = tmp_path / "disparo.toml"
    text = f'[engine]\ndatabase_url = "{db_url}"\n'
    for name, channel in names.items():
        text += f'\n[accounts.{name}]\nchannel = "{channel}"\nsandbox = true\n'
        text += 'from_address = "a@empresa.com.br"\n' if channel == "email" else ""
        text += 'from_number = "+5511900000000"\n' if channel == "sms-long" else ""
    config.write_text(text, encoding="utf-8")
    return config


def test_accounts_prints_the_same_both_ways(
    store: Store,
    db_url: str,
    tmp_path: Path,
    run_cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    fixed_now: datetime,
) -> None:
    _accounts(store, fixed_now)
    config = _accounts_config(tmp_path, db_url, ACCOUNTS)
    used: list[str] = []
    in_flight = QuickReader.in_flight

    def spy(self: QuickReader) -> Any:
        used.append("quick")
        return in_flight(self)

    monkeypatch.setattr(QuickReader, "in_flight", spy)
    commands = [["accounts"], ["accounts", "--json"]]
    quick = [run_cli("--config", str(config), *args) for args in commands]
    assert used == ["quick", "quick"], "the quick path served both"
    with monkeypatch.context() as m:
        m.setattr(AppContext, "quick_reader", property(lambda self: None))
        slow = [run_cli("--config", str(config), *args) for args in commands]
    for args, q, s in zip(commands, quick, slow, strict=True):
        assert q.exit_code == s.exit_code == 0, (args, q.output, s.output)
        assert q.output == s.output, args
    assert "421 busy" in quick[1].output and "known list" in quick[1].output
    # an account configured since the last sync has no row yet: the store's path adds it
    config = _accounts_config(tmp_path, db_url, {**ACCOUNTS, "acct9": "email"})
    done = run_cli("--config", str(config), "accounts", "--json")
    assert done.exit_code == 0, done.output
    assert used == ["quick", "quick"]
    assert "acct9" in store.accounts.states()


def _batches(store: Store, now: datetime) -> None:
    """Campaign 3 (sending, 10 % an hour) with batches done, half sent, untouched, and
    retries waiting with their reasons; campaign 5 (held) with one batch half sent."""
    _accounts(store, now)
    rows: list[dict[str, Any]] = []
    for batch, statuses in {
        2: ["sent"] * 10,
        3: ["sent"] * 4 + ["pending"] * 6,
        4: ["pending"] * 10,
        5: ["delivered", "bounced", "pending", "pending", "claimed"] * 2,
    }.items():
        for p, status in enumerate(statuses):
            retry = status == "pending" and p % 2 == 0 and batch == 5
            rows.append(
                {"campaign_id": 3, "position": 100 * batch + p, "batch": batch,
                 "address": f"b{batch}.{p}@x.com", "status": status, "attempts": 1,
                 "lease_until": now + timedelta(minutes=5) if status == "claimed" else None,
                 "next_attempt_at": now + timedelta(minutes=p) if retry else None,
                 "error": f"421 try <b{p}@x.com> later" if retry else None}
            )  # fmt: skip
    with store.write() as c:
        c.execute(sa.insert(t.deliveries), rows)


@pytest.fixture
def fixed_now(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """The CLI's clock stopped (a schedule is projected from now)."""
    from engine.clock import TestClock

    now = datetime.now(UTC).replace(microsecond=0)
    monkeypatch.setattr("engine.cli.context.RealClock", lambda: TestClock(now))
    return now


def test_the_reader_gives_the_campaign_the_store_gives(store: Store, db_url: str) -> None:
    from engine.config import load_config
    from engine.plugins import load_plugins
    from engine.schedule import DEFAULT_RATE, live
    from engine.sending.status import campaign_schedule, campaign_trouble

    now = datetime.now(UTC)
    _batches(store, now)
    reader = QuickReader.open(db_url)
    assert reader is not None
    try:
        assert reader.campaign(999) is None
        for i in range(1, len(STATUSES) + 1):
            c = reader.campaign(i)
            assert c is not None and c == store.campaigns.get(i)
            for cap in (1, 3, 5_000):
                assert reader.open_by_batch(c, cap=cap) == store.views.open_by_batch(c, cap=cap)
            schedule = campaign_schedule(store, load_config(None, plugins=load_plugins()), c, now)
            quick = live(c, now, rate=DEFAULT_RATE, open_by_batch=reader.open_by_batch(c))
            assert quick == schedule
            assert vars(reader.trouble(c)) == vars(campaign_trouble(store, c))
        assert reader.waiting(3, limit=5), "retries wait with their reasons"
        assert reader.campaign_errors(3, limit=50)
    finally:
        reader.close()


def test_campaign_show_prints_the_same_both_ways(
    store: Store,
    db_url: str,
    tmp_path: Path,
    run_cli: Any,
    monkeypatch: pytest.MonkeyPatch,
    fixed_now: datetime,
) -> None:
    _batches(store, fixed_now)
    config = _accounts_config(tmp_path, db_url, ACCOUNTS)
    used: list[int] = []
    campaign = QuickReader.campaign

    def spy(self: QuickReader, campaign_id: int) -> Any:
        used.append(campaign_id)
        return campaign(self, campaign_id)

    monkeypatch.setattr(QuickReader, "campaign", spy)
    commands = [
        ["campaign", "show", str(i), *json]
        for i in (*range(1, len(STATUSES) + 1), 999)
        for json in ((), ("--json",))
    ]
    quick = [run_cli("--config", str(config), *args) for args in commands]
    assert len(used) == len(commands), "the quick path served every command"
    monkeypatch.setattr(AppContext, "quick_reader", property(lambda self: None))
    slow = [run_cli("--config", str(config), *args) for args in commands]
    for args, q, s in zip(commands, quick, slow, strict=True):
        assert q.exit_code == s.exit_code, (args, q.output, s.output)
        assert q.output == s.output, args
    assert quick[-1].exit_code == 1 and "no campaign 999" in quick[-1].output
    assert "421 try <address> later" in quick[5].output  # campaign 3, --json

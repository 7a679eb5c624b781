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

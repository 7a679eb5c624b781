"""The store on SQLite and on a real PostgreSQL: migrations, every table, transactions."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from engine.clock import TestClock
from engine.store import Store, migrate
from engine.store import schema as t


def test_migrations_build_exactly_the_schema(store: Store) -> None:
    assert store.revision() == migrate.head_revision()
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), t.metadata)
    assert diff == []


def test_upgrade_is_idempotent(store: Store) -> None:
    before, after = store.upgrade()
    assert before == after == migrate.head_revision()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path, clock: TestClock) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}", clock=clock)
    with store.read() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(sa.exc.IntegrityError), store.write() as conn:
        conn.execute(
            sa.insert(t.wallet_members).values(
                wallet_id=999, contact_id=999, added_at=store.clock.now()
            )
        )


def test_a_failed_write_leaves_nothing(store: Store) -> None:
    now = store.clock.now()
    with pytest.raises(RuntimeError), store.write() as conn:
        conn.execute(sa.insert(t.wallets).values(code="X", created_at=now))
        raise RuntimeError("crash mid-transaction")
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(t.wallets)).scalar() == 0


def test_every_table_round_trips(store: Store) -> None:
    now = store.clock.now()
    with store.write() as c:
        wallet = c.execute(
            sa.insert(t.wallets).values(code="BRAD", created_at=now)
        ).inserted_primary_key[0]
        contact = c.execute(
            sa.insert(t.contacts).values(
                identity="cpf:123",
                external_key="123",
                name="Ana",
                email="ana@example.com",
                phone="+5511998877665",
                fields={"cidade": "São Paulo", "n": 1},
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        c.execute(sa.insert(t.contact_tags).values(contact_id=contact, tag="Régua 60 dias"))
        c.execute(
            sa.insert(t.wallet_members).values(wallet_id=wallet, contact_id=contact, added_at=now)
        )
        c.execute(
            sa.insert(t.suppressions).values(
                kind="email",
                address="x@example.com",
                origin="bounce",
                created_by="mailbox",
                created_at=now,
            )
        )
        file_id = c.execute(
            sa.insert(t.files).values(
                source="drop",
                path="a.csv",
                dedupe_key="a.csv:abc",
                size=10,
                mtime=now,
                sha256="ab" * 32,
                outcome="imported",
                created_at=now,
            )
        ).inserted_primary_key[0]
        c.execute(
            sa.insert(t.remote_files).values(
                source="drop",
                path="a.csv",
                size=10,
                mtime=now,
                status="imported",
                file_id=file_id,
                first_seen_at=now,
                last_seen_at=now,
            )
        )
        mailing = c.execute(
            sa.insert(t.mailings).values(
                file_id=file_id,
                source="drop",
                name="a.csv",
                file_date=date(2026, 11, 23),
                sequence=1,
                wallet_id=wallet,
                description="d",
                params={"h": True},
                created_at=now,
            )
        ).inserted_primary_key[0]
        c.execute(
            sa.insert(t.rejected_rows).values(
                file_id=file_id,
                line=3,
                address="ana@",
                code="bad-email",
                rule="T5",
                reason="not an e-mail address",
                reason_pt="não é um endereço de e-mail",
            )
        )
        campaign = c.execute(
            sa.insert(t.campaigns).values(
                mailing_id=mailing,
                file_id=file_id,
                name="c",
                wallet_id=wallet,
                channel="email",
                status="scheduled",
                start_at=now,
                deadline=now + timedelta(hours=1),
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        delivery = c.execute(
            sa.insert(t.deliveries).values(
                campaign_id=campaign,
                contact_id=contact,
                position=0,
                batch=1,
                address="ana@example.com",
                status="sent",
                provider_status="delivered",
                delivered_at=now,
                opened_at=now,
                unsubscribed="campaign",
            )
        ).inserted_primary_key[0]
        c.execute(sa.insert(t.links).values(campaign_id=campaign, position=0, url="https://x"))
        c.execute(
            sa.insert(t.events).values(
                at=now,
                kind="sent",
                campaign_id=campaign,
                delivery_id=delivery,
                origin="smtp",
                detail={"code": 250},
                dedupe_key="smtp:1",
            )
        )
        c.execute(sa.insert(t.accounts).values(name="avisos", channel="email", updated_at=now))
        c.execute(
            sa.insert(t.engines).values(
                node="host:1:abc",
                host="host",
                pid=1,
                version="0.1.0",
                mode="run",
                started_at=now,
                heartbeat_at=now,
                lease_s=30,
                detail={},
            )
        )
        c.execute(
            sa.insert(t.delivery_errors).values(
                campaign_id=campaign,
                account="avisos",
                outcome="retry",
                reason="451 busy",
                scope="delivery",
                count=3,
                first_at=now,
                last_at=now,
            )
        )
        c.execute(sa.insert(t.source_state).values(source="drop", status="ok", updated_at=now))
        group = c.execute(
            sa.insert(t.groups).values(
                name="parceiros", source="http", created_at=now, updated_at=now
            )
        ).inserted_primary_key[0]
        c.execute(
            sa.insert(t.group_members).values(
                group_id=group, contact_id=contact, position=1, added_at=now
            )
        )
        c.execute(
            sa.insert(t.campaign_groups).values(campaign_id=campaign, group_id=group, position=0)
        )
        c.execute(
            sa.insert(t.api_requests).values(
                client="polo", key="k-1", campaign_id=campaign, created_at=now
            )
        )
        c.execute(
            sa.insert(t.mailboxes).values(
                name="bounces", status="ok", handled=3, unparsed=1, updated_at=now
            )
        )
    assert store.publications.record(
        source="drop",
        publisher="triplet-results",
        key="SEND:20261123",
        path="SEND_ABERTURA_20261123",
        detail={"campaign": campaign, "até": 7},
        size=10,
        sha256="cd" * 32,
    )
    store.audit.record("ana", "campaign.pause", f"campaign:{campaign}", {"reason": "test"})
    store.engine_log.add(
        [{"at": now, "node": "n1", "level": "INFO", "logger": "engine", "message": "started"}]
    )
    command = store.commands.submit(
        actor="ana", role="operator", action="pause", target=f"campaign:{campaign}"
    )
    with store.read() as c:
        row = c.execute(sa.select(t.contacts)).one()
        assert row.fields == {"cidade": "São Paulo", "n": 1}
        assert row.created_at == now and row.created_at.tzinfo is UTC
        camp = c.execute(sa.select(t.campaigns)).one()
        assert camp.deadline == now + timedelta(hours=1)
        assert c.execute(sa.select(t.contact_tags.c.tag)).scalar() == "Régua 60 dias"
        for table in t.metadata.sorted_tables:
            count = c.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            assert count == 1, table.name
    assert store.audit.entries(target=f"campaign:{campaign}")[0].detail == {"reason": "test"}
    assert [cmd.id for cmd in store.commands.pending()] == [command]
    assert store.commands.finish(command, applied=True, result="paused")
    assert not store.commands.finish(command, applied=True, result="again")  # applied once
    done = store.commands.get(command)
    assert done is not None and done.status == "applied" and done.applied_at == now
    assert store.commands.pending() == []


def test_unique_keys_guard_once_only_rules(store: Store) -> None:
    now = store.clock.now()
    values = dict(
        source="drop",
        path="a.csv",
        dedupe_key="a.csv:abc",
        size=1,
        sha256="0" * 64,
        outcome="imported",
        created_at=now,
    )
    with store.write() as c:
        c.execute(sa.insert(t.files).values(**values))
    # F10: the same content under the same name is never recorded twice
    with pytest.raises(sa.exc.IntegrityError), store.write() as c:
        c.execute(sa.insert(t.files).values(**values))


def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive"), store.write() as c:
        c.execute(sa.insert(t.wallets).values(code="X", created_at=datetime(2026, 1, 1)))


def test_concurrent_writers_serialise(store: Store) -> None:
    """Two threads incrementing one counter through write transactions never lose an update."""
    now = store.clock.now()
    with store.write() as c:
        c.execute(
            sa.insert(t.accounts).values(name="a", channel="email", sent_24h=0, updated_at=now)
        )
    errors: list[BaseException] = []

    def bump() -> None:
        try:
            for _ in range(50):
                with store.write() as c:
                    if c.dialect.name == "postgresql":
                        c.execute(sa.text("SELECT 1 FROM accounts WHERE name='a' FOR UPDATE"))
                    value = c.execute(sa.select(t.accounts.c.sent_24h)).scalar_one()
                    c.execute(sa.update(t.accounts).values(sent_24h=value + 1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=bump) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    with store.read() as c:
        assert c.execute(sa.select(t.accounts.c.sent_24h)).scalar_one() == 100


async def test_store_run_uses_a_thread(store: Store) -> None:
    caller = threading.get_ident()
    assert await store.run(threading.get_ident) != caller


def test_the_quick_head_check_agrees_with_alembic(store: Store) -> None:
    """Opening a store at head skips Alembic (issue 16, goal 7): the head read from the
    migration files is Alembic's own, and a store at head is seen as such."""
    from engine.store import migrate

    assert migrate.quick_head() == migrate.head_revision()
    assert migrate.at_head(store.engine)
    assert store.upgrade() == (migrate.head_revision(), migrate.head_revision())
    with store.write() as c:
        c.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    assert not migrate.at_head(store.engine)

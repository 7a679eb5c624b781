"""The PostgreSQL import's set-based paths (issue 16, goal 4) write exactly what SQLite writes:
contacts merged by identity (N25), tags, memberships, recipients in first-row order with
repeated addresses dropped (D3), each identity's last message (N28); with and without repeated
identities, new and existing contacts, and for a role that must keep PostgreSQL's per-row
foreign-key checks (not a superuser)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from engine.clock import TestClock
from engine.config import Config
from engine.store import Store
from engine.store.imports import skip_reference_checks
from engine.testing import eventually_sync
from tests.helpers import load, name, write_config
from tests.peers.postgres import PostgresServer
from tests.test_mailing_import import Importer

pytestmark = pytest.mark.postgres

#: files with repeated identities, addresses and messages (SMS); then existing contacts and a
#: repeated identity (e-mail); then existing and new contacts, nothing repeated (the fast path),
#: in a new wallet; then SMS again, nothing repeated, with messages; then an e-mail campaign in
#: batches (D5) with a repeated identity, an address two identities share (D3) and a
#: suppressed one (D4): its positions, batches and states come from one window pass there
FILES = [
    (
        "cBRAD_smslong_dprimeiro",
        "nome;telefone;email;cpf;cidade;mensagem\n"
        "Ana;11998877665;ana@x.com;111;SP;Olá Ana\n"
        "Bia;11988887777;;222;Rio;\n"
        "Ana Maria;11998877665;ana2@x.com;111;;Oi de novo\n"
        "Caio;11998877665;caio@x.com;333;Santos;Olá Caio\n"
        "Bia B;11988887777;bia@x.com;222;Niterói;\n"
        "Dora;11977776666;;;BH;Olá Dora\n",
    ),
    (
        "cBRAD_email_dsegundo",
        "nome;email;cpf;plano\n"
        "Eva;eva@x.com;444;ouro\n"
        "Ana M;ana2@x.com;111;prata\n"
        "Bia;bia@x.com;222;\n"
        "Eva E;EVA@x.com;444;bronze\n",
    ),
    (
        "cITAU_email_dterceiro",
        "nome;email;cpf;plano\nFabio;fabio@x.com;555;ouro\nCaio;caio@y.com;333;prata\n",
    ),
    (
        "cBRAD_smslong_dquarto",
        "nome;telefone;cpf;mensagem\nGil;11966665555;666;Olá Gil\nBia;11988887777;222;\n"
        "Dora;11977776666;777;Olá Dora\n",
    ),
    (
        "cBRAD_email_q30010_dquinto",
        "nome;email;cpf\nHugo;hugo@x.com;888\nIra;ira@x.com;999\nHugo H;;888\n"
        "Joana;hugo@x.com;1010\nLia;lia@x.com;1111\nEva;eva@x.com;444\nMax;max@x.com;1212\n"
        "Nina;nina@x.com;1313\n",
    ),
]
#: suppressed before the last file is imported
SUPPRESSED = "lia@x.com"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    return load(
        write_config(
            tmp_path,
            wallets={
                wallet: {
                    "email_subject": "Novidades",
                    "email_template": "body.html",
                    "sms_template": "Oi {{ nome }}",
                }
                for wallet in ("BRAD", "ITAU")
            },
        )
    )


@pytest.fixture
def plain_role_url(postgres: PostgresServer) -> Iterator[str]:
    """A database owned by a role that is no superuser (and may not set
    ``session_replication_role``)."""
    role = "r_" + uuid.uuid4().hex[:10]
    database = "t_" + uuid.uuid4().hex[:12]
    admin = psycopg.connect(
        host=str(postgres.socket_dir), port=postgres.port, user="postgres", autocommit=True
    )
    with admin:
        admin.execute(f"CREATE ROLE {role} LOGIN")
        admin.execute(f'CREATE DATABASE "{database}" OWNER {role}')
    yield f"postgresql+psycopg://{role}@/{database}?host={postgres.socket_dir}&port={postgres.port}"
    admin = psycopg.connect(
        host=str(postgres.socket_dir), port=postgres.port, user="postgres", autocommit=True
    )
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f"DROP ROLE IF EXISTS {role}")


def written(url: str, config: Config, clock: TestClock, folder: Path) -> dict[str, Any]:
    """Import FILES into a fresh store at ``url``; what the store holds (ids left out)."""
    store = Store.open(url, clock=clock)
    try:
        folder.mkdir()
        imp = Importer(store, config, clock, folder)
        reports = []
        for k, (params, content) in enumerate(FILES, 1):
            if k == len(FILES):
                store.suppressions.add("email", SUPPRESSED, origin="manual", actor="test")
            report = imp(name(k, params), content)
            assert report.outcome == "imported", report.problems
            reports.append(
                (
                    report.rows,
                    report.contacts,
                    report.new_contacts,
                    report.merged,
                    report.recipients,
                    report.pending,
                    report.duplicate_addresses,
                )
            )

        def parsed(value: Any) -> Any:
            return json.loads(value) if isinstance(value, str) else value

        contacts = [
            (*r[:5], parsed(r[5]), *r[6:])
            for r in imp.rows(
                "SELECT identity, external_key, name, email, phone, fields, import_id, "
                "import_row FROM contacts ORDER BY identity"
            )
        ]
        tags = [
            tuple(r)
            for r in imp.rows(
                "SELECT c.identity, t.tag FROM contact_tags t JOIN contacts c "
                "ON c.id = t.contact_id ORDER BY 1, 2"
            )
        ]
        members = [
            tuple(r)
            for r in imp.rows(
                "SELECT w.code, c.identity, m.removed_at FROM wallet_members m "
                "JOIN wallets w ON w.id = m.wallet_id JOIN contacts c ON c.id = m.contact_id "
                "ORDER BY 1, 2"
            )
        ]
        deliveries = [
            (*r[:5], parsed(r[5]), *r[6:])
            for r in imp.rows(
                "SELECT d.campaign_id, c.identity, d.position, d.batch, d.address, d.payload, "
                "d.status, d.error FROM deliveries d JOIN contacts c ON c.id = d.contact_id "
                "ORDER BY d.campaign_id, d.position"
            )
        ]
        return {
            "reports": reports,
            "contacts": contacts,
            "tags": tags,
            "members": members,
            "deliveries": deliveries,
        }
    finally:
        store.close()


@pytest.mark.parametrize("role", ["superuser", "plain role"])
def test_postgres_import_writes_what_sqlite_writes(
    role: str, pg_url: str, config: Config, clock: TestClock, tmp_path: Path, request: Any
) -> None:
    url = pg_url if role == "superuser" else request.getfixturevalue("plain_role_url")
    store = Store.open(url, clock=clock)
    with store.engine.connect() as conn:  # the per-row foreign-key checks stay for a role
        assert skip_reference_checks(conn) is (role == "superuser")  # that may not skip them
        conn.rollback()
    store.close()
    expected = written(f"sqlite:///{tmp_path / 'disparo.db'}", config, clock, tmp_path / "a")
    found = written(url, config, clock, tmp_path / "b")
    assert found == expected
    # the recipients the first file (N25, D3, N28): Ana's last message, Caio's phone is Ana's
    first = [d[1:] for d in found["deliveries"] if d[0] == 1]
    assert [(d[0], d[3], d[4]) for d in first] == [
        ("key:111", "11998877665", {"message": "Oi de novo"}),
        ("key:222", "11988887777", None),
        ("phone:11977776666", "11977776666", {"message": "Olá Dora"}),
    ]
    last = [(d[1], d[4], d[5]) for d in found["deliveries"] if d[0] == 4]
    assert last == [
        ("key:666", "11966665555", {"message": "Olá Gil"}),
        ("key:222", "11988887777", None),
        ("key:777", "11977776666", {"message": "Olá Dora"}),
    ]
    paced = [(d[1], d[2], d[3], d[6]) for d in found["deliveries"] if d[0] == 5]
    assert paced == [  # 30 % of 5 pending: batches of 2 (D5); Joana's address is Hugo's (D3)
        ("key:888", 0, 1, "pending"),
        ("key:999", 1, 1, "pending"),
        ("key:1111", 2, 0, "suppressed"),
        ("key:444", 3, 2, "pending"),
        ("key:1212", 4, 2, "pending"),
        ("key:1313", 5, 3, "pending"),
    ]
    ana = next(c for c in found["contacts"] if c[0] == "key:111")
    assert ana[2:5] == ("Ana M", "ana2@x.com", "11998877665")
    assert ana[5] == {"cidade": "SP", "plano": "prata"}


def test_another_node_inserting_an_identity_meanwhile_is_merged_not_lost(
    pg_url: str, postgres: PostgresServer, config: Config, clock: TestClock, tmp_path: Path
) -> None:
    """The update-then-insert path: another transaction inserts one of the file's identities
    while the import runs; the import's insert waits for it, fails on the unique identity and
    the whole upsert is redone with ON CONFLICT: the contact is merged and a member (N25)."""
    store = Store.open(pg_url, clock=clock)
    folder = tmp_path / "files"
    folder.mkdir()
    imp = Importer(store, config, clock, folder)
    dbname = pg_url.split("@/")[1].split("?")[0]

    def connect(autocommit: bool) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=str(postgres.socket_dir),
            port=postgres.port,
            user="postgres",
            dbname=dbname,
            autocommit=autocommit,
        )

    def waiting() -> list[Any]:
        with connect(True) as watcher:
            return watcher.execute(
                "SELECT left(query, 40) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'INSERT INTO contacts%'"
            ).fetchall()

    other = connect(False)
    try:
        other.execute(
            "INSERT INTO contacts (identity, name, phone, fields, created_at, updated_at) "
            "VALUES ('key:111', 'Outra', '11998877665', '{\"plano\": \"ouro\"}', now(), now())"
        )
        done: list[Any] = []
        worker = threading.Thread(
            target=lambda: done.append(
                imp(
                    name(1, "cBRAD"),
                    "nome;email;cpf;cidade\nAna;ana@x.com;111;SP\nBia;b@x.com;222;\n",
                )
            )
        )
        worker.start()
        eventually_sync(waiting, what="the import's insert waits for the other transaction")
        other.commit()
        worker.join()
    finally:
        other.close()
    assert done and done[0].outcome == "imported", done
    rows = imp.rows(
        "SELECT c.identity, c.name, c.phone, c.fields, w.code FROM contacts c "
        "JOIN wallet_members m ON m.contact_id = c.id JOIN wallets w ON w.id = m.wallet_id "
        "ORDER BY 1"
    )
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in rows] == [
        ("key:111", "Ana", "11998877665", {"plano": "ouro", "cidade": "SP"}, "BRAD"),
        ("key:222", "Bia", None, {}, "BRAD"),
    ]
    store.close()

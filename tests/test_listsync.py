"""List sync, inbound (S1): list files matched by a pattern, columns mapped to contact fields,
inserts and updates or the list made exactly the file, an opt-out column; on SQLite and
PostgreSQL, through the importer, the collector (local, FTP, SFTP) and the command line."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.clock import TestClock, local_today
from engine.config import Config, ConfigError
from engine.intake import collector as collector_module
from engine.intake.importer import ImportReport, file_digest, import_file
from engine.plugins import load_plugins
from engine.plugins.format import FormatContext, Verdict
from engine.publish.service import Publishing
from engine.store import Store
from engine.store import schema as t
from engine.store.suppressions import OPT_OUTS
from engine.testing.eventually import eventually_sync
from plugins.publishers.listsync import COLUMNS
from plugins.publishers.listsync import FILES as EXPORTS
from tests.helpers import collector, load, write_config
from tests.peers.ftp import FtpServer
from tests.peers.sftp import SftpServer

MAPPING = {"email": "E-mail", "name": "Nominativo", "optout": "Disiscritto"}


def listsync(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    (tmp_path / "drop").mkdir(exist_ok=True)
    return {
        "kind": "local",
        "path": "drop",
        "format": "listsync",
        "pattern": "contatti_*.csv",
        "list": "NEWS",
        "columns": MAPPING,
        **extra,
    }


def configured(tmp_path: Path, **extra: Any) -> Config:
    return load(write_config(tmp_path, sources={"mailup": listsync(tmp_path, **extra)}))


class Lists:
    """Import list files as the collector does (inspect, then the importer)."""

    def __init__(
        self, store: Store, config: Config, clock: TestClock, folder: Path, source: str = "mailup"
    ) -> None:
        self.store, self.config, self.clock, self.folder = store, config, clock, folder
        self.source = source
        self.count = 0

    def fmt(self) -> Any:
        return load_plugins().formats()["listsync"](
            FormatContext(
                self.config, self.source, local_today(self.clock, self.config.tz), self.clock.now()
            )
        )

    def inspect(self, path: str) -> Verdict:
        return self.fmt().inspect(path, {path})  # type: ignore[no-any-return]

    def __call__(self, path: str, content: str | bytes, encoding: str = "utf-8") -> ImportReport:
        self.count += 1
        spool = self.folder / f"spool-{self.count}.csv"
        spool.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
        fmt = self.fmt()
        assert fmt.inspect(path, {path}).action == "import"
        return import_file(
            self.store,
            fmt,
            source=self.source,
            path=path,
            spool=spool,
            size=spool.stat().st_size,
            mtime=None,
            sha256=file_digest(spool),
        )

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self.store.read() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]

    def members(self) -> dict[str, str | None]:
        """email -> removed_at (None: a member now)."""
        return {
            str(email): removed
            for email, removed in self.rows(
                "SELECT c.email, m.removed_at FROM wallet_members m "
                "JOIN contacts c ON c.id = m.contact_id JOIN wallets w ON w.id = m.wallet_id "
                "WHERE w.code = 'NEWS'"
            )
        }


@pytest.fixture
def lists(store: Store, clock: TestClock, tmp_path: Path) -> Lists:
    return Lists(store, configured(tmp_path), clock, tmp_path)


def test_a_file_with_a_custom_column_mapping_updates_its_list(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    lists = Lists(store, configured(tmp_path, columns=MAPPING | {"city": "Citta"}), clock, tmp_path)
    first = lists(
        "contatti_20261123.csv",
        "E-mail;Nominativo;Citta;Telefono\n"
        "ana@example.com;Ana;Roma;+39 06 1234\n"
        "bia@example.com;Bia;Milano;\n",
    )
    assert first.outcome == "imported", first.problems
    assert (first.wallet, first.contacts, first.new_contacts) == ("NEWS", 2, 2)
    assert first.removed is None and first.opted_out is None  # upsert, no opt-out column
    # titles matched without case and accents; unmapped columns are not read
    second = lists(
        "contatti_20261124.csv",
        "e-mail;NOMINATIVO;Città\nana@example.com;Ana Maria;Torino\ncid@example.com;Cid;Bari\n",
    )
    assert (second.outcome, second.contacts, second.new_contacts) == ("imported", 2, 1)
    found = {
        str(email): (name, json.loads(fields) if isinstance(fields, str) else fields)
        for email, name, fields in lists.rows("SELECT email, name, fields FROM contacts")
    }
    assert found == {
        "ana@example.com": ("Ana Maria", {"city": "Torino"}),  # updated
        "bia@example.com": ("Bia", {"city": "Milano"}),  # untouched, still a member
        "cid@example.com": ("Cid", {"city": "Bari"}),  # inserted
    }
    assert lists.members() == dict.fromkeys(found, None)
    assert lists.rows("SELECT DISTINCT tag FROM contact_tags") == [("list:NEWS",)]
    [(wallet_of_file,)] = lists.rows(
        "SELECT w.code FROM files f JOIN wallets w ON w.id = f.wallet_id "
        "WHERE f.path = 'contatti_20261124.csv'"
    )
    assert wallet_of_file == "NEWS"


def test_replace_mode_makes_the_list_the_file_and_keeps_the_history(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    lists = Lists(store, configured(tmp_path, mode="replace"), clock, tmp_path)
    header = "E-mail;Nominativo\n"
    lists("contatti_1.csv", header + "ana@x.com;Ana\nbia@x.com;Bia\ncid@x.com;Cid\n")
    second = lists("contatti_2.csv", header + "ana@x.com;Ana\ndia@x.com;Dia\n")
    assert (second.outcome, second.removed) == ("imported", 2)
    members = lists.members()
    assert {e for e, removed in members.items() if removed is None} == {"ana@x.com", "dia@x.com"}
    assert {e for e, removed in members.items() if removed is not None} == {
        "bia@x.com",
        "cid@x.com",
    }
    assert len(lists.rows("SELECT id FROM contacts")) == 4  # contacts and history stay
    third = lists("contatti_3.csv", header + "ana@x.com;Ana\nbia@x.com;Bia\n")  # Bia is back
    assert third.removed == 1
    members = lists.members()
    assert {e for e, removed in members.items() if removed is None} == {"ana@x.com", "bia@x.com"}
    [summary] = store.lists.summaries()
    assert (summary.code, summary.members, summary.removed) == ("NEWS", 2, 2)
    assert summary.last_import_path == "contatti_3.csv"


def test_replace_mode_never_empties_a_list_from_a_file_without_usable_rows(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    lists = Lists(store, configured(tmp_path, mode="replace"), clock, tmp_path)
    lists("contatti_1.csv", "E-mail;Nominativo\nana@x.com;Ana\n")
    for name, text in (
        ("contatti_2.csv", "E-mail;Nominativo\n"),
        ("contatti_3.csv", "E-mail\n;\n"),
    ):
        report = lists(name, text)
        assert report.outcome == "rejected", name
    assert lists.members() == {"ana@x.com": None}


def test_the_opt_out_column_suppresses_once_and_records_each_opt_out(lists: Lists) -> None:
    header = "E-mail;Nominativo;Disiscritto\n"
    first = lists("contatti_1.csv", header + "ana@x.com;Ana;\nBia@X.com;Bia;sim\ncid@x.com;Cid;0\n")
    assert (first.outcome, first.opted_out) == ("imported", 1)
    suppressions = {s.address: s for s in lists.store.suppressions.search()}
    assert set(suppressions) == {"bia@x.com"}
    assert suppressions["bia@x.com"].origin == "unsubscribe"
    assert "opt-out column `Disiscritto` of contatti_1.csv (S1)" in (
        suppressions["bia@x.com"].reason or ""
    )
    assert lists.members()["Bia@X.com"] is None  # an opted-out contact is still a member
    # the same flag again is not a new opt-out; a `0` never lifts one
    second = lists("contatti_2.csv", header + "bia@x.com;Bia;x\nana@x.com;Ana;1\n")
    assert second.opted_out == 1
    events = lists.rows("SELECT address FROM events WHERE kind = 'optout' ORDER BY id")
    assert events == [("bia@x.com",), ("ana@x.com",)]


def test_delimiter_and_encoding_are_found_as_for_mailings(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    lists = Lists(store, configured(tmp_path, columns=MAPPING | {"city": "Citta"}), clock, tmp_path)
    cp1252 = "E-mail,Nominativo,Citta\r\nana@x.com,Zoë Ünal,São Paulo\r\n".encode("cp1252")
    assert lists("contatti_1.csv", cp1252).outcome == "imported"
    tabs = '\ufeffE-mail\tNominativo\tCitta\nbia@x.com\t"Bia; B."\tRoma\n'
    assert lists("contatti_2.csv", tabs).outcome == "imported"
    found = dict(lists.rows("SELECT email, name FROM contacts"))
    assert found == {"ana@x.com": "Zoë Ünal", "bia@x.com": "Bia; B."}


def test_a_missing_mapped_column_rejects_the_file_saying_which_and_how(lists: Lists) -> None:
    report = lists("contatti_1.csv", "Email;Nome\nana@x.com;Ana\n")
    assert report.outcome == "rejected"
    [problem] = report.problems
    assert (problem.code, problem.rule) == ("missing-mapped-column", "S1")
    assert '"E-mail" (email)' in problem.message and '"Nominativo" (name)' in problem.message
    assert "the header has: Email, Nome" in problem.message
    assert "Envie o arquivo com esses títulos" in problem.message_pt
    assert lists.rows("SELECT count(*) FROM contacts") == [(0,)]


def test_rows_without_an_address_are_rejected_and_hygiene_is_the_mailings(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    config = configured(
        tmp_path, hygiene=True, columns={"phone": "Cellulare", "name": "Nome", "key": "Codice"}
    )
    lists = Lists(store, config, clock, tmp_path)
    report = lists(
        "contatti_1.csv",
        "Cellulare;Nome;Codice\n(11) 99887-7665;  Ana   Maria ;A1\n;Bia;B2\n123;Cid;C3\n",
    )
    assert report.outcome == "imported"
    assert dict(report.rejected_rows) == {"missing-contact": 1, "bad-phone": 1}
    assert lists.rows("SELECT identity, phone, name FROM contacts") == [
        ("key:A1", "+5511998877665", "Ana Maria")
    ]
    assert report.rejected_csv is not None and report.rejected_csv.exists()


def test_without_a_mapping_the_headers_are_read_as_a_mailings(
    store: Store, clock: TestClock, tmp_path: Path
) -> None:
    source = listsync(tmp_path)
    del source["columns"]
    config = load(write_config(tmp_path, sources={"mailup": source}))
    lists = Lists(store, config, clock, tmp_path)
    assert lists(
        "contatti_1.csv", "Nome;Celular;Cidade Natal\nAna;11998877665;Recife\n"
    ).outcome == ("imported")
    [(name, phone, fields)] = lists.rows("SELECT name, phone, fields FROM contacts")
    assert (name, phone) == ("Ana", "11998877665")
    assert (json.loads(fields) if isinstance(fields, str) else fields) == {"cidade_natal": "Recife"}
    report = lists("contatti_2.csv", "Nome;Cidade\nAna;Recife\n")
    assert report.outcome == "rejected" and report.problems[0].code == "missing-address-column"


def test_only_files_matching_the_pattern_are_taken_and_exports_never_are(
    tmp_path: Path, clock: TestClock, store: Store
) -> None:
    config = configured(tmp_path, exports={"files": ["unsubscribed"], "folder": "esiti"})
    lists = Lists(store, config, clock, tmp_path)
    verdicts = {
        path: (lists.inspect(path).action, lists.inspect(path).status)
        for path in (
            "contatti_20261123.csv",
            "CONTATTI_x.CSV",
            "sub/contatti_1.csv",
            "mailing_231126_001.csv",
            "contatti_1.txt",
            "esiti/contatti_1.csv",
        )
    }
    assert verdicts == {
        "contatti_20261123.csv": ("import", "ready"),
        "CONTATTI_x.CSV": ("import", "ready"),
        "sub/contatti_1.csv": ("import", "ready"),
        "mailing_231126_001.csv": ("ignore", "not-matching"),
        "contatti_1.txt": ("ignore", "not-matching"),
        "esiti/contatti_1.csv": ("ignore", "export"),
    }


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ({"list": None}, "sources.mailup.list", "missing: `list` is required"),
        ({"list": "NEWS LIST"}, "sources.mailup.list", "letters, digits"),
        ({"columns": {"name": "Nome"}}, "sources.mailup.columns", "map the e-mail or the phone"),
        ({"columns": {"e-mail": "E-mail"}}, "sources.mailup.columns", "is not a field name"),
        (
            {"columns": {"email": "E-mail", "other": "e-mail"}},
            "sources.mailup.columns",
            "map the same header",
        ),
        ({"mode": "merge"}, "sources.mailup.mode", "expected one of upsert, replace"),
        (
            {"exports": {"files": ["unsubscribed", "bounces"]}},
            "sources.mailup.exports.files",
            "unknown export bounces; the exports are: unsubscribed, stats, cumulative",
        ),
        ({"exports": {"folder": "x"}}, "sources.mailup.exports.files", "missing"),
        (
            {"exports": {"files": ["stats"], "cron": "every day"}},
            "sources.mailup.exports.cron",
            "a cron expression",
        ),
        (
            {"exports": {"files": ["stats"], "folder": "../up"}},
            "sources.mailup.exports.folder",
            "a folder of their own",
        ),
        (
            {"exports": {"files": ["stats"], "folder": "processed"}},
            "sources.mailup.exports.folder",
            "the source's processed_dir",
        ),
        (
            {"exports": {"files": ["stats"], "folders": "x"}},
            "sources.mailup.exports.folders",
            "did you mean `folder`",
        ),
    ],
)
def test_configuration_mistakes_are_named_with_the_fix(
    tmp_path: Path, extra: dict[str, Any], key: str, words: str
) -> None:
    source = {k: v for k, v in (listsync(tmp_path) | extra).items() if v is not None}
    with pytest.raises(ConfigError) as found:
        load(write_config(tmp_path, sources={"mailup": source}))
    messages = [str(p) for p in found.value.problems]
    assert any(f"{key}:" in m and words in m for m in messages), messages


def test_the_exports_publisher_needs_a_list_sync_source(tmp_path: Path) -> None:
    (tmp_path / "drop").mkdir()
    with pytest.raises(ConfigError) as found:
        load(
            write_config(
                tmp_path,
                sources={
                    "drop": {"kind": "local", "path": "drop", "publish": ["listsync-exports"]}
                },
            )
        )
    assert any(
        "sources.drop.publish: `listsync-exports` writes a list's exports" in str(p)
        for p in found.value.problems
    )


# -- collected from real sources ---------------------------------------------------------------


def remote(tmp_path: Path, table: dict[str, Any], **extra: Any) -> Config:
    source = listsync(tmp_path) | table | extra
    del source["path"]
    return load(write_config(tmp_path, sources={"mailup": source}))


def collect(c: Any, source: str = "mailup") -> list[ImportReport]:
    """Poll until nothing is still changing (a file must look the same twice, F8)."""
    reports: list[ImportReport] = []
    for _ in range(4):
        summary = c.poll_blocking(c.config.sources[source])
        assert summary.ok, summary.error
        reports += summary.reports
        c.clock.jump(c.config.sources[source].schedule.every)
    return reports


@pytest.mark.parametrize("kind", ["ftp", "sftp"])
def test_list_files_are_collected_from_ftp_and_sftp_and_reported_in_both_languages(
    kind: str,
    store: Store,
    clock: TestClock,
    tmp_path: Path,
    ftp_root: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server: FtpServer | SftpServer = request.getfixturevalue(f"{kind}_server")
    monkeypatch.setenv("PEER_PASSWORD", server.password)
    table: dict[str, Any] = {
        "kind": kind,
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "password_env": "PEER_PASSWORD",
        "allow_private": True,
    }
    if isinstance(server, SftpServer):
        table["host_key_fingerprint"] = server.fingerprint
    config = remote(tmp_path, table, mode="replace")
    c = collector(store, config, clock)
    (ftp_root / "contatti_1.csv").write_text("E-mail;Nominativo\nana@x.com;Ana\nbia@x.com;Bia\n")
    (ftp_root / "contatti_2.csv").write_text("Email;Nome\nana@x.com;Ana\n")
    (ftp_root / "leggimi.txt").write_text("not a list file")
    reports = {r.path: r for r in collect(c)}
    assert reports["contatti_1.csv"].outcome == "imported"
    assert reports["contatti_2.csv"].outcome == "rejected"
    assert (ftp_root / "processed" / "contatti_1.csv").is_file()
    report = (ftp_root / "rejected" / "contatti_2.erro.txt").read_text()
    assert "[S1] missing-mapped-column" in report and "Envie o arquivo" in report
    assert "the header has: Email, Nome" in report
    assert (ftp_root / "leggimi.txt").is_file()  # other files are left alone
    statuses = {o.path: o.status for o in store.files.observations("mailup")}
    assert statuses["leggimi.txt"] == "not-matching"


def test_a_big_file_says_how_far_its_import_got(
    store: Store, clock: TestClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = configured(tmp_path, min_age="1s")
    monkeypatch.setattr(collector_module, "PROGRESS_BYTES", 0)
    monkeypatch.setattr(collector_module, "PROGRESS_EVERY", 0.0)
    seen: list[tuple[str, str | None]] = []
    real = store.files.set_status

    def spy(source: str, path: str, status: str, **kw: Any) -> None:
        if status == "importing":
            seen.append((path, kw.get("message")))
        real(source, path, status, **kw)

    monkeypatch.setattr(store.files, "set_status", spy)
    rows = "".join(f"c{i}@example.com;Cliente {i}\n" for i in range(5000))
    (tmp_path / "drop" / "contatti_1.csv").write_text("E-mail;Nominativo\n" + rows)
    reports = collect(collector(store, config, clock))
    assert [r.outcome for r in reports] == ["imported"]
    assert seen and all(p == "contatti_1.csv" and "% read (" in (m or "") for p, m in seen)


def test_disparo_import_source_reads_files_as_the_sources_and_lists_shows_the_list(
    run_cli: Any, tmp_path: Path
) -> None:
    configured(tmp_path, mode="replace")
    path = tmp_path / "contatti_1.csv"
    path.write_text("E-mail;Nominativo;Disiscritto\nana@x.com;Ana;\nbia@x.com;Bia;1\n")
    done = run_cli("import", "--source", "mailup", "--json", str(path))
    assert done.exit_code == 0, done.output
    [report] = json.loads(done.output)
    assert (report["outcome"], report["wallet"], report["opted_out"], report["removed"]) == (
        "imported",
        "NEWS",
        1,
        0,
    )
    shown = run_cli("import", "--source", "mailup", str(path))
    assert shown.exit_code == 1 and "imported before" in shown.output  # F10: once
    other = tmp_path / "outro.csv"
    other.write_text("E-mail\nx@x.com\n")
    refused = run_cli("import", "--source", "mailup", str(other))
    assert refused.exit_code == 1 and "not-matching" in refused.output
    listed = run_cli("lists", "--json")
    assert listed.exit_code == 0, listed.output
    [news] = json.loads(listed.output)
    assert (news["list"], news["members"], news["removed"]) == ("NEWS", 2, 0)
    assert news["last_import"]["file"] == str(path.name) or news["last_import"]["file"].endswith(
        "contatti_1.csv"
    )
    assert news["sources"] == [
        {
            "source": "mailup",
            "format": "listsync",
            "mode": "replace",
            "exports": [],
            "folder": None,
            "next_export": None,
        }
    ]
    table = run_cli("lists")
    assert "NEWS" in table.output and "mailup (replace)" in table.output


def test_lists_tables_count_what_is_removed_from_the_store(store: Store) -> None:
    assert store.lists.summaries() == []
    with store.write() as c:
        c.execute(sa.insert(t.wallets).values(code="X", created_at=store.clock.now()))
    [x] = store.lists.summaries()
    assert (x.code, x.members, x.removed, x.last_import_path) == ("X", 0, 0, None)


# -- exports (S2, S3) ----------------------------------------------------------------------------


def peer_table(server: FtpServer | SftpServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A source table reaching the loopback peer (its password in the environment)."""
    monkeypatch.setenv("PEER_PASSWORD", server.password)
    table: dict[str, Any] = {
        "kind": "sftp" if isinstance(server, SftpServer) else "ftp",
        "host": "127.0.0.1",
        "port": server.port,
        "user": server.user,
        "password_env": "PEER_PASSWORD",
        "allow_private": True,
    }
    if isinstance(server, SftpServer):
        table["host_key_fingerprint"] = server.fingerprint
    return table


def exporting(
    tmp_path: Path, table: dict[str, Any], files: list[str] | None = None, **extra: Any
) -> Config:
    exports = {"files": files or list(EXPORTS), "folder": "esiti", "cron": "0 5 * * *"}
    return remote(tmp_path, table, exports=exports, **extra)


def campaign(store: Store, name: str, channel: str, kind: str, recipients: list[str]) -> list[int]:
    """A campaign of the NEWS list with a delivery to each address (its id, in order)."""
    now = store.clock.now()
    with store.write() as c:
        wallet = c.execute(sa.select(t.wallets.c.id).where(t.wallets.c.code == "NEWS")).scalar()
        campaign_id = c.execute(
            sa.insert(t.campaigns).values(
                name=name,
                channel=channel,
                address_kind=kind,
                status="running",
                start_at=now,
                created_at=now,
                updated_at=now,
                wallet_id=wallet,
            )
        ).inserted_primary_key[0]
        ids = []
        for position, address in enumerate(recipients):
            column = t.contacts.c.email if kind == "email" else t.contacts.c.phone
            contact = c.execute(sa.select(t.contacts.c.id).where(column == address)).scalar()
            ids.append(
                c.execute(
                    sa.insert(t.deliveries).values(
                        campaign_id=campaign_id,
                        position=position,
                        batch=0,
                        address=address,
                        status="sent",
                        contact_id=contact,
                    )
                ).inserted_primary_key[0]
            )
    return ids


def event(store: Store, kind: str, delivery_id: int, **detail: Any) -> None:
    with store.write() as c:
        d = c.execute(sa.select(t.deliveries).where(t.deliveries.c.id == delivery_id)).one()
        c.execute(
            sa.insert(t.events).values(
                at=store.clock.now(),
                kind=kind,
                origin="test",
                campaign_id=d.campaign_id,
                delivery_id=delivery_id,
                contact_id=d.contact_id,
                address=d.address,
                detail=detail,
            )
        )


def exported(root: Path, leaf: str, folder: str = "esiti") -> list[list[str]]:
    """An export's rows (its header first), checking it is `;`-separated UTF-8."""
    raw = (root / folder / leaf).read_bytes()
    text = raw.decode("utf-8")  # UTF-8, no BOM
    assert not text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))


def column(rows: list[list[str]], name: str) -> list[str]:
    index = rows[0].index(name)
    return [r[index] for r in rows[1:]]


@pytest.mark.parametrize("kind", ["sftp", "ftp"])
def test_a_nightly_export_writes_the_chosen_files_and_never_overwrites_one(
    kind: str,
    store: Store,
    clock: TestClock,
    tmp_path: Path,
    ftp_root: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = request.getfixturevalue(f"{kind}_server")
    config = exporting(tmp_path, peer_table(server, monkeypatch), columns=MAPPING | {
        "phone": "Cellulare", "city": "Citta"})  # fmt: skip
    lists = Lists(store, config, clock, tmp_path)
    lists(
        "contatti_1.csv",
        "E-mail;Nominativo;Cellulare;Citta;Disiscritto\n"
        'ana@x.com;=HYPERLINK("http://x");;+Roma;\n'
        "bia@x.com;Bia;;Milano;sim\n"
        ";Cid;+5511998877665;Bari;\n",
    )
    store.suppressions.add("email", "eva@x.com", origin="manual", actor="op")  # not a member
    mail = campaign(store, "Novembre", "email", "email", ["ana@x.com", "bia@x.com"])
    sms = campaign(store, "Promo SMS", "sms", "phone", ["+5511998877665"])
    clock.jump(60)
    event(store, "open", mail[0])
    event(store, "open", mail[0])
    event(store, "click", mail[0], url="http://x")
    event(store, "failed", sms[0], reason="unreachable (21614)")
    publishing = Publishing(store, load_plugins(), config, clock)
    done = publishing.publish()
    assert [(o.path, o.status) for o in done] == [
        (f"esiti/{f}_20261123.csv", "published") for f in EXPORTS
    ]
    unsubscribed = exported(ftp_root, "unsubscribed_20261123.csv")
    assert unsubscribed[0] == list(COLUMNS["unsubscribed"])
    assert column(unsubscribed, "email") == ["bia@x.com"]  # eva is not the list's
    assert column(unsubscribed, "origin") == ["unsubscribe"]
    assert column(unsubscribed, "unsubscribed_at") == ["2026-11-23 09:00:00"]  # local time
    stats = exported(ftp_root, "stats_20261123.csv")
    assert [(r[0], r[5], r[6], r[7]) for r in stats[1:]] == [("ana@x.com", "Novembre", "2", "1")]
    # E2: a cell a spreadsheet would run is written as text
    assert column(stats, "name") == ['\'=HYPERLINK("http://x")']
    cumulative = exported(ftp_root, "cumulative_20261123.csv")
    assert column(cumulative, "type") == ["unsubscribed", "stats"]
    outcomes = exported(ftp_root, "sms_outcomes_20261123.csv")
    # E2 holds for every cell: a phone number in E.164 is written `'+55…` as well
    assert [(r[1], r[8], r[9]) for r in outcomes[1:]] == [
        ("'+5511998877665", "failed", "unreachable (21614)")
    ]
    subscribed = exported(ftp_root, "subscribed_20261123.csv")
    assert subscribed[0] == [*COLUMNS["subscribed"], "city"]
    # bia opted out: not an active member; a custom field is the file's last column
    assert [(r[0], r[1], r[-1]) for r in subscribed[1:]] == [
        ("ana@x.com", "", "'+Roma"),
        ("", "'+5511998877665", "Bari"),
    ]
    assert publishing.publish() == []  # the run of 05:00 has its files
    # `disparo publish SOURCE`: another run now, beside the first; nothing new happened, so
    # the incremental files hold their header only
    again = publishing.publish(["mailup"], on_demand=True)
    assert [o.path for o in again] == [f"esiti/{f}_20261123_2.csv" for f in EXPORTS]
    for f in ("unsubscribed", "stats", "cumulative", "sms_outcomes"):
        assert exported(ftp_root, f"{f}_20261123_2.csv") == [list(COLUMNS[f])]
    assert len(exported(ftp_root, "subscribed_20261123_2.csv")) == 3  # a snapshot each time
    assert exported(ftp_root, "unsubscribed_20261123.csv") == unsubscribed  # never overwritten
    store.suppressions.add("email", "ana@x.com", origin="complaint", actor="feedback")
    clock.jump(24 * 3600)  # the next night
    nightly = publishing.publish()
    assert [o.path for o in nightly] == [f"esiti/{f}_20261124.csv" for f in EXPORTS]
    assert column(exported(ftp_root, "unsubscribed_20261124.csv"), "email") == ["ana@x.com"]
    assert sorted(p.name for p in (ftp_root / "esiti").iterdir()) == sorted(
        f"{f}_{day}.csv" for f in EXPORTS for day in ("20261123", "20261123_2", "20261124")
    )  # no temporary name left behind


@pytest.mark.parametrize("kind", ["sftp", "ftp"])
def test_an_upload_lost_mid_file_is_retried_with_the_same_range(
    kind: str,
    store: Store,
    clock: TestClock,
    tmp_path: Path,
    ftp_root: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = request.getfixturevalue(f"{kind}_server")
    config = exporting(tmp_path, peer_table(server, monkeypatch), ["unsubscribed"])
    lists = Lists(store, config, clock, tmp_path)
    rows = "".join(f"c{i}@x.com;C {i};1\n" for i in range(300))
    lists("contatti_1.csv", "E-mail;Nominativo;Disiscritto\n" + rows)
    publishing = Publishing(store, load_plugins(), config, clock)
    server.drop_next_upload(after_bytes=2000)
    [failed] = publishing.publish()
    assert failed.status == "failed", failed
    assert not (ftp_root / "esiti" / "unsubscribed_20261123.csv").exists()  # no half file
    [planned] = store.publications.of("mailup", pending=True)
    assert planned.status == "pending"
    lists("contatti_2.csv", "E-mail;Nominativo;Disiscritto\nlate@x.com;Late;1\n")
    [done] = publishing.publish()  # the same file, the same range: the late one is not in it
    assert (done.path, done.status) == ("esiti/unsubscribed_20261123.csv", "published")
    [published] = store.publications.of("mailup")
    assert published.detail == planned.detail
    first = exported(ftp_root, "unsubscribed_20261123.csv")
    assert sorted(column(first, "email")) == sorted(f"c{i}@x.com" for i in range(300))
    [extra] = publishing.publish(["mailup"], on_demand=True)
    assert column(exported(ftp_root, "unsubscribed_20261123_2.csv"), "email") == ["late@x.com"]
    assert extra.status == "published"


def test_kill_9_between_writing_an_export_and_recording_it_writes_the_same_file_again(
    tmp_path: Path,
    ftp_root: Path,
    sftp_server: SftpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 across a crash: a real `disparo publish` is killed once its file is complete on the
    server, before the ledger records it (so before the high-water mark moves on); the next
    run writes the same file, with the same range, and the next export starts where it ended."""
    config_path = write_config(
        tmp_path,
        sources={
            "mailup": {
                k: v for k, v in listsync(tmp_path).items() if k != "path"
            } | peer_table(sftp_server, monkeypatch) | {
                "exports": {"files": ["unsubscribed"], "folder": "esiti"}
            }
        },
    )  # fmt: skip
    config = load(config_path)
    db = tmp_path / "disparo.db"
    store = Store.open(f"sqlite:///{db}")
    try:
        lists = Lists(store, config, store.clock, tmp_path)  # type: ignore[arg-type]
        rows = "".join(f"c{i}@x.com;C {i};1\n" for i in range(50))
        lists("contatti_1.csv", "E-mail;Nominativo;Disiscritto\n" + rows)
    finally:
        store.close()
    sftp_server.hold_renames()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config_path), "publish", "mailup"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        eventually_sync(lambda: sftp_server.renames_held == 1, what="the upload to be complete")
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the ledger's record waits behind this
        sftp_server.release_renames()
        esiti = ftp_root / "esiti"
        eventually_sync(
            lambda: [p.name for p in esiti.iterdir() if p.suffix == ".csv"] != [],
            what="the export renamed into place",
        )
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        blocker.execute("ROLLBACK")
        blocker.close()
    finally:
        sftp_server.release_renames()
        if process.poll() is None:
            process.kill()
            process.wait()
    [leaf] = [p.name for p in esiti.iterdir() if p.suffix == ".csv"]
    written = (esiti / leaf).read_bytes()
    store = Store.open(f"sqlite:///{db}")
    try:
        [planned] = store.publications.of("mailup", pending=True)
        assert (planned.status, planned.path) == ("pending", f"esiti/{leaf}")
        lists = Lists(store, config, store.clock, tmp_path)  # type: ignore[arg-type]
        lists("contatti_2.csv", "E-mail;Nominativo;Disiscritto\nlate@x.com;Late;1\n")
        publishing = Publishing(store, load_plugins(), config, store.clock)
        [again] = publishing.publish()
        assert (again.path, again.status) == (f"esiti/{leaf}", "published")
        assert (esiti / leaf).read_bytes() == written  # the same range, the same file
        [published] = store.publications.of("mailup")
        assert published.detail == planned.detail
        [after] = publishing.publish(["mailup"], on_demand=True)
        assert after.status == "published"
        tail = exported(ftp_root, after.path.removeprefix("esiti/"))
        assert column(tail, "email") == ["late@x.com"]
        head = exported(ftp_root, leaf)
        assert sorted(column(head, "email")) == sorted(f"c{i}@x.com" for i in range(50))
    finally:
        store.close()


MEMBERS = 6
#: one step of the property test: an opt-out (committed at once, or left open on PostgreSQL
#: until a later `commit`: a transaction that commits after a later one), a suppression
#: lifted (so the address can opt out again), an export run (its upload dropped after some
#: bytes, or not; on its schedule or asked for), the next night
STEP = st.one_of(
    st.tuples(st.just("optout"), st.integers(0, MEMBERS - 1), st.sampled_from(sorted(OPT_OUTS))),
    st.tuples(st.just("open"), st.integers(0, MEMBERS - 1), st.sampled_from(sorted(OPT_OUTS))),
    st.tuples(st.just("commit")),
    st.tuples(st.just("lift"), st.integers(0, MEMBERS - 1)),
    st.tuples(st.just("publish"), st.one_of(st.none(), st.integers(1, 300)), st.booleans()),
    st.tuples(st.just("night")),
)


def test_the_unsubscribed_files_hold_every_opt_out_once_whatever_fails(
    store: Store,
    clock: TestClock,
    tmp_path: Path,
    ftp_root: Path,
    sftp_server: SftpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """S3 as a property: opt-outs interleaved with export runs whose uploads fail mid-file
    (and, on PostgreSQL, with transactions that commit late): the union of the unsubscribed
    files is the opt-out event log of the list's contacts, each event exactly once."""
    table = peer_table(sftp_server, monkeypatch)
    examples = iter(range(1_000_000))

    @settings(
        max_examples=25,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(steps=st.lists(STEP, max_size=20))
    # a transaction that commits after a later one was exported (PostgreSQL's ids are not
    # in commit order), an upload dropped before its file was whole
    @example(
        steps=[
            ("open", 0, "stop"),
            ("optout", 1, "unsubscribe"),
            ("publish", None, False),
            ("commit",),
            ("optout", 2, "complaint"),
            ("publish", 40, True),
        ]
    )
    def check(steps: list[tuple[Any, ...]]) -> None:
        n = next(examples)
        source, folder = f"s{n}", f"esiti{n}"
        config = load(
            write_config(
                tmp_path,
                sources={
                    source: {k: v for k, v in listsync(tmp_path).items() if k != "path"}
                    | table
                    | {"list": f"L{n}", "exports": {"files": ["unsubscribed"], "folder": folder}}
                },
            )
        )
        emails = [f"m{j}@e{n}.example" for j in range(MEMBERS)]
        lists = Lists(store, config, clock, tmp_path, source)
        lists("contatti_1.csv", "E-mail;Nominativo\n" + "".join(f"{e};M\n" for e in emails))
        publishing = Publishing(store, load_plugins(), config, clock)
        late = store.engine.dialect.name == "postgresql"
        open_tx: list[tuple[Any, Any]] = []
        busy: set[str] = set()  # addresses an open transaction holds

        def commit() -> None:
            for conn, tx in open_tx:
                tx.commit()
                conn.close()
            open_tx.clear()
            busy.clear()

        try:
            for step in steps:
                if step[0] in ("optout", "open", "lift") and emails[step[1]] in busy:
                    continue  # it would wait for the open transaction
                if step[0] == "optout" or (step[0] == "open" and not late):
                    store.suppressions.add("email", emails[step[1]], origin=step[2], actor="t")
                elif step[0] == "open":
                    conn = store.engine.connect()
                    tx = conn.begin()
                    open_tx.append((conn, tx))
                    busy.add(emails[step[1]])
                    store.suppressions.add(
                        "email", emails[step[1]], origin=step[2], actor="t", conn=conn
                    )
                elif step[0] == "commit":
                    commit()
                elif step[0] == "lift":
                    store.suppressions.remove("email", emails[step[1]], actor="t", reason="t")
                elif step[0] == "publish":
                    clock.jump(1)  # a run is never at the same instant as the one before
                    if step[1] is not None:
                        sftp_server.drop_next_upload(after_bytes=step[1])
                    publishing.publish([source], on_demand=step[2])
                else:
                    clock.jump(24 * 3600)
            commit()
            sftp_server.drop_next_upload(after_bytes=10**9)  # disarmed: it never takes that
            for _ in range(3):  # what is pending, then one more run to cover the rest
                clock.jump(1)
                publishing.publish([source], on_demand=True)
        finally:
            commit()
        assert store.publications.pending(source, "listsync-exports") == []
        exported_ids = [
            int(i)
            for f in sorted((ftp_root / folder).glob("unsubscribed_*.csv"))
            for i in column(exported(ftp_root, f.name, folder), "event_id")
        ]
        with store.read() as c:
            logged = [
                int(i)
                for (i,) in c.execute(
                    sa.select(t.events.c.id).where(
                        t.events.c.kind == "optout", t.events.c.address.in_(emails)
                    )
                )
            ]
        assert len(exported_ids) == len(set(exported_ids)), "an opt-out exported twice"
        assert sorted(exported_ids) == sorted(logged)

    check()


def today(tmp_path: Path) -> str:
    """Today in engine.time_zone, as the command line (on the real clock) sees it."""
    return datetime.now(UTC).astimezone(load(tmp_path / "disparo.toml").tz).strftime("%Y%m%d")


def test_disparo_publish_source_runs_the_exports_now_and_lists_shows_them(
    run_cli: Any, tmp_path: Path
) -> None:
    configured(tmp_path, exports={"files": ["unsubscribed", "subscribed"], "folder": "esiti"})
    path = tmp_path / "contatti_1.csv"
    path.write_text("E-mail;Nominativo;Disiscritto\nana@x.com;Ana;\nbia@x.com;Bia;1\n")
    assert run_cli("import", "--source", "mailup", str(path)).exit_code == 0
    first = run_cli("publish", "mailup", "--json")
    assert first.exit_code == 0, first.output
    done = json.loads(first.output)
    assert [(o["publisher"], o["status"]) for o in done] == [("listsync-exports", "published")] * 2
    day = done[0]["path"].removeprefix("esiti/unsubscribed_").removesuffix(".csv")
    assert len(day) == 8 and day.isdigit()
    assert done[1]["path"] == f"esiti/subscribed_{day}.csv"
    esiti = tmp_path / "drop" / "esiti"
    assert column(exported(tmp_path / "drop", f"unsubscribed_{day}.csv"), "email") == ["bia@x.com"]
    assert column(exported(tmp_path / "drop", f"subscribed_{day}.csv"), "email") == ["ana@x.com"]
    # named again: another run now, beside the first (the schedule goes on as before): the
    # day's next number, or today's first when the run due was yesterday's 05:00
    second = json.loads(run_cli("publish", "mailup", "--json").output)
    leaf = second[0]["path"].removeprefix("esiti/")
    assert leaf in (f"unsubscribed_{day}_2.csv", f"unsubscribed_{today(tmp_path)}.csv")
    assert second[1]["path"] == "esiti/" + leaf.replace("unsubscribed", "subscribed")
    assert exported(tmp_path / "drop", leaf) == [list(COLUMNS["unsubscribed"])]  # header only
    assert json.loads(run_cli("publish", "--json").output) == []  # unnamed: only what is due
    assert len(list(esiti.iterdir())) == 4
    [news] = json.loads(run_cli("lists", "--json").output)
    assert (news["members"], news["pending_exports"]) == (2, 0)
    assert news["last_export"]["file"] == second[1]["path"]
    [feed] = news["sources"]
    assert (feed["exports"], feed["folder"]) == (["unsubscribed", "subscribed"], "esiti")
    assert feed["next_export"] is not None and "T05:00:00" in feed["next_export"]
    table = run_cli("lists").output
    assert "unsubscribed, subscribed → esiti/" in table and second[1]["path"] in table

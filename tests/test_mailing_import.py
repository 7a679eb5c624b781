"""Importing mailing files (N5, N6, N13, N19–N28; F10, F12; D3, D4), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import json
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.clock import TestClock, local_today
from engine.config import Config
from engine.intake.importer import ImportReport, file_digest, import_file
from engine.plugins import load_plugins
from engine.plugins.format import FormatContext
from engine.store import Store
from engine.store import schema as t
from tests.helpers import load, name, write_config

ROOT_HEADER = "nome;telefone;email;cpf;cidade\n"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "brad.html").write_text("<p>Olá {{ nome }}</p>")
    return load(
        write_config(
            tmp_path,
            wallets={
                "BRAD": {
                    "email_subject": "Novidades",
                    "email_template": "templates/brad.html",
                    "sms_template": "Oi {{ nome }}",
                },
                "SEMTEXTO": {},
            },
        )
    )


class Importer:
    """Drop a file and import it the way the collector does."""

    def __init__(self, store: Store, config: Config, clock: TestClock, folder: Path) -> None:
        self.store, self.config, self.clock, self.folder = store, config, clock, folder
        self.count = 0

    def __call__(
        self,
        path: str,
        content: str | bytes,
        *,
        encoding: str = "utf-8",
        companions: dict[str, str] | None = None,
        source: str = "drop",
    ) -> ImportReport:
        self.count += 1
        spool = self.folder / f"spool-{self.count}.csv"
        spool.write_bytes(content if isinstance(content, bytes) else content.encode(encoding))
        local = {}
        for companion, text in (companions or {}).items():
            local[companion] = self.folder / f"companion-{self.count}.html"
            local[companion].write_text(text)
        fmt = load_plugins().formats()["mailing"](
            FormatContext(
                self.config, source, local_today(self.clock, self.config.tz), self.clock.now()
            )
        )
        verdict = fmt.inspect(path, {path, *(companions or {})})
        assert verdict.action == "import", verdict
        return import_file(
            self.store,
            fmt,
            source=source,
            path=path,
            spool=spool,
            size=spool.stat().st_size,
            mtime=None,
            sha256=file_digest(spool),
            companions=local,
        )

    def rows(self, query: str, **params: Any) -> list[Any]:
        with self.store.read() as c:
            return list(c.execute(sa.text(query), params))


@pytest.fixture
def imp(store: Store, config: Config, clock: TestClock, tmp_path: Path) -> Importer:
    folder = tmp_path / "files"
    folder.mkdir()
    return Importer(store, config, clock, folder)


def contacts(imp: Importer) -> dict[str, Any]:
    return {r.identity: r for r in imp.rows("SELECT * FROM contacts ORDER BY id")}


# -- import only ------------------------------------------------------------------------------


def test_import_only_contacts_wallet_and_tag(imp: Importer) -> None:
    report = imp(
        "BRAD/" + name(1, "dRégua 60 dias"),
        ROOT_HEADER + "Ana;11998877665;ana@example.com;111;São Paulo\n"
        "Bia;11988887777;bia@example.com;222;Rio\n",
    )
    assert report.outcome == "imported" and report.wallet == "BRAD"
    assert (report.rows, report.contacts, report.new_contacts, report.merged) == (2, 2, 2, 0)
    assert report.campaign_id is None  # N21
    found = contacts(imp)
    assert set(found) == {"key:111", "key:222"}
    ana = found["key:111"]
    assert ana.name == "Ana" and ana.phone == "11998877665"  # no _h: stored as given (N26)
    fields = ana.fields if isinstance(ana.fields, dict) else json.loads(ana.fields)
    assert fields == {"cidade": "São Paulo"}
    assert imp.rows("SELECT tag FROM contact_tags") == [("Régua 60 dias",)] * 2
    assert [r.code for r in imp.rows("SELECT code FROM wallets")] == ["BRAD"]
    assert len(imp.rows("SELECT * FROM wallet_members")) == 2
    mailing = imp.rows("SELECT * FROM mailings")[0]
    assert mailing.sequence == 1 and mailing.rows_imported == 2
    ledger = imp.rows("SELECT * FROM files")[0]
    assert ledger.outcome == "imported" and ledger.dedupe_key.endswith(ledger.sha256)


def test_n25_identity_and_in_file_merge(imp: Importer) -> None:
    report = imp(
        name(1, "cBRAD"),
        ROOT_HEADER
        + "Ana;11998877665;ana@example.com;111;São Paulo\n"
        + "Ana Maria;;ana2@example.com;111;\n"  # same key: merged, later values win
        + "Carla;;CARLA@Example.com;;Santos\n"  # no key: identity is the address
        + "Carla C;;carla@example.com;;\n",
    )
    assert (report.rows, report.contacts, report.merged) == (4, 2, 2)
    found = contacts(imp)
    ana = found["key:111"]
    assert ana.name == "Ana Maria" and ana.email == "ana2@example.com"
    assert ana.phone == "11998877665"  # kept: the later row had none
    carla = found["email:carla@example.com"]
    assert carla.name == "Carla C"
    fields = carla.fields if isinstance(carla.fields, dict) else json.loads(carla.fields)
    assert fields == {"cidade": "Santos"}


def test_upsert_updates_existing_contacts_and_tags(imp: Importer) -> None:
    imp(name(1, "cBRAD_dprimeiro"), ROOT_HEADER + "Ana;11998877665;ana@example.com;111;SP\n")
    report = imp(name(2, "cITAU_dsegundo"), ROOT_HEADER + "Ana B;;ana@novo.com;111;\n")
    assert (report.contacts, report.new_contacts) == (1, 0)
    ana = contacts(imp)["key:111"]
    assert ana.name == "Ana B" and ana.email == "ana@novo.com"
    assert ana.phone == "11998877665"  # kept from the first import
    assert sorted(r.tag for r in imp.rows("SELECT tag FROM contact_tags")) == [
        "primeiro",
        "segundo",
    ]
    assert len(imp.rows("SELECT * FROM wallet_members")) == 2


def test_limpartag_and_removercarteiras(imp: Importer) -> None:
    imp(name(1, "cBRAD_dvelho"), ROOT_HEADER + "Ana;;a@x.com;111;\nBia;;b@x.com;222;\n")
    imp(name(2, "cITAU_dnovo_limpartag_removercarteiras"), ROOT_HEADER + "Ana;;a@x.com;111;\n")
    tags = imp.rows(
        "SELECT c.identity, t.tag FROM contact_tags t JOIN contacts c ON c.id = t.contact_id "
        "ORDER BY 1"
    )
    assert [tuple(r) for r in tags] == [("key:111", "novo"), ("key:222", "velho")]
    wallets = imp.rows(
        "SELECT c.identity, w.code FROM wallet_members m JOIN contacts c ON c.id = m.contact_id "
        "JOIN wallets w ON w.id = m.wallet_id ORDER BY 1, 2"
    )
    assert [tuple(r) for r in wallets] == [("key:111", "ITAU"), ("key:222", "BRAD")]


# -- hygiene (N26) ------------------------------------------------------------------------------


def test_n26_hygiene(imp: Importer) -> None:
    report = imp(
        name(1, "cBRAD_h"),
        "nome;telefone;email\n"
        "  Ana   Maria ;(11) 99887-7665;Ana@Example.COM\n"
        "Bruno;123;bruno@example.com\n"  # bad phone, good e-mail: the phone is dropped
        "Carla;11988887777;not-an-email\n"  # bad e-mail dropped, phone kept
        "Davi;456;nope\n",  # nothing usable: rejected
    )
    assert report.outcome == "imported"
    assert report.rejected_rows == {"bad-contact": 1}
    assert report.rejected_csv is not None
    reason = report.rejected_csv.read_text(encoding="utf-8-sig")
    assert (
        "`456` is not a valid phone number" in reason and "`nope` is not a valid e-mail" in reason
    )
    found = contacts(imp)
    ana = found["email:ana@example.com"]
    assert ana.name == "Ana Maria" and ana.phone == "+5511998877665"
    assert ana.email == "Ana@example.com"  # the library's normalisation: domain lower-cased
    assert found["email:bruno@example.com"].phone is None
    assert found["phone:+5511988887777"].email is None


def test_n26_sms_needs_a_mobile(imp: Importer) -> None:
    report = imp(
        name(1, "cBRAD_smslong_h"),
        "nome;telefone\nAna;11998877665\nFixo;1133334444\n",
    )
    assert report.rejected_rows == {"not-mobile": 1}
    assert report.recipients == 1


# -- the CSV itself (N22, N23) ------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
def test_n22_delimiters(imp: Importer, delimiter: str) -> None:
    text = delimiter.join(["nome", "email", "obs"]) + "\r\n"
    text += delimiter.join(["Ana", "ana@x.com", '"tem ; , | dentro"']) + "\r\n"
    report = imp(name(1, "cBRAD"), text)
    assert report.contacts == 1
    fields = contacts(imp)["email:ana@x.com"].fields
    fields = fields if isinstance(fields, dict) else json.loads(fields)
    assert fields == {"obs": "tem ; , | dentro"}


def test_n22_utf8_with_bom_and_windows_1252(imp: Importer) -> None:
    imp(name(1, "cBRAD"), "\ufeffNome;E-mail\nJoão;joao@x.com\n")
    imp(name(2, "cBRAD"), "Nome;E-mail\nConceição;c@x.com\n", encoding="cp1252")
    found = contacts(imp)
    assert found["email:joao@x.com"].name == "João"  # the BOM did not stick to the header
    assert found["email:c@x.com"].name == "Conceição"


def test_n23_header_aliases_any_case_and_accents(imp: Importer) -> None:
    imp(
        name(1, "cBRAD_smsshort"),
        "NOME;Celular;E-MAIL;Código;Mensagem;Data Nascimento\n"
        "Ana;11998877665;a@x.com;77;Olá Ana;01/02/1990\n",
    )
    ana = contacts(imp)["key:77"]
    assert (ana.name, ana.phone, ana.email, ana.external_key) == (
        "Ana",
        "11998877665",
        "a@x.com",
        "77",
    )
    fields = ana.fields if isinstance(ana.fields, dict) else json.loads(ana.fields)
    assert fields == {"data_nascimento": "01/02/1990"}  # a template variable


def test_ragged_rows(imp: Importer) -> None:
    report = imp(
        name(1, "cBRAD"),
        "nome;email;cidade\n"
        "Ana;a@x.com\n"  # short: padded
        "Bia;b@x.com;Rio;;\n"  # empty extra values: fine
        "Caio;c@x.com;SP;extra\n"  # extra value: rejected
        "\n;;\n",  # blank lines: skipped
    )
    assert report.contacts == 2
    assert report.rejected_rows == {"extra-values": 1}
    assert report.rejected_csv is not None
    with report.rejected_csv.open(encoding="utf-8-sig") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    assert rows[0][:5] == ["linha", "regra", "codigo", "motivo", "reason"]
    assert rows[1][:3] == ["4", "N22", "extra-values"] and rows[1][5:] == [
        "Caio",
        "c@x.com",
        "SP",
        "extra",
    ]


def test_rejected_rows_report_is_formula_safe(imp: Importer) -> None:
    report = imp(name(1, "cBRAD_smslong"), 'nome;telefone\n=HYPERLINK("x");\n')
    assert report.outcome == "rejected"
    assert report.rejected_csv is not None
    text = report.rejected_csv.read_text(encoding="utf-8-sig")
    assert "'=HYPERLINK" in text  # E2


@pytest.mark.parametrize(
    ("params", "header", "what"),
    [
        ("cBRAD_smslong", "nome;email\n", "phone"),
        ("cBRAD_email", "nome;telefone\n", "e-mail"),
        ("cBRAD", "nome;cidade\n", "phone or e-mail"),
    ],
)
def test_n24_missing_column_rejects_the_file(
    imp: Importer, params: str, header: str, what: str
) -> None:
    report = imp(name(1, params), header + "Ana;x\n")
    assert report.outcome == "rejected"
    problem = report.problems[0]
    assert problem.code == "missing-column" and problem.rule == "N24"
    assert f"no {what} column" in problem.message and "telefone" in problem.message_pt + "e-mail"
    assert imp.rows("SELECT * FROM contacts") == []


def test_n24_rows_without_the_channel_address_are_rejected_not_the_file(imp: Importer) -> None:
    report = imp(name(1, "cBRAD_email"), "nome;email;telefone\nAna;a@x.com;\nBia;;11998877665\n")
    assert report.outcome == "imported" and report.rejected_rows == {"missing-address": 1}
    assert report.recipients == 1


def test_a_100_mb_line_is_refused_without_being_held(imp: Importer, tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8") as out:
        out.write("nome;email\nAna;a@x.com\n")
        out.write("Huge;" + "x" * (100 << 20) + "\n")
        out.write("Bia;b@x.com\n")
    tracemalloc.start()
    try:
        report = imp(name(1, "cBRAD"), big.read_bytes())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.contacts == 2 and report.rejected_rows == {"line-too-long": 1}
    # the test itself holds the file's bytes once; the import must not hold the line again
    assert peak < 2 * (100 << 20) + (20 << 20)


# -- campaigns (N27, N28, D3, D4) --------------------------------------------------------------


def deliveries(imp: Importer) -> list[Any]:
    return imp.rows("SELECT * FROM deliveries ORDER BY position")


def test_campaign_with_pacing_deliveries_in_file_order(imp: Importer) -> None:
    lines = "".join(f"P{i};119{i:08d}\n" for i in range(1, 11))
    report = imp(name(1, "cBRAD_smslong_q30010"), "nome;telefone\n" + lines)
    assert report.outcome == "imported" and report.campaign_id is not None
    assert (report.recipients, report.pending, report.batches) == (10, 10, 4)  # 3,3,3,1
    rows = deliveries(imp)
    assert [r.address for r in rows] == [f"119{i:08d}" for i in range(1, 11)]  # D3 order
    assert [r.batch for r in rows] == [1, 1, 1, 2, 2, 2, 3, 3, 3, 4]
    assert {r.status for r in rows} == {"pending"}
    campaign = imp.rows("SELECT * FROM campaigns")[0]
    assert campaign.channel == "sms-long" and campaign.status == "scheduled"
    assert (campaign.pacing_kind, campaign.pacing_value, campaign.pacing_interval_s) == (
        "percent",
        30,
        600,
    )
    assert campaign.body == "Oi {{ nome }}" and campaign.recipients == 10
    assert "no sender account" in (campaign.status_reason or "")
    assert report.held_reason == campaign.status_reason


def test_sqlite_sorts_an_audience_with_a_small_cache_and_gives_the_usual_one_back(
    imp: Importer, store: Store
) -> None:
    """Issue 16, goal 4: on SQLite a campaign's audience is sorted with an 8 MiB page cache
    (each sorter may hold as much as the cache: memory stays flat with the audience); the
    pooled connection gets the usual 64 MiB back, also when the import fails (N20)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("a SQLite pragma")
    seen: list[str] = []

    def pragma(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if "cache_size" in statement:
            seen.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", pragma)
    small, usual = "PRAGMA cache_size=-8192", "PRAGMA cache_size=-65536"
    report = imp(name(1, "cBRAD_smslong"), "nome;telefone\nAna;11998877665\n")
    assert report.outcome == "imported" and report.recipients == 1
    assert seen == [small, usual]
    failed = imp(name(2, "cBRAD_whatsappprospect_ntPROMO"), "nome;telefone\nC;11998877665\n")
    assert failed.outcome == "rejected" and failed.problems[0].code == "no-prospects"
    assert seen == [small, usual, small, usual]


def test_d4_suppressed_skipped_and_repeated_addresses(imp: Importer, store: Store) -> None:
    now = store.clock.now()
    with store.write() as c:
        c.execute(
            sa.insert(t.suppressions).values(
                kind="email",
                address="sup@x.com",
                origin="bounce",
                created_by="test",
                created_at=now,
            )
        )
    imp(name(1, "cBRAD"), "nome;email;cpf\nRecente;rec@x.com;9\n")
    with store.write() as c:
        c.execute(sa.update(t.contacts).values(last_interaction_at=now - timedelta(hours=2)))
    report = imp(
        name(2, "cBRAD_email_x36"),
        "nome;email;cpf\nA;a@x.com;1\nS;SUP@x.com;2\nR;rec@x.com;9\nB;a@x.com;3\n",
    )
    assert (report.recipients, report.pending, report.suppressed, report.skipped) == (3, 1, 1, 1)
    assert report.duplicate_addresses == 1  # key 3 has a@x.com too: one message per address
    states = [(r.address, r.status, r.batch) for r in deliveries(imp)]
    assert states == [
        ("a@x.com", "pending", 1),
        ("SUP@x.com", "suppressed", 0),
        ("rec@x.com", "skipped", 0),
    ]


def test_n28_sms_text_from_the_row_or_the_wallet(imp: Importer) -> None:
    report = imp(
        name(1, "cSEMTEXTO_smslong"),
        "nome;telefone;mensagem\nA;11998877665;Olá A\nB;11988887777;\n",
    )
    assert report.rejected_rows == {"missing-message": 1}  # no template to fall back on
    payload = deliveries(imp)[0].payload
    payload = payload if isinstance(payload, dict) else json.loads(payload)
    assert payload == {"message": "Olá A"}
    rejected = imp(name(2, "cSEMTEXTO_smslong"), "nome;telefone\nA;11998877665\n")
    assert rejected.outcome == "rejected" and rejected.problems[0].code == "missing-message"
    ok = imp(name(3, "cBRAD_smslong"), "nome;telefone\nA;11998877665\n")  # wallet template
    assert ok.outcome == "imported"


def test_n28_email_body_from_sibling_html_or_wallet_template(imp: Importer) -> None:
    path = name(1, "cBRAD_email_teOi")
    html = path[:-4] + ".html"
    imp(path, "nome;email\nA;a@x.com\n", companions={html: "<p>Oi {{ nome }}, sibling</p>"})
    imp(name(2, "cBRAD_email"), "nome;email\nA;a@x.com\n")
    bodies = [r.body for r in imp.rows("SELECT body FROM campaigns ORDER BY id")]
    assert bodies == ["<p>Oi {{ nome }}, sibling</p>", "<p>Olá {{ nome }}</p>"]
    subjects = [r.subject for r in imp.rows("SELECT subject FROM campaigns ORDER BY id")]
    assert subjects == ["Oi", "Novidades"]  # _te, else the wallet's default (N17)


def test_n28_missing_or_broken_body(imp: Importer, tmp_path: Path, clock: TestClock) -> None:
    config = load(write_config(tmp_path / "files", wallets={"X": {"email_subject": "s"}}))
    imp.config = config
    report = imp(name(1, "cX_email"), "nome;email\nA;a@x.com\n")
    assert report.outcome == "rejected" and report.problems[0].code == "missing-body"
    path = name(2, "cX_email")
    report = imp(
        path, "nome;email\nA;a@x.com\n", companions={path[:-4] + ".html": "<p>{{ nome </p>"}
    )
    assert report.problems[0].code == "bad-template" and "line 1" in report.problems[0].message


def test_n27_prospects_by_column_and_by_the_base(imp: Importer) -> None:
    imp(name(1, "cBRAD"), "nome;telefone\nConhecido;11998877665\n")
    report = imp(
        name(2, "cBRAD_whatsappprospect_ntPROMO"),
        "nome;telefone\nConhecido;11998877665\nNovo;11988887777\n",
    )
    assert report.recipients == 1
    assert [r.address for r in deliveries(imp)] == ["11988887777"]
    with_column = imp(
        name(3, "cBRAD_whatsappprospect_ntPROMO"),
        "nome;telefone;prospect\nA;11977776666;sim\nB;11966665555;não\nC;11955554444;X\n",
    )
    assert with_column.recipients == 2


def test_n20_no_prospects_fails_the_import(imp: Importer) -> None:
    imp(name(1, "cBRAD"), "nome;telefone\nConhecido;11998877665\n")
    report = imp(name(2, "cBRAD_whatsappprospect_ntPROMO"), "nome;telefone\nC;11998877665\n")
    assert report.outcome == "rejected" and report.problems[0].code == "no-prospects"
    assert len(imp.rows("SELECT * FROM campaigns")) == 0  # nothing half imported (F12)
    assert len(imp.rows("SELECT * FROM mailings")) == 1


# -- file-level rules ------------------------------------------------------------------------


def test_n6_duplicate_sequence_is_rejected(imp: Importer) -> None:
    assert imp(name(1, "cBRAD"), "nome;email\nA;a@x.com\n").outcome == "imported"
    report = imp(name(1, "cITAU"), "nome;email\nB;b@x.com\n")
    assert report.outcome == "rejected" and report.problems[0].code == "duplicate-sequence"
    assert report.problems[0].rule == "N6"
    assert imp(name(1, "cITAU"), "nome;email\nB;b@x.com\n", source="other").outcome == "imported"


def test_f10_the_same_file_twice_is_imported_once(imp: Importer) -> None:
    first = imp(name(1, "cBRAD"), "nome;email\nA;a@x.com\n")
    again = imp(name(1, "cBRAD"), "nome;email\nA;a@x.com\n")
    assert first.outcome == "imported" and again.outcome == "duplicate"
    assert again.file_id == first.file_id
    assert len(imp.rows("SELECT * FROM files")) == 1


def test_n19_deadline_passed_is_rejected_at_import(imp: Importer, clock: TestClock) -> None:
    fmt = load_plugins().formats()["mailing"](
        FormatContext(imp.config, "drop", local_today(clock, imp.config.tz), clock.now())
    )
    verdict = fmt.inspect(name(1, "cBRAD_smslong_LE2311260859"), set())  # 08:59, now 09:00
    assert verdict.action == "reject" and verdict.problems[0].code == "deadline-passed"
    assert fmt.inspect(name(1, "cBRAD_smslong_LE2311260901"), set()).action == "import"


def test_n5_only_todays_files(imp: Importer, clock: TestClock) -> None:
    fmt = load_plugins().formats()["mailing"](
        FormatContext(imp.config, "drop", local_today(clock, imp.config.tz), clock.now())
    )
    later = fmt.inspect(name(1, "cBRAD", day="241126"), set())
    earlier = fmt.inspect(name(1, "cBRAD", day="221126"), set())
    assert (later.action, later.status) == ("wait", "waiting")
    assert (earlier.action, earlier.status) == ("ignore", "ignored")
    assert later.problems[0].code == "not-today"


def test_n13_wallet_from_the_folder(imp: Importer) -> None:
    report = imp("MAIOR30/" + name(1), "nome;email\nA;a@x.com\n")
    assert report.wallet == "MAIOR30"


def test_start_and_deadline_are_local_times(imp: Importer) -> None:
    imp(name(1, "cBRAD_smslong_i2311261400_LE2311261800"), "nome;telefone\nA;11998877665\n")
    with imp.store.read() as c:
        campaign = c.execute(sa.select(t.campaigns)).one()
    assert campaign.start_at == datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 14:00 at -03:00
    assert campaign.deadline == datetime(2026, 11, 23, 21, 0, tzinfo=UTC)


def test_f12_a_failure_inside_the_transaction_leaves_nothing(
    imp: Importer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.store import imports

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(imports._Commit, "_membership", boom)
    with pytest.raises(RuntimeError):
        imp(name(1, "cBRAD_smslong"), "nome;telefone\nA;11998877665\n")
    for table in ("contacts", "files", "mailings", "wallets", "campaigns", "deliveries"):
        assert imp.rows(f"SELECT * FROM {table}") == [], table
    monkeypatch.undo()
    assert imp(name(1, "cBRAD_smslong"), "nome;telefone\nA;11998877665\n").outcome == "imported"


def test_n28_a_template_reaching_outside_the_sandbox_is_refused(imp: Importer) -> None:
    path = name(1, "cBRAD_email_teOi")
    report = imp(
        path,
        "nome;email\nA;a@x.com\n",
        companions={path[:-4] + ".html": "<p>{{ ''.__class__.__mro__ }}</p>"},
    )
    assert report.outcome == "rejected" and report.problems[0].code == "bad-template"
    assert "unsafe" in report.problems[0].message

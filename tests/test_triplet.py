"""The ``triplet`` format (T1–T7) through the collector on a local folder: a send is taken
whole once its three files are there and stable, waits (saying what is missing) while it is
incomplete and is reported after ``incomplete_after``, is rejected whole for a fourth file or
a wrong type, is processed once per name (T3), and its CONF is checked to the letter (T4);
the campaign it makes (T5), its account, its schedule (T6) and its size pacing (T7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from engine.cli.campaigns import campaign as campaign_group
from engine.cli.collect import sources as sources_command
from engine.cli.context import AppContext
from engine.cli.names import plan_command
from engine.clock import TestClock
from engine.config import Config, ConfigError
from engine.intake.collector import Collector, PollSummary
from engine.plugins import load_plugins
from engine.plugins.format import FormatContext
from engine.schedule import Pacing
from engine.store import Store
from engine.store import schema as t
from plugins.formats.triplet import CONF_HEADER, TripletFormat, parse_member
from tests.helpers import load, write_config

HEADER = ";".join(CONF_HEADER)
CONF = (
    f"{HEADER}\n"
    "Natal 2026;Oferta para {{ NOME }};Loja Exemplo;ofertas@loja.example;sac@loja.example;\n"
)
HTML = "<html><body><p>Olá {{ NOME }}, de {{ CIDADE }}!</p></body></html>"
MAIL = (
    "EMAIL;NOME;CIDADE\n"
    "ana@cliente.example;Ana;Recife\n"
    "Bia@Cliente.example;Bia;Natal\n"
    "nao-e-email;Caio;Manaus\n"
    "\n"
    "ana@cliente.example;Ana Maria;Olinda\n"
)
ACCOUNT = {"channel": "email", "from_address": "ofertas@loja.example", "sandbox": True}


def names(send: str = "Promo1", day: str = "20261123") -> dict[str, str]:
    return {kind: f"{send}_{kind}_{day}" for kind in ("CONF", "HTML", "MAIL")}


def drop_send(folder: Path, send: str = "Promo1", day: str = "20261123", **files: str) -> None:
    content = {"CONF": CONF, "HTML": HTML, "MAIL": MAIL, **files}
    for kind, name in names(send, day).items():
        if content.get(kind) is not None:
            (folder / name).write_text(content[kind], encoding="utf-8")


@pytest.fixture
def drop(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    return folder


def triplet_config(
    tmp_path: Path,
    source: dict[str, Any] | None = None,
    *,
    store: Store | None = None,
    **sections: Any,
) -> Config:
    """A ``triplet`` source on ``drop``; with ``store``, the configuration names its database
    (for the commands run on it)."""
    sections.setdefault("accounts", {"mail": ACCOUNT})
    if store is not None:
        sections["engine"] = {"database_url": store.engine.url.render_as_string(False)}
    return load(
        write_config(
            tmp_path,
            sources={
                "mediapost": {
                    "kind": "local",
                    "path": "drop",
                    "format": "triplet",
                    **(source or {}),
                }
            },
            **sections,
        )
    )


def poll(c: Collector) -> PollSummary:
    """One poll, then the clock moves on past the minimum age (F8)."""
    summary = c.poll_blocking(c.config.sources["mediapost"])
    assert isinstance(c.clock, TestClock)
    c.clock.jump(timedelta(minutes=2))
    return summary


def statuses(store: Store) -> dict[str, tuple[str, str | None]]:
    return {o.path: (o.status, o.code) for o in store.files.observations()}


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def collector(store: Store, config: Config, clock: TestClock) -> Collector:
    return Collector(store, load_plugins(), config, clock)


# -- names (T1, T2) ----------------------------------------------------------------------------


def verdicts(listing: set[str], config: Config) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    fmt = TripletFormat(
        FormatContext(config, "mediapost", datetime(2026, 11, 23).date(), datetime.now(UTC))
    )
    out = {}
    for path in sorted(listing):
        v = fmt.inspect(path, listing)
        out[path] = (v.action, v.status, tuple(p.code for p in v.problems))
    return out


def test_t1_t2_a_send_is_its_three_files_by_name(tmp_path: Path, drop: Path) -> None:
    config = triplet_config(tmp_path)
    n = names()
    whole = verdicts(set(n.values()) | {"leia-me.txt", "Promo1_ABERTURA_20261123"}, config)
    assert whole == {
        n["CONF"]: ("ignore", "companion", ()),
        n["HTML"]: ("ignore", "companion", ()),
        n["MAIL"]: ("import", "ready", ()),
        "leia-me.txt": ("ignore", "not-triplet", ()),
        "Promo1_ABERTURA_20261123": ("ignore", "result", ()),  # what disparo published
    }
    # an underscore in the send's name is the send's: the type is the last word but one
    member = parse_member("BRAD/Meu_Envio_42_MAIL_20261123")
    assert member is not None
    assert (member.folder, member.send, member.type, member.day) == (
        "BRAD",
        "Meu_Envio_42",
        "MAIL",
        "20261123",
    )
    # incomplete: every file waits, saying what is missing
    waiting = verdicts({n["CONF"], n["MAIL"]}, config)
    assert {v[:2] for v in waiting.values()} == {("wait", "incomplete")}
    # a fourth file, a lower-case type, an extension, a date that is not one: rejected whole,
    # once (by its MAIL; the others go with it)
    for extra in ("Promo1_XML_20261123", "Promo1_mail_20261123", "Promo1_MAIL_20261123.csv"):
        found = verdicts({*n.values(), extra}, config)
        assert found[n["MAIL"]][:2] == ("reject", "rejected"), extra
        assert [v[1] for p, v in found.items() if p != n["MAIL"]] == ["companion"] * 3
    [(action, _, codes)] = [
        v
        for v in verdicts(set(names(day="20261332").values()), config).values()
        if v[0] != "ignore"
    ]
    assert (action, codes) == ("reject", ("bad-date",))


# -- the collector (T2, T3, T5) --------------------------------------------------------------


def test_a_complete_send_is_imported_whole_and_makes_an_e_mail_campaign(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    config = triplet_config(tmp_path, {"batch_size": 2, "batch_every": "1h"})
    c = collector(store, config, clock)
    drop_send(drop)
    first = poll(c)
    assert first.unstable == [names()["MAIL"]] and first.reports == []  # seen once (F8)
    [report] = poll(c).reports
    assert report.outcome == "imported", report.problems
    assert (report.rows, report.contacts, report.recipients) == (4, 2, 2)
    assert dict(report.rejected_rows) == {"bad-email": 1}
    # the three files went to processed/, the MAIL's rejected rows beside it
    assert tree(drop) == [
        "processed/Promo1_CONF_20261123",
        "processed/Promo1_HTML_20261123",
        "processed/Promo1_MAIL_20261123",
        "processed/Promo1_MAIL_20261123.rejeitados.csv",
    ]
    rejected = (drop / "processed" / "Promo1_MAIL_20261123.rejeitados.csv").read_text("utf-8-sig")
    assert "nao-e-email" in rejected and ";T5;bad-email;" in rejected
    assert {s for s, _ in statuses(store).values()} == {"imported"}
    campaign = store.campaigns.get(report.campaign_id or 0)
    assert campaign is not None
    assert (campaign.name, campaign.channel, campaign.account, campaign.wallet) == (
        "Natal 2026",
        "email",
        "mail",
        "mediapost",
    )
    content = campaign.content
    assert (content.subject, content.body) == ("Oferta para {{ NOME }}", HTML)
    assert (content.from_name, content.sender, content.reply_to) == (
        "Loja Exemplo",
        "ofertas@loja.example",
        "sac@loja.example",
    )
    assert campaign.pacing == Pacing.size(2, timedelta(hours=1))
    assert campaign.start_at == clock.now() - timedelta(minutes=2)  # DATA_ENVIO empty: at once
    with store.read() as conn:
        fields = {
            r.email: r.fields
            for r in conn.execute(sa.select(t.contacts.c.email, t.contacts.c.fields))
        }
        kept = conn.execute(sa.select(t.rejected_rows)).one()
    # every column a field under its own title; a later row of the same address wins (merge)
    assert fields["ana@cliente.example"] == {
        "EMAIL": "ana@cliente.example",
        "NOME": "Ana Maria",
        "CIDADE": "Olinda",
    }
    assert fields["Bia@cliente.example"]["CIDADE"] == "Natal"
    assert (kept.line, kept.address, kept.code, kept.rule) == (4, "nao-e-email", "bad-email", "T5")


def test_an_incomplete_send_waits_saying_what_is_missing_then_is_reported(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    config = triplet_config(tmp_path, {"incomplete_after": "6h"}, store=store)
    c = collector(store, config, clock)
    drop_send(drop, HTML=None)
    poll(c)
    summary = poll(c)
    assert sorted(summary.waiting) == [names()["CONF"], names()["MAIL"]]
    seen = {o.path: o for o in store.files.observations()}
    assert {o.status for o in seen.values()} == {"incomplete"}
    assert "waits for `Promo1_HTML_20261123`" in (seen[names()["MAIL"]].message or "")
    # disparo sources shows it as waiting, with the file missing
    result = CliRunner().invoke(sources_command, [], obj=AppContext(config.path, clock))
    assert result.exit_code == 0, result.output
    assert "waiting" in result.output and "Promo1_HTML_20261123" in result.output
    clock.jump(timedelta(hours=6))  # incomplete_after: reported, its files rejected
    summary = poll(c)
    assert summary.rejected_names == [names()["MAIL"]]
    assert tree(drop) == [
        "rejected/Promo1_CONF_20261123",
        "rejected/Promo1_MAIL_20261123",
        "rejected/Promo1_MAIL_20261123.erro.txt",
    ]
    report = (drop / "rejected" / "Promo1_MAIL_20261123.erro.txt").read_text("utf-8")
    assert "[T2] incomplete-send" in report and "Promo1_HTML_20261123" in report
    assert "ficou incompleto por 6 h" in report and "stayed incomplete for 6 h" in report
    assert {s for s, _ in statuses(store).values()} == {"rejected"}
    # sent again, whole: taken
    drop_send(drop)
    poll(c)
    assert [r.outcome for r in poll(c).reports] == ["imported"]


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ("Promo1_XML_20261123", "bad-type"),
        ("Promo1_MAIL_20261123.txt", "extension"),
    ],
)
def test_a_fourth_file_or_another_type_rejects_the_send_whole(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path, extra: str, code: str
) -> None:
    c = collector(store, triplet_config(tmp_path), clock)
    drop_send(drop)
    (drop / extra).write_text("x")
    poll(c)
    summary = poll(c)
    assert summary.rejected_names == [names()["MAIL"]] and summary.reports == []
    assert tree(drop) == sorted(
        [f"rejected/{n}" for n in (*names().values(), extra)]
        + ["rejected/Promo1_MAIL_20261123.erro.txt"]
    )
    report = (drop / "rejected" / "Promo1_MAIL_20261123.erro.txt").read_text("utf-8")
    assert f"] {code}:" in report and "[T2] too-many-files" in report
    assert "um envio tem exatamente três" in report
    assert store.imports.contacts_count() == 0


def test_a_wrong_type_in_a_send_of_three_says_how_to_write_it(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    c = collector(store, triplet_config(tmp_path), clock)
    drop_send(drop, HTML=None)
    (drop / "Promo1_html_20261123").write_text(HTML)
    poll(c)
    poll(c)
    report = (drop / "rejected" / "Promo1_MAIL_20261123.erro.txt").read_text("utf-8")
    assert "[T2] bad-type" in report and "upper case: `HTML`" in report
    assert "too-many-files" not in report


def test_t3_a_send_name_is_processed_once_even_with_other_content(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    c = collector(store, triplet_config(tmp_path), clock)
    drop_send(drop)
    poll(c)
    poll(c)
    drop_send(drop, MAIL="EMAIL;NOME\nnovo@cliente.example;Novo\n")  # uploaded again
    poll(c)
    summary = poll(c)
    assert [r.outcome for r in summary.reports] == ["duplicate"]
    assert store.imports.contacts_count() == 2  # nothing of it imported
    report = (drop / "rejected" / "Promo1_MAIL_20261123.erro.txt").read_text("utf-8")
    assert "[T3] already-processed" in report and "já foi processado em 23/11/2026" in report
    assert sorted(p.name for p in (drop / "rejected").iterdir()) == [
        "Promo1_CONF_20261123",
        "Promo1_HTML_20261123",
        "Promo1_MAIL_20261123",
        "Promo1_MAIL_20261123.erro.txt",
    ]
    assert {s for p, (s, _) in statuses(store).items()} == {"duplicate"}
    assert {code for _, code in statuses(store).values()} == {"already-processed"}
    # another date is another send
    drop_send(drop, day="20261124")
    poll(c)
    assert [r.outcome for r in poll(c).reports] == ["imported"]


def test_a_send_rejected_before_may_be_sent_again_and_keeps_both_reports(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    c = collector(store, triplet_config(tmp_path), clock)
    drop_send(drop, CONF="CAMPANHA;ASSUNTO\nx;y\n")
    poll(c)
    poll(c)
    drop_send(drop, CONF="CAMPANHA;ASSUNTO\nx;y\n")  # the same mistake again
    poll(c)
    poll(c)
    rejected = sorted(p.name for p in (drop / "rejected").iterdir())
    assert rejected == [
        "Promo1_CONF_20261123",
        "Promo1_CONF_20261123-2",
        "Promo1_HTML_20261123",
        "Promo1_HTML_20261123-2",
        "Promo1_MAIL_20261123",
        "Promo1_MAIL_20261123-2",
        "Promo1_MAIL_20261123-2.erro.txt",
        "Promo1_MAIL_20261123.erro.txt",
    ]
    drop_send(drop)  # fixed
    poll(c)
    assert [r.outcome for r in poll(c).reports] == ["imported"]


# -- CONF (T4), HTML and MAIL (T5) -----------------------------------------------------------


def rejected_report(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path, **files: str
) -> str:
    c = collector(store, triplet_config(tmp_path), clock)
    drop_send(drop, **files)
    poll(c)
    [report] = poll(c).reports
    assert report.outcome == "rejected"
    assert store.imports.contacts_count() == 0
    return (drop / "rejected" / "Promo1_MAIL_20261123.erro.txt").read_text("utf-8")


def test_t4_a_conf_with_another_header_names_the_expected_one(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    conf = CONF.replace("RESPONDER_PARA", "RESPONDER")
    report = rejected_report(store, clock, tmp_path, drop, CONF=conf)
    assert "[T4] bad-conf-header" in report
    assert f"must be exactly `{HEADER}`" in report and f"deve ser exatamente `{HEADER}`" in report
    assert "RESPONDER;DATA_ENVIO" in report  # what was found


@pytest.mark.parametrize(
    ("conf", "expected"),
    [
        (f"{HEADER}\n", "[T4] conf-rows"),
        (CONF + "Outra;b;c;d@x.example;;\n", "[T4] conf-rows"),
        (f"{HEADER}\nNatal;Oi;Loja;ofertas@loja.example\n", "[T4] conf-values"),
        (f"{HEADER}\nNatal;;Loja;ofertas@loja.example;;\n", "[T4] conf-missing"),
        (f"{HEADER}\nNatal;Oi;Loja;ofertas@;;\n", "[T4] conf-email"),
        (f"{HEADER}\nNatal;Oi;Loja;ofertas@loja.example;;2026-11-25 14:30\n", "DD/MM/YYYY HH:MM"),
        (
            f"{HEADER}\nNatal;Oi {{{{ x.__class__ }}}};Loja;ofertas@loja.example;;\n",
            "[T5] bad-template",
        ),
        ("PK\x03\x04 not text", "[T1] not-text"),
    ],
)
def test_t4_conf_errors_reject_the_send_with_what_to_fix(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path, conf: str, expected: str
) -> None:
    report = rejected_report(store, clock, tmp_path, drop, CONF=conf)
    assert expected in report
    assert "Situação: RECUSADO" in report and "Status: REJECTED" in report


def test_every_problem_of_a_send_is_reported_at_once(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    report = rejected_report(
        store,
        clock,
        tmp_path,
        drop,
        CONF=f"{HEADER}\nNatal;Oi;Loja;ofertas@loja.example;;amanhã\n",
        HTML="<p>{% if %}</p>",
        MAIL="NOME;CIDADE\nAna;Recife\n",
    )
    for code in ("[T4] bad-send-date", "[T5] bad-template", "[T5] missing-email-column"):
        assert code in report


def test_a_mail_without_a_usable_address_is_rejected(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    report = rejected_report(store, clock, tmp_path, drop, MAIL="EMAIL;NOME\nx@;Ana\n;Bia\n")
    assert "[T5] empty-mail" in report
    rows = (drop / "rejected" / "Promo1_MAIL_20261123.rejeitados.csv").read_text("utf-8-sig")
    assert "bad-email" in rows and "missing-email" in rows


def test_data_envio_is_local_time(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    c = collector(store, triplet_config(tmp_path), clock)
    drop_send(drop, CONF=f"{HEADER}\nNatal;Oi;Loja;ofertas@loja.example;;25/11/2026 14:30\n")
    poll(c)
    [report] = poll(c).reports
    campaign = store.campaigns.get(report.campaign_id or 0)
    assert campaign is not None
    # 14:30 in São Paulo is 17:30 UTC
    assert campaign.start_at == datetime(2026, 11, 25, 17, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("accounts", "source", "account", "held"),
    [
        # the account that sends as REMETENTE_EMAIL, among several
        (
            {
                "a": {**ACCOUNT, "from_address": "outro@loja.example"},
                "b": ACCOUNT,
            },
            {},
            "b",
            None,
        ),
        # none sends as it: the source's account
        (
            {
                "a": {**ACCOUNT, "from_address": "x@loja.example"},
                "b": {**ACCOUNT, "from_address": "y@loja.example"},
            },
            {"account": "a"},
            "a",
            None,
        ),
        # none sends as it, the source names none: the only e-mail account
        ({"a": {**ACCOUNT, "from_address": "x@loja.example"}}, {}, "a", None),
        # several, none named: held with the reason
        (
            {
                "a": {**ACCOUNT, "from_address": "x@loja.example"},
                "b": {**ACCOUNT, "from_address": "y@loja.example"},
            },
            {},
            None,
            'set account = "NAME" on the source',
        ),
    ],
)
def test_t5_the_sending_account(
    store: Store,
    clock: TestClock,
    tmp_path: Path,
    drop: Path,
    accounts: dict[str, Any],
    source: dict[str, Any],
    account: str | None,
    held: str | None,
) -> None:
    c = collector(store, triplet_config(tmp_path, source, accounts=accounts), clock)
    drop_send(drop)
    poll(c)
    [report] = poll(c).reports
    campaign = store.campaigns.get(report.campaign_id or 0)
    assert campaign is not None and campaign.account == account
    if held is None:
        assert campaign.status_reason is None
    else:
        assert (
            held in (campaign.status_reason or "") and report.held_reason == campaign.status_reason
        )


def test_the_source_account_must_be_an_e_mail_account(tmp_path: Path, drop: Path) -> None:
    with pytest.raises(ConfigError) as found:
        triplet_config(tmp_path, {"account": "nada"})
    assert "sources.mediapost.account: `nada` is not in [accounts] (e-mail accounts: mail)" in str(
        found.value
    )


# -- schedule (T6) and size pacing (T7) ------------------------------------------------------


def test_t6_a_triplet_source_is_polled_every_hour_on_the_hour(
    tmp_path: Path, drop: Path, store: Store, clock: TestClock
) -> None:
    config = triplet_config(tmp_path)
    settings = config.sources["mediapost"]
    assert settings.schedule.cron == "0 * * * *" and settings.publish == ("triplet-results",)
    assert settings.options["results_after"] == timedelta(days=3)
    c = collector(store, config, clock)
    now = datetime(2026, 11, 23, 12, 7, tzinfo=UTC)
    assert c.next_poll(settings, now) == datetime(2026, 11, 23, 13, 0, tzinfo=UTC)
    # an interval given on the source wins over the format's default
    every = triplet_config(tmp_path, {"every": "5m"}).sources["mediapost"].schedule
    assert (every.cron, every.every) == (None, timedelta(minutes=5))


def test_t7_size_pacing_is_shown_by_plan_and_campaign_show(
    store: Store, clock: TestClock, tmp_path: Path, drop: Path
) -> None:
    config = triplet_config(tmp_path, {"batch_size": 2, "batch_every": "1h"}, store=store)
    c = collector(store, config, clock)
    drop_send(drop, MAIL="EMAIL\n" + "".join(f"p{i}@cliente.example\n" for i in range(5)))
    poll(c)
    [report] = poll(c).reports
    assert report.batches == 3
    shown = CliRunner().invoke(
        campaign_group,
        ["show", str(report.campaign_id), "--json"],
        obj=AppContext(config.path, clock),
    )
    assert shown.exit_code == 0, shown.output
    schedule = json.loads(shown.output)["schedule"]
    assert [b["size"] for b in schedule["batches"]] == [2, 2, 1]
    text = CliRunner().invoke(
        campaign_group, ["show", str(report.campaign_id)], obj=AppContext(config.path, clock)
    )
    assert "2 every 1 h" in text.output
    assert [b["size"] for b in plan(config, clock, 5)] == [2, 2, 1]
    # the seed's example: batches of up to 5,000 every hour, 50,000 contacts in 10 sends
    seed = triplet_config(tmp_path, {"batch_size": 5000, "batch_every": "1h"}, store=store)
    batches = plan(seed, clock, 50_000)
    assert [b["size"] for b in batches] == [5000] * 10
    assert [b["release_at"][11:16] for b in batches[:3]] == ["09:00", "10:00", "11:00"]


def plan(config: Config, clock: TestClock, contacts: int) -> list[dict[str, Any]]:
    args = ["--source", "mediapost", "--contacts", str(contacts), "--now", "2026-11-23T09:00"]
    result = CliRunner().invoke(plan_command, [*args, "--json"], obj=AppContext(config.path, clock))
    assert result.exit_code == 0, result.output
    batches: list[dict[str, Any]] = json.loads(result.output)["batches"]
    return batches

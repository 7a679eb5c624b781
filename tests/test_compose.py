"""Campaigns composed by an operator for groups (`campaign new`, `campaign start`), end to end
to the SMTP sink: the audience is the groups' members minus suppressions, frozen at the start,
sent like a file campaign."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.testing import SmtpSink, start_smtp_sink, write_config


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with start_smtp_sink() as s:
        yield s


@pytest.fixture
def workspace(tmp_path: Path, sink: SmtpSink, run_cli: Any) -> Path:
    cfg = write_config(
        tmp_path,
        engine={"database_url": f"sqlite:///{tmp_path}/d.db"},
        accounts={
            "avisos": {
                "channel": "email",
                "from_address": "avisos@empresa.com.br",
                "sandbox": True,
                "sink": sink.address,
            },
            "sms": {"channel": "sms-long", "sandbox": True},
        },
    )
    (tmp_path / "g1.csv").write_text(
        "nome;email;cidade\nAna;ana@example.com;Recife\nBia;bia@example.com;Natal\n"
    )
    (tmp_path / "g2.csv").write_text(
        "nome;email\nBia;bia@example.com\nCarla;carla@example.com\nDora;dora@example.com\n"
    )
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}, de {{ cidade or 'algum lugar' }}</p>")
    for group in ("g1", "g2"):
        assert cli(run_cli, cfg, "groups", "create", group).exit_code == 0
        assert (
            cli(run_cli, cfg, "groups", "import", group, str(tmp_path / f"{group}.csv")).exit_code
            == 0
        )
    assert cli(run_cli, cfg, "suppressions", "add", "dora@example.com").exit_code == 0
    return cfg


def cli(run_cli: Any, config: Path, *args: str) -> Any:
    return run_cli("--config", str(config), *args)


def campaigns(run_cli: Any, config: Path) -> dict[int, dict[str, Any]]:
    result = cli(run_cli, config, "campaigns", "--json")
    assert result.exit_code == 0, result.output
    return {c["id"]: c for c in json.loads(result.output)}


def new(run_cli: Any, cfg: Path, *extra: str) -> Any:
    return cli(
        run_cli,
        cfg,
        "campaign",
        "new",
        "--account",
        "avisos",
        "--group",
        "g1",
        "--group",
        "g2",
        "--subject",
        "Novidades para {{ nome }}",
        "--html",
        str(cfg.parent / "body.html"),
        "--json",
        *extra,
    )


def test_a_composed_campaign_reaches_the_groups_members_minus_suppressions(
    run_cli: Any, workspace: Path, sink: SmtpSink
) -> None:
    created = new(run_cli, workspace, "--name", "Boletim", "--priority", "3")
    assert created.exit_code == 0, created.output
    cid = json.loads(created.output)["id"]
    c = campaigns(run_cli, workspace)[cid]
    # bia is in both groups: once; dora is suppressed (D4)
    assert (c["origin"], c["status"], c["recipients"], c["suppressed"]) == (
        "operator",
        "scheduled",
        4,
        1,
    )
    assert c["priority"] == 3 and c["name"] == "Boletim" and c["account"] == "avisos"
    done = cli(run_cli, workspace, "run", "--until-idle", "--settle", "0.05")
    assert done.exit_code == 0, done.output
    c = campaigns(run_cli, workspace)[cid]
    assert (c["status"], c["sent"]) == ("completed", 3)
    got = {m.rcpt_tos[0]: m.parsed() for m in sink.messages}
    assert sorted(got) == ["ana@example.com", "bia@example.com", "carla@example.com"]
    assert got["ana@example.com"]["Subject"] == "Novidades para Ana"
    body = got["ana@example.com"].get_body(("html",)).get_content()
    assert "Olá Ana, de Recife" in body
    listing = cli(run_cli, workspace, "campaigns")
    assert "operator" in listing.output


def test_a_draft_waits_and_its_audience_is_frozen_when_started(
    run_cli: Any, workspace: Path, sink: SmtpSink, tmp_path: Path
) -> None:
    created = new(run_cli, workspace, "--draft", "--pace", "50/1h")
    cid = json.loads(created.output)["id"]
    assert campaigns(run_cli, workspace)[cid]["status"] == "draft"
    cli(run_cli, workspace, "run", "--until-idle", "--settle", "0.05")
    assert campaigns(run_cli, workspace)[cid]["status"] == "draft" and sink.messages == []
    # members added before the start are in its audience
    assert cli(run_cli, workspace, "groups", "add", "g1", "eva@example.com").exit_code == 0
    viewer = cli(run_cli, workspace, "campaign", "start", str(cid), "--role", "viewer")
    assert viewer.exit_code == 1 and "operator role" in viewer.output
    started = cli(run_cli, workspace, "campaign", "start", str(cid))
    assert started.exit_code == 0, started.output
    assert "4 recipient(s)" not in started.output and "5 recipient(s)" in started.output
    again = cli(run_cli, workspace, "campaign", "start", str(cid))
    assert again.exit_code == 1 and "not a draft" in again.output
    cli(run_cli, workspace, "run", "--until-idle", "--settle", "0.05")
    c = campaigns(run_cli, workspace)[cid]
    # 50 % an hour (D5): the first batch of the 4 sendable now, the rest in an hour
    assert (c["status"], c["sent"], c["batches"]) == ("sending", 2, 2)
    assert len(sink.messages) == 2


def test_what_a_composed_campaign_refuses(run_cli: Any, workspace: Path) -> None:
    result = cli(
        run_cli,
        workspace,
        "campaign",
        "new",
        "--account",
        "nada",
        "--group",
        "g1",
        "--pace",
        "150/1h",
    )
    assert result.exit_code == 1
    assert "there is no account `nada` (accounts: avisos, sms)" in result.output
    assert "(D10)" in result.output and "--pace" in result.output and "(D5)" in result.output
    no_subject = cli(run_cli, workspace, "campaign", "new", "--account", "avisos", "--group", "g1")
    assert "--subject: an e-mail campaign needs a subject (N17)" in no_subject.output
    assert "--html" in no_subject.output
    unknown = new(run_cli, workspace, "--group", "g9")
    assert unknown.exit_code == 1 and "no group named `g9`" in unknown.output
    bad_template = cli(
        run_cli,
        workspace,
        "campaign",
        "new",
        "--account",
        "avisos",
        "--group",
        "g1",
        "--subject",
        "Olá {{ nome",
        "--html",
        str(workspace.parent / "body.html"),
    )
    assert bad_template.exit_code == 1 and "(N28)" in bad_template.output
    past = new(run_cli, workspace, "--deadline", "2001-01-01T10:00")
    assert past.exit_code == 1 and "(D8)" in past.output
    sms = cli(run_cli, workspace, "campaign", "new", "--account", "sms", "--group", "g1")
    assert sms.exit_code == 1 and "an SMS campaign needs its text" in sms.output
    assert campaigns(run_cli, workspace) == {}


def test_accounts_show_counts_the_sends_per_hour_and_the_rates(
    run_cli: Any, workspace: Path, sink: SmtpSink
) -> None:
    cid = json.loads(new(run_cli, workspace).output)["id"]
    cli(run_cli, workspace, "run", "--until-idle", "--settle", "0.05")
    assert campaigns(run_cli, workspace)[cid]["sent"] == 3
    shown = cli(run_cli, workspace, "accounts", "show", "avisos", "--json")
    assert shown.exit_code == 0, shown.output
    usage = json.loads(shown.output)
    assert usage["sent_24h"] == 3 and len(usage["sent_per_hour"]) == 24
    assert usage["sent_per_hour"][-1]["sent"] == 3
    assert (usage["bounce_rate"], usage["bounce_limit"], usage["bounce_over"]) == (0, 5.0, False)
    assert usage["settings"]["from_address"] == "avisos@empresa.com.br"
    human = cli(run_cli, workspace, "accounts", "show", "avisos")
    assert "Sent per hour" in human.output and "(D14, D15)" in human.output
    missing = cli(run_cli, workspace, "accounts", "show", "nada")
    assert missing.exit_code == 1 and "accounts: avisos, sms" in missing.output


def test_an_accounts_shown_settings_never_hold_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.config import AccountSettings, SecretRef
    from engine.sending.usage import shown_settings

    monkeypatch.setenv("SMTP_PW", "s3gredo-muito-secreto")
    s = AccountSettings("x", "email", 1.0, 1, {"password": SecretRef("password", env="SMTP_PW")})
    shown = shown_settings(s)
    assert shown["password"] == "(secret, from environment variable SMTP_PW)"
    assert "s3gredo" not in json.dumps(shown)

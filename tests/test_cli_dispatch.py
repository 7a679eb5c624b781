"""The sending commands end to end, on the sandbox transports: run --until-idle, campaigns,
campaign show/pause/resume/cancel/priority, accounts (and the guard override), suppressions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import load, name, write_config


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    drop = tmp_path / "drop"
    drop.mkdir()
    config = write_config(
        tmp_path,
        sources={"drop": {"kind": "local", "path": "drop"}},
        accounts={"sms": {"channel": "sms-long", "sandbox": True, "rate": 50}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }}, sua fatura chegou."}},
    )
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    rows = "".join(f"Cliente {i};119{i:08d}\n" for i in range(10))
    (drop / name(1, "cBRAD_smslong_q50010", day=today)).write_text("nome;telefone\n" + rows)
    return config


def cli(run_cli: Any, config: Path, *args: str) -> Any:
    return run_cli("--config", str(config), *args)


def campaigns(run_cli: Any, config: Path) -> list[dict[str, Any]]:
    result = cli(run_cli, config, "campaigns", "--json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output))


def test_run_until_idle_sends_what_is_due_to_the_sandbox_outbox(
    run_cli: Any, workspace: Path, tmp_path: Path
) -> None:
    result = cli(run_cli, workspace, "run", "--until-idle", "--settle", "0.05")
    assert result.exit_code == 0, result.output
    [campaign] = campaigns(run_cli, workspace)
    # two batches 10 minutes apart: the first is due now, the second later
    assert campaign["status"] == "sending" and campaign["sent"] == 5
    assert campaign["released_batches"] == 1 and campaign["remaining"] == 5
    lines = (tmp_path / "outbox" / "sms.jsonl").read_text().splitlines()
    sent = [json.loads(line) for line in lines]
    assert [s["To"] for s in sent] == [f"+55119{i:08d}" for i in range(5)]
    assert (
        sent[0]["Body"] == "Olá Cliente 0, sua fatura chegou." and sent[0]["channel"] == "sms-long"
    )
    show = cli(run_cli, workspace, "campaign", "show", str(campaign["id"]))
    assert "Batches" in show.output and "released" in show.output and "waiting" in show.output


def test_pause_resume_priority_cancel(run_cli: Any, workspace: Path) -> None:
    cli(run_cli, workspace, "run", "--until-idle", "--settle", "0.05")
    cid = str(campaigns(run_cli, workspace)[0]["id"])
    paused = cli(run_cli, workspace, "campaign", "pause", cid, "--reason", "cliente pediu")
    assert paused.exit_code == 0 and "sending -> paused" in paused.output
    assert campaigns(run_cli, workspace)[0]["status"] == "paused"
    again = cli(run_cli, workspace, "campaign", "pause", cid)
    assert again.exit_code == 1 and "is paused: only scheduled, sending or held" in again.output
    viewer = cli(run_cli, workspace, "campaign", "resume", cid, "--role", "viewer")
    assert viewer.exit_code == 1 and "viewer role may not resume" in viewer.output
    assert cli(run_cli, workspace, "campaign", "resume", cid).exit_code == 0
    assert cli(run_cli, workspace, "campaign", "priority", cid, "7").exit_code == 0
    assert campaigns(run_cli, workspace)[0]["priority"] == 7
    cancelled = cli(run_cli, workspace, "campaign", "cancel", cid, "--reason", "lista errada")
    assert cancelled.exit_code == 0 and "5 deliveries not sent" in cancelled.output
    [campaign] = campaigns(run_cli, workspace)
    assert campaign["status"] == "cancelled" and campaign["cancelled"] == 5
    missing = cli(run_cli, workspace, "campaign", "show", "99")
    assert missing.exit_code == 1 and "no campaign 99" in missing.output


def test_accounts_and_the_guard_override(run_cli: Any, workspace: Path) -> None:
    assert cli(run_cli, workspace, "db", "upgrade").exit_code == 0  # `accounts` makes none
    result = cli(run_cli, workspace, "accounts", "--json")
    [account] = json.loads(result.output)
    assert account["name"] == "sms" and account["guard"] == "ok" and account["sandbox"]
    assert account["bounce_limit"] == 5.0 and account["complaint_limit"] == 0.1
    refused = cli(run_cli, workspace, "accounts", "override", "sms", "--reason", "teste")
    assert refused.exit_code == 1 and "needs admin" in refused.output
    no_reason = cli(run_cli, workspace, "accounts", "override", "sms", "--role", "admin")
    assert no_reason.exit_code == 1 and "--reason" in no_reason.output
    ok = cli(
        run_cli,
        workspace,
        "accounts",
        "override",
        "sms",
        "--reason",
        "lista validada",
        "--role",
        "admin",
    )
    assert ok.exit_code == 0, ok.output
    [account] = json.loads(cli(run_cli, workspace, "accounts", "--json").output)
    assert account["override_reason"] == "lista validada"
    human = cli(run_cli, workspace, "accounts")
    assert "override by" in human.output
    cleared = cli(run_cli, workspace, "accounts", "override", "sms", "--clear", "--role", "admin")
    assert cleared.exit_code == 0
    [account] = json.loads(cli(run_cli, workspace, "accounts", "--json").output)
    assert account["override_by"] is None


def test_suppressions(run_cli: Any, workspace: Path) -> None:
    added = cli(run_cli, workspace, "suppressions", "add", "(11) 99999-0000", "--reason", "pediu")
    assert added.exit_code == 0 and "+5511999990000 suppressed" in added.output
    assert cli(run_cli, workspace, "suppressions", "add", "Ana@Example.com").exit_code == 0
    listed = json.loads(cli(run_cli, workspace, "suppressions", "--json").output)
    assert {(s["address"], s["origin"]) for s in listed} == {
        ("+5511999990000", "manual"),
        ("ana@example.com", "manual"),
    }
    bad = cli(run_cli, workspace, "suppressions", "add", "not-a-number")
    assert bad.exit_code == 1 and "not a phone number" in bad.output
    removed = cli(run_cli, workspace, "suppressions", "remove", "ana@example.com", "--reason", "ok")
    assert removed.exit_code == 0 and "manual suppression is lifted" in removed.output
    searched = json.loads(
        cli(run_cli, workspace, "suppressions", "--search", "9999", "--json").output
    )
    assert [s["address"] for s in searched] == ["+5511999990000"]

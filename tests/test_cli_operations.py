"""The operator's view of operations: ``disparo status`` lists the running engines (not the
silent ones), ``run --until-idle`` names a campaign that cannot be sent and exits 1 until it
can, and ``/metrics`` carries errors by reason, failing channels, engines and the database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.clock import TestClock
from engine.feedback.metrics import Metrics
from engine.store import Store
from engine.store import schema as t
from engine.store.delivery_errors import Counted
from tests.helpers import load, name, write_config


def test_status_lists_the_running_engines_only(run_cli: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path)
    nothing = run_cli("--config", str(config), "status")
    assert nothing.exit_code == 2 and "does not exist" in nothing.output  # never creates one
    store = Store.open(load(config).engine.database_url)
    none = run_cli("--config", str(config), "status", "--json")
    assert none.exit_code == 0 and json.loads(none.output) == {"engines": [], "unresponsive": []}
    assert "no engine running" in run_cli("--config", str(config), "status").output
    try:
        store.accounts.sync({"sms": "sms-long"})
        store.engines.register(
            "box-a:41:aaaaaa",
            host="box-a",
            pid=41,
            version="0.1.0",
            mode="run",
            lease=timedelta(seconds=30),
            config=str(config),
        )
        assert store.accounts.lease("sms", "box-a:41:aaaaaa", timedelta(seconds=30))
        stale = TestClock(datetime.now(UTC) - timedelta(minutes=5))
        Store(store.engine, stale).engines.register(
            "box-b:42:bbbbbb",
            host="box-b",
            pid=42,
            version="0.1.0",
            mode="run",
            lease=timedelta(seconds=30),
        )
    finally:
        store.close()
    body = json.loads(run_cli("--config", str(config), "status", "--json").output)
    [running] = body["engines"]
    assert running["node"] == "box-a:41:aaaaaa" and running["host"] == "box-a"
    assert running["pid"] == 41 and running["mode"] == "run" and running["accounts"] == ["sms"]
    assert running["heartbeat_age_s"] < 30 and running["in_flight"] == 0
    assert {"version", "started_at", "heartbeat_at", "mailboxes"} <= set(running)
    assert [e["node"] for e in body["unresponsive"]] == ["box-b:42:bbbbbb"]
    human = run_cli("--config", str(config), "status").output
    assert "1 engine running (box-a)" in human and "box-b:42:bbbbbb: no heartbeat since" in human


def test_run_until_idle_names_a_campaign_that_cannot_be_sent_and_exits_1(
    run_cli: Any, tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    sources = {"drop": {"kind": "local", "path": "drop"}}
    accounts = {
        "zap": {"channel": "whatsapp-shared", "sandbox": True, "from_number": "+551140040000"}
    }
    config = write_config(tmp_path, sources=sources, accounts=accounts)
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    (drop / name(1, "cBRAD_whatsappcompartilhado_ntPROMO", day=today)).write_text(
        "nome;telefone\nAna;11999887766\n"
    )
    first = run_cli("--config", str(config), "run", "--until-idle", "--settle", "0.05")
    assert first.exit_code == 1, first.output
    assert "is held: the WhatsApp template `PROMO` (_nt) is not configured" in first.output
    listed = run_cli("--config", str(config), "campaigns")
    assert "held: the WhatsApp template `PROMO`" in listed.output
    config = write_config(tmp_path, sources=sources, accounts=accounts)
    config.write_text(config.read_text() + '\n[templates.PROMO]\ncontent_sid = "HX1"\n')
    second = run_cli("--config", str(config), "run", "--until-idle", "--settle", "0.05")
    assert second.exit_code == 0, second.output
    assert "Problems" not in second.output
    [sent] = (tmp_path / "outbox" / "zap.jsonl").read_text().splitlines()
    assert json.loads(sent)["ContentSid"] == "HX1"


def test_metrics_carry_errors_failing_channels_engines_and_the_database(
    store: Store, clock: TestClock
) -> None:
    now = clock.now()
    with store.write() as c:
        campaign = c.execute(
            sa.insert(t.campaigns).values(
                name="x",
                channel="email",
                account="mail",
                status="sending",
                start_at=now,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
    store.accounts.sync({"mail": "email"})
    with store.write() as c:
        store.errors.add(campaign, "mail", [Counted("retry", "451 busy", "delivery")] * 3, conn=c)
    store.accounts.open_breaker(
        "mail",
        reason="channel failing: relay down",
        failures=5,
        retry_at=clock.now() + timedelta(minutes=1),
        pause=timedelta(minutes=1),
        audit=True,
    )
    store.engines.register(
        "n:1:x", host="n", pid=1, version="0", mode="run", lease=timedelta(seconds=30)
    )
    text = Metrics(store).render().decode()
    assert (
        'disparo_delivery_errors{account="mail",outcome="retry",reason="451 busy",'
        'scope="delivery"} 3.0'
    ) in text
    assert 'disparo_channel_failing{account="mail"} 1.0' in text
    assert "disparo_engines_running 1.0" in text
    assert "disparo_database_unavailable 0.0" in text

"""The dispatcher with the real e-mail channel and a real SMTP peer: messages delivered, hard
bounces suppressed, temporary failures retried, Message-IDs and events recorded."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import tomli_w

from engine.clock import TestClock, local_today
from engine.config import load_config
from engine.intake.importer import file_digest, import_file
from engine.plugins import load_plugins
from engine.plugins.format import FormatContext
from engine.sending.dispatcher import Dispatcher
from engine.service import signer_for
from engine.store import Store
from engine.store import schema as t
from engine.testing import write_secret
from tests.helpers import tick
from tests.peers.smtp import SmtpServer, start_smtp_server


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpServer]:
    server = start_smtp_server(tls="starttls", auth=True)
    yield server
    await asyncio.to_thread(server.wait_idle)
    for _ in range(5):
        await asyncio.sleep(0)
    server.stop()


async def test_email_campaign_end_to_end(
    tmp_path: Path,
    store: Store,
    clock: TestClock,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", smtp.password or "")
    write_secret(tmp_path / "key", "k" * 32)
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    path = tmp_path / "disparo.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "tracking": {"public_url": "https://t.example.com", "secret_file": "key"},
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "from_address": "aviso@empresa.com.br",
                        "host": smtp.host,
                        "port": smtp.port,
                        "user": smtp.user,
                        "password_env": "SMTP_PASSWORD",
                        "ca_file": str(smtp.ca_pem),
                        "rate": 100,
                    }
                },
                "wallets": {"BRAD": {"email_subject": "Novidades", "email_template": "body.html"}},
            }
        )
    )
    config = load_config(path)
    store.inline = True
    smtp.reject("gone@example.com")
    smtp.tempfail("busy@example.com")
    rows = "".join(f"P{i};p{i}@example.com\n" for i in range(20))
    spool = tmp_path / "in.csv"
    spool.write_text("nome;email\n" + rows + "G;gone@example.com\nB;busy@example.com\n")
    today = local_today(clock, config.tz)
    fmt = load_plugins().formats()["mailing"](FormatContext(config, "drop", today, clock.now()))
    report = import_file(
        store,
        fmt,
        source="drop",
        path=f"mailing_{today:%d%m%y}_001_cBRAD_email.csv",
        spool=spool,
        size=spool.stat().st_size,
        mtime=None,
        sha256=file_digest(spool),
    )
    assert report.outcome == "imported", report.problems
    dispatcher = Dispatcher(store, load_plugins(), config, clock, signer=signer_for(config))

    async def run(seconds: float) -> None:
        for _ in range(int(seconds)):
            await tick(dispatcher, clock)  # real SMTP round trips happen on this loop

    try:
        for _ in range(50):
            await run(1)
            if len(smtp.messages) >= 20:
                break
        await run(90)  # the temporary failure is retried after about a minute
        for _ in range(50):
            await run(1)
            if len(smtp.messages) >= 21:
                break
        await run(3)
    finally:
        await dispatcher.shutdown()
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(
        [f"p{i}@example.com" for i in range(20)] + ["busy@example.com"]
    )
    campaign = store.campaigns.get(report.campaign_id or 0)
    assert campaign is not None and campaign.status == "completed"
    assert campaign.counters["sent"] == 21 and campaign.counters["bounced"] == 1
    [suppressed] = store.suppressions.search()
    assert (suppressed.address, suppressed.origin) == ("gone@example.com", "bounce")
    with store.read() as c:
        rows_ = {r.address: r for r in c.execute(sa.select(t.deliveries))}
        kinds = dict(
            c.execute(sa.select(t.events.c.kind, sa.func.count()).group_by(t.events.c.kind)).all()
        )
    assert rows_["busy@example.com"].attempts == 2
    assert rows_["gone@example.com"].status == "bounced"
    assert "550" in rows_["gone@example.com"].error
    first = next(m for m in smtp.messages if m.rcpt_tos[0] == "p0@example.com")
    assert email.message_from_bytes(first.data)["Message-ID"] == rows_["p0@example.com"].message_id
    assert kinds == {"sent": 21, "bounced": 1, "retry": 1}
    with store.read() as c:
        touched = c.execute(
            sa.select(sa.func.count())
            .select_from(t.contacts)
            .where(t.contacts.c.last_interaction_at.is_not(None))
        ).scalar()
    assert touched == 21  # a send is an interaction (D4, _x)
    assert clock.now() - campaign.started_at < timedelta(minutes=10)  # type: ignore[operator]

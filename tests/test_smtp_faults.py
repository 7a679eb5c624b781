"""SMTP failures by phase, against the loopback aiosmtpd peer: a refused connection, a 554
greeting, a relay that never greets, a TLS failure, a wrong password (535) or a missing login
(530) are the account's problem — retried with ``scope="account"``, pausing the account with
the reason — never a recipient's permanent failure; only a 5xx to RCPT TO is the recipient's.
Fixing the password sends everything that waited, once."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w

from engine.clock import TestClock, local_today
from engine.config import Config, load_config
from engine.intake.importer import file_digest, import_file
from engine.plugins import load_plugins
from engine.plugins.channel import ChannelContext, Failed, Retry
from engine.plugins.format import FormatContext
from engine.sending.dispatcher import Dispatcher
from engine.store import Store
from engine.store import schema as t
from engine.testing.eventually import eventually
from tests.peers.smtp import SmtpServer, start_smtp_server
from tests.test_channels import CAMPAIGN, delivery


@pytest.fixture
async def start_smtp() -> AsyncIterator[Callable[..., SmtpServer]]:
    servers: list[SmtpServer] = []

    def start(**kwargs: Any) -> SmtpServer:
        server = start_smtp_server(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await asyncio.to_thread(server.wait_idle, 10.0)
        for _ in range(5):
            await asyncio.sleep(0)
        server.stop()


def account(server: SmtpServer | None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {
        "channel": "email",
        "from_address": "aviso@empresa.com.br",
        "host": "127.0.0.1",
        "port": server.port if server is not None else closed_port(),
        "tls": server.tls if server is not None else "none",
        "rate": 100,
        "concurrency": 3,
    }
    if server is not None and server.ca_pem is not None:
        found["ca_file"] = str(server.ca_pem)
    if server is not None and server.user is not None:
        found |= {"user": server.user, "password_env": "SMTP_PASSWORD"}
    return found | extra


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket closes


def config_with(tmp_path: Path, mail: dict[str, Any]) -> Config:
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    path = tmp_path / "disparo.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "accounts": {"avisos": mail},
                "wallets": {"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
            }
        )
    )
    return load_config(path)


async def send_once(config: Config, clock: TestClock) -> Any:
    from channels.email import EmailChannel

    channel = EmailChannel(config.accounts["avisos"], ChannelContext(config, clock))
    await channel.open()
    try:
        return await channel.send(channel.prepare(CAMPAIGN), delivery(1, "ana@example.com"))
    finally:
        await channel.close()


FAULTS: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    # name: (peer, account keys, the reason the account is retried with)
    "wrong password": (
        {"tls": "starttls", "auth": True},
        {"password_env": "WRONG_PASSWORD"},
        r"relay 127\.0\.0\.1:\d+ refused the login of disparo: 535 ",
    ),
    "no login (530)": (
        {"tls": "starttls", "auth": True},
        {"user": None, "password_env": None},
        r"the relay refused the sender \(530 ",
    ),
    "554 greeting": (
        {"tls": "none", "auth": False, "greeting": "refuse"},
        {},
        r"relay 127\.0\.0\.1:\d+ refused the session: 554 5\.3\.2 No SMTP service here",
    ),
    "never greets": (
        {"tls": "none", "auth": False, "greeting": "silent"},
        {"timeout": "1s"},
        r"relay 127\.0\.0\.1:\d+ accepted the connection but did not greet in 1 s",
    ),
    "TLS failure": (
        {"tls": "starttls", "auth": True, "foreign_ca": True},
        {},
        r"TLS with relay 127\.0\.0\.1:\d+ failed: .*certificate",
    ),
    "implicit TLS failure": (
        {"tls": "implicit", "auth": True, "foreign_ca": True},
        {},
        r"TLS with relay 127\.0\.0\.1:\d+ failed: .*certificate",
    ),
    "connection refused": (
        {},
        {},
        r"relay 127\.0\.0\.1:\d+ refused the connection",
    ),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_session_that_cannot_open_is_the_accounts_problem(
    fault: str,
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    peer, keys, reason = FAULTS[fault]
    server = None
    if peer:
        greeting = peer.pop("greeting", None)
        foreign = peer.pop("foreign_ca", False)
        server = start_smtp(**peer)
        if greeting == "refuse":
            server.refuse_sessions()
        elif greeting == "silent":
            server.never_greet()
        monkeypatch.setenv("SMTP_PASSWORD", server.password or "")
        monkeypatch.setenv("WRONG_PASSWORD", "not-the-password")
        if foreign:  # a certificate this client does not trust
            other = start_smtp(tls="starttls", auth=False)
            keys = keys | {"ca_file": str(other.ca_pem)}
    mail = {k: v for k, v in (account(server) | keys).items() if v is not None}
    result = await send_once(config_with(tmp_path, mail), clock)
    assert isinstance(result, Retry), result
    assert result.scope == "account"
    assert re.search(reason, result.reason), result.reason
    assert server is None or server.messages == []


async def test_only_a_5xx_to_rcpt_to_is_the_recipients(
    start_smtp: Callable[..., SmtpServer], tmp_path: Path, clock: TestClock
) -> None:
    server = start_smtp(tls="none", auth=False)
    server.reject("ana@example.com")
    result = await send_once(config_with(tmp_path, account(server)), clock)
    assert isinstance(result, Failed) and result.bounce and result.reason.startswith("550")
    server.tempfail("ana@example.com", code=421, text="4.3.2 Service shutting down")
    result = await send_once(config_with(tmp_path, account(server)), clock)
    assert isinstance(result, Retry) and result.scope == "account"


async def test_a_wrong_password_pauses_the_account_and_fixing_it_sends_everything_once(
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    store: Store,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_smtp(tls="starttls", auth=True)
    monkeypatch.setenv("SMTP_PASSWORD", "wrong")
    config = config_with(tmp_path, account(server))
    store.inline = True
    spool = tmp_path / "in.csv"
    spool.write_text("nome;email\n" + "".join(f"P{i};p{i}@example.com\n" for i in range(40)))
    today = local_today(clock, config.tz)
    plugins = load_plugins()
    fmt = plugins.formats()["mailing"](FormatContext(config, "drop", today, clock.now()))
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
    cid = report.campaign_id
    assert cid is not None
    dispatcher = Dispatcher(store, plugins, config, clock)

    def sends_done() -> bool:
        return all(
            s.in_flight == 0 and (s._confirming is None or s._confirming.done())
            for s in dispatcher.senders.values()
        )

    async def ticking(condition: Callable[[], object], what: str) -> None:
        """Tick and move the clock a second at a time, once the sends each tick started got
        the relay's answer (the SMTP exchanges run on this loop), until ``condition``."""

        async def check() -> object:
            if condition():
                return True
            await dispatcher.tick()
            await eventually(sends_done, what="the relay to answer the sends in flight")
            await clock.advance(1)
            return condition()

        # a minute or two of the test clock, a second per check: a generous safety net
        await eventually(check, what=what, timeout=180)

    def campaign() -> Any:
        found = store.campaigns.get(cid)
        assert found is not None
        return found

    try:
        await ticking(lambda: campaign().status == "held", "the account is paused")
        held = campaign()
        assert re.fullmatch(
            r"account avisos is paused: channel failing: relay 127\.0\.0\.1:\d+ refused the "
            r"login of disparo: 535 .*",
            held.status_reason or "",
        ), held.status_reason
        assert held.counters["failed"] == held.counters["bounced"] == 0
        assert server.messages == []
        [counted] = store.errors.for_campaign(cid)
        assert counted.outcome == "retry" and counted.scope == "account" and "535" in counted.reason
        # the operator fixes the password (SIGHUP); the next probe logs in and sends
        monkeypatch.setenv("SMTP_PASSWORD", server.password or "")
        fixed = clock.now()
        await dispatcher.reconfigure(load_config(config.path))
        await ticking(lambda: server.messages, "the probe logs in and sends")
        # the reload probes at once, not at the next scheduled probe (a minute on)
        assert clock.now() - fixed < timedelta(seconds=10)
        await ticking(lambda: campaign().status == "completed", "all sent")
    finally:
        await dispatcher.shutdown()
    assert sorted(m.rcpt_tos[0] for m in server.messages) == sorted(
        f"p{i}@example.com" for i in range(40)
    )  # every recipient, once
    with store.read() as c:
        statuses = dict(
            c.execute(
                sa.select(t.deliveries.c.status, sa.func.count()).group_by(t.deliveries.c.status)
            ).all()
        )
    assert statuses == {"sent": 40}
    actions = [e.action for e in store.audit.entries(target="account:avisos")]
    assert actions.count("account.paused") == 1 and actions.count("account.resumed") == 1


def test_run_until_idle_says_the_relay_is_down_and_exits_1(tmp_path: Path, run_cli: Any) -> None:
    port = closed_port()
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    config = tmp_path / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"log_level": "warning"},
                "accounts": {"e-mail": account(None, port=port, concurrency=8)},
                "wallets": {"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
            }
        )
    )
    today = datetime.now(UTC).astimezone(load_config(config).tz).strftime("%d%m%y")
    contacts = tmp_path / f"mailing_{today}_001_cBRAD_email.csv"
    contacts.write_text("nome;email\n" + "".join(f"P{i};p{i}@example.com\n" for i in range(10)))
    assert run_cli("--config", str(config), "import", str(contacts)).exit_code == 0
    result = run_cli("--config", str(config), "run", "--until-idle", "--settle", "0.05")
    assert result.exit_code == 1, result.output
    assert re.search(
        rf"e-mail: relay 127\.0\.0\.1:{port} refused the connection; \d+ deliveries retry at "
        r"\d\d:\d\d \(the account is paused; next try at \d\d:\d\d\)",
        result.output,
    ), result.output
    show = run_cli("--config", str(config), "campaign", "show", "1")
    assert "held — account e-mail is paused: channel failing: relay" in show.output
    assert "Not sent yet, because" in show.output and "refused the connection" in show.output
    assert "No projected finish while the campaign is held" in show.output
    body = json.loads(run_cli("--config", str(config), "campaign", "show", "1", "--json").output)
    assert body["status"] == "held" and body["failed"] == 0
    [reason] = body["not_sent_because"]
    assert reason["reason"] == f"relay 127.0.0.1:{port} refused the connection"
    assert reason["count"] == body["retrying"] == body["errors_total"] >= 5
    assert reason["next_retry_at"] == body["next_retry_at"] is not None
    assert body["errors"][0]["scope"] == "account" and body["errors"][0]["outcome"] == "retry"
    assert body["account_paused"]["reason"].startswith("channel failing: relay")
    [mail] = json.loads(run_cli("--config", str(config), "accounts", "--json").output)
    assert mail["breaker"] == "open" and mail["breaker_retry_at"] is not None
    assert mail["recent_errors"][0]["reason"] == reason["reason"]
    listed = run_cli("--config", str(config), "campaigns")
    assert "held: account e-mail is paused" in listed.output

"""The bounce mailbox poller against a real IMAP server on loopback (pymap), D14.

E-mails are sent by the dispatcher to a real SMTP peer; the DSNs and ARF complaints that come
back name them by the VERP return path or the Message-ID; the poller reads them over IMAP
(implicit TLS or STARTTLS, certificate verified), records the events once, suppresses hard
bounces and complainers, moves what it handled and keeps (flagged, counted) what it could not
use. The guard pauses an account on bounces that arrive hours after the sending.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.clock import TestClock, local_today
from engine.config import Config, MailboxSettings, load_config
from engine.events import Signal
from engine.feedback.mailbox import (
    BATCH,
    UNPARSED,
    MailboxError,
    MailboxPoller,
    check_mailbox,
    decode,
    separator_of,
)
from engine.intake.importer import file_digest, import_file
from engine.plugins import Plugins, load_plugins
from engine.plugins.format import FormatContext
from engine.sending.dispatcher import Dispatcher
from engine.sending.guard import Guard
from engine.service import signer_for
from engine.store import Store
from engine.store import schema as t
from engine.store.feedback import Applied
from engine.testing import write_secret
from engine.tokens import Signer
from tests.helpers import tick
from tests.peers.imap import ImapServer, start_imap_server
from tests.peers.smtp import SmtpServer, start_smtp_server

SECRET = "s" * 32


@pytest.fixture
def imap() -> Iterator[Callable[..., ImapServer]]:
    servers: list[ImapServer] = []

    def start(**kwargs: Any) -> ImapServer:
        servers.append(start_imap_server(**kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def write_config(
    tmp_path: Path,
    smtp: SmtpServer,
    server: ImapServer | None,
    database_url: str | None = None,
    **mailbox: Any,
) -> Path:
    write_secret(tmp_path / "key", SECRET)
    (tmp_path / "body.html").write_text(
        '<html><body><p>Oi {{ nome }}</p><a href="https://loja.example/oferta">ver</a>'
        '<a href="https://loja.example/conta">conta</a></body></html>'
    )
    write_secret(tmp_path / "imap-password", server.password if server else "x")
    doc: dict[str, Any] = {
        "tracking": {"public_url": "https://t.empresa.com.br", "secret_file": "key"},
        "accounts": {
            "mail": {
                "channel": "email",
                "from_address": "aviso@empresa.com.br",
                "bounce_address": "bounces@retorno.empresa.com.br",
                "host": smtp.host,
                "port": smtp.port,
                "tls": "none",
                "rate": 1000,
                "min_sample": 20,
            }
        },
        "wallets": {
            "BRAD": {
                "email_subject": "Aviso",
                "email_template": "body.html",
                "default_sender": "mail",
            }
        },
    }
    if database_url:
        doc["engine"] = {"database_url": database_url}
    if server is not None:
        assert server.ca_pem is not None
        doc["mailboxes"] = {
            "retorno": {
                "host": server.host,
                "port": server.port,
                "tls": server.tls,
                "ca_file": str(server.ca_pem),
                "user": server.user,
                "password_file": "imap-password",
                "allow_private": True,
                "processed_folder": "disparo/tratadas",
                "timeout": "5s",
                **mailbox,
            }
        }
    path = tmp_path / "disparo.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


@dataclass
class World:
    config: Config
    store: Store
    clock: TestClock
    plugins: Plugins
    signer: Signer
    server: ImapServer
    campaign: int
    mails: dict[str, EmailMessage]  # recipient → message as received by the SMTP peer
    envelope: dict[str, str]  # recipient → MAIL FROM (the VERP address)

    @property
    def mailbox(self) -> MailboxSettings:
        return self.config.mailboxes["retorno"]

    def poller(self) -> MailboxPoller:
        async def apply(signals: list[Signal]) -> list[Applied]:
            return await self.store.run(self.store.feedback.apply, signals)

        return MailboxPoller(self.store, self.mailbox, self.clock, self.signer, apply, owner="test")

    def delivery(self, address: str) -> Any:
        with self.store.read() as c:
            return c.execute(sa.select(t.deliveries).where(t.deliveries.c.address == address)).one()

    def suppressed(self) -> dict[str, str]:
        with self.store.read() as c:
            return {
                r.address: r.origin
                for r in c.execute(sa.select(t.suppressions.c.address, t.suppressions.c.origin))
            }


async def send_campaign(
    tmp_path: Path, store: Store, clock: TestClock, server: ImapServer, recipients: int
) -> World:
    smtp = start_smtp_server(tls="none", auth=False)
    try:
        plugins = load_plugins()
        url = store.engine.url.render_as_string(hide_password=False)
        config = load_config(write_config(tmp_path, smtp, server, url), plugins=plugins)
        store.inline = True
        day = local_today(clock, config.tz)
        spool = tmp_path / "in.csv"
        spool.write_text(
            "nome;email\n=SOMA(1,2);p0@cliente.example\n"
            + "".join(f"P{i};p{i}@cliente.example\n" for i in range(1, recipients))
        )
        fmt = plugins.formats()["mailing"](FormatContext(config, "drop", day, clock.now()))
        report = import_file(
            store,
            fmt,
            source="drop",
            path=f"mailing_{day:%d%m%y}_001_cBRAD_email.csv",
            spool=spool,
            size=spool.stat().st_size,
            mtime=None,
            sha256=file_digest(spool),
        )
        assert report.outcome == "imported" and report.campaign_id, report.problems
        dispatcher = Dispatcher(store, plugins, config, clock, signer=signer_for(config))
        try:
            for _ in range(200):
                await tick(dispatcher, clock)
                if len(smtp.messages) >= recipients:
                    break
            for _ in range(3):
                await dispatcher.tick()
                await clock.advance(1)
        finally:
            await dispatcher.shutdown()
        assert len(smtp.messages) == recipients
        mails = {
            m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=email.policy.default)
            for m in smtp.messages
        }
        envelope = {m.rcpt_tos[0]: m.mail_from for m in smtp.messages}
    finally:
        smtp.stop()
    return World(
        config,
        store,
        clock,
        plugins,
        Signer(SECRET),
        server,
        report.campaign_id,
        mails,  # type: ignore[arg-type]
        envelope,
    )


def dsn(
    w: World,
    rcpt: str,
    *,
    status: str = "5.1.1",
    diagnostic: str = "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    action: str = "failed",
    verp: bool = True,
    message_id: bool = True,
) -> bytes:
    """A Postfix DSN for the message sent to ``rcpt``, delivered to the VERP address."""
    sent = w.mails[rcpt]
    to = w.envelope[rcpt] if verp else "bounces@retorno.empresa.com.br"
    original = f"From: {sent['From']}\r\nTo: {rcpt}\r\nSubject: {sent['Subject']}\r\n"
    if message_id:
        original += f"Message-ID: {sent['Message-ID']}\r\n"
    text = (
        f"Return-Path: <>\r\nDelivered-To: {to}\r\n"
        "From: MAILER-DAEMON@mx.empresa.com.br (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
        ' boundary="B1"\r\n\r\n'
        "--B1\r\nContent-Type: text/plain\r\n\r\n"
        "This is the mail system at host mx.empresa.com.br.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n\r\n"
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.empresa.com.br\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic.format(rcpt=rcpt)}\r\n\r\n"
        f"--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n{original}\r\n--B1--\r\n"
    )
    return text.encode()


def arf(w: World, rcpt: str) -> bytes:
    """A Yahoo-style ARF abuse report naming the original by its Message-ID only."""
    sent = w.mails[rcpt]
    return (
        "From: feedback@arf.mail.yahoo.example\r\nTo: abuse@empresa.com.br\r\n"
        "Subject: FW: Aviso\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F"\r\n\r\n'
        "--F\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        "--F\r\nContent-Type: message/feedback-report\r\n\r\n"
        "Feedback-Type: abuse\r\nUser-Agent: Yahoo!-Mail-Feedback/2.0\r\nVersion: 0.1\r\n"
        f"Original-Rcpt-To: {rcpt}\r\n\r\n"
        "--F\r\nContent-Type: message/rfc822\r\n\r\n"
        f"From: {sent['From']}\r\nTo: {rcpt}\r\nSubject: Aviso\r\n"
        f"Message-ID: {sent['Message-ID']}\r\n\r\nbody\r\n--F--\r\n"
    ).encode()


NOT_A_REPORT = (
    b"From: Maria <maria@cliente.example>\r\nTo: bounces@retorno.empresa.com.br\r\n"
    b"Subject: duvida\r\n\r\nBom dia, recebi um e-mail de voces e queria saber mais.\r\n"
)


@pytest.fixture
async def world(tmp_path: Path, store: Store, clock: TestClock, imap: Any) -> World:
    return await send_campaign(tmp_path, store, clock, imap(tls="implicit"), 6)


async def test_hard_soft_complaint_and_unreadable(world: World) -> None:
    """D14: a hard bounce (VERP) bounces and suppresses; a soft one (5.2.2) fails without
    suppressing; an ARF complaint (mapped by Message-ID alone) suppresses; handled reports
    move to the processed folder, the rest stays, flagged and counted."""
    w = world
    w.server.deliver(dsn(w, "p0@cliente.example"))
    w.server.deliver(
        dsn(w, "p1@cliente.example", status="5.2.2", diagnostic="552 5.2.2 Mailbox full")
    )
    w.server.deliver(arf(w, "p2@cliente.example"))
    w.server.deliver(
        dsn(w, "p3@cliente.example", verp=False)  # by Message-ID only
    )
    w.server.deliver(NOT_A_REPORT)
    foreign = dsn(w, "p4@cliente.example", verp=False, message_id=False)  # names nothing of ours
    w.server.deliver(foreign)

    result = await w.poller().poll()
    assert result.ok, result.message
    assert (result.fetched, result.handled, result.unparsed, result.unknown) == (6, 4, 2, 1)

    assert w.delivery("p0@cliente.example").status == "bounced"
    assert w.delivery("p1@cliente.example").status == "failed"
    assert w.delivery("p2@cliente.example").complained_at is not None
    assert w.delivery("p3@cliente.example").status == "bounced"
    assert w.delivery("p4@cliente.example").status == "sent"
    assert w.suppressed() == {
        "p0@cliente.example": "bounce",
        "p2@cliente.example": "complaint",
        "p3@cliente.example": "bounce",
    }
    c = w.store.campaigns.get(w.campaign)
    assert c is not None
    assert (c.counters["sent"], c.counters["bounced"], c.counters["failed"]) == (3, 2, 1)
    assert c.counters["complaints"] == 1

    handled = w.server.messages("disparo/tratadas")
    assert len(handled) == 4
    kept = w.server.messages()
    assert sorted(raw for raw, _ in kept) == sorted([NOT_A_REPORT, foreign])
    assert all(UNPARSED in flags for _, flags in kept)

    state = w.store.mailboxes.states()["retorno"]
    assert (state.status, state.handled, state.unparsed) == ("ok", 4, 2)
    assert state.next_poll_at == w.clock.now() + w.mailbox.every

    # The next poll skips what it kept and finds nothing new
    again = await w.poller().poll()
    assert (again.fetched, again.handled, again.unparsed) == (0, 0, 0)
    assert w.store.mailboxes.states()["retorno"].unparsed == 2


async def test_a_report_read_twice_counts_once(world: World) -> None:
    """A crash after storing but before moving means the report is read again: its events
    carry the message's digest as dedupe key, so nothing is counted twice."""
    w = world
    raw = dsn(w, "p0@cliente.example")
    w.server.deliver(raw)
    await w.poller().poll()
    w.server.deliver(raw)  # the same message again (as if the move had not happened)
    second = await w.poller().poll()
    assert second.handled == 1 and second.duplicates == 1 and second.events == 0
    c = w.store.campaigns.get(w.campaign)
    assert c is not None and c.counters["bounced"] == 1
    with w.store.read() as conn:
        kinds = [
            k
            for (k,) in conn.execute(
                sa.select(t.events.c.kind).where(t.events.c.origin == "mailbox")
            )
        ]
    assert kinds == ["bounced"]


async def test_delay_and_delivered_reports(world: World) -> None:
    w = world
    w.server.deliver(
        dsn(w, "p0@cliente.example", status="4.4.1", action="delayed", diagnostic="timeout")
    )
    w.server.deliver(dsn(w, "p1@cliente.example", status="2.0.0", action="delivered"))
    result = await w.poller().poll()
    assert result.handled == 2
    assert w.delivery("p0@cliente.example").status == "sent"
    assert w.delivery("p1@cliente.example").delivered_at is not None
    c = w.store.campaigns.get(w.campaign)
    assert c is not None and c.counters["delivered"] == 1


async def test_without_move_copy_delete_expunge(
    tmp_path: Path, store: Store, clock: TestClock, imap: Any
) -> None:
    """Servers without MOVE (RFC 6851): COPY, \\Deleted, UID EXPUNGE; STARTTLS on 143."""
    w = await send_campaign(tmp_path, store, clock, imap(tls="starttls", move=False), 2)
    w.server.deliver(dsn(w, "p0@cliente.example"))
    result = await w.poller().poll()
    assert result.ok and result.handled == 1, result.message
    assert w.server.messages() == []
    assert len(w.server.messages("disparo/tratadas")) == 1


async def test_guard_waits_for_its_sample(world: World) -> None:
    """D15: 2 hard bounces of 6 sent arrive 3 h later (33 %), but 6 is below the account's
    min_sample (20): the guard does not judge a rate on so few messages."""
    w = world
    guard = Guard(w.store, w.config, w.clock)
    await w.clock.advance(timedelta(hours=3))
    for rcpt in ("p0@cliente.example", "p1@cliente.example"):
        w.server.deliver(dsn(w, rcpt))
    assert (await w.poller().poll()).handled == 2
    decision = (await guard.check())["mail"]
    assert decision.state == "ok", decision


async def test_guard_pauses_when_the_sample_is_reached(
    tmp_path: Path, store: Store, clock: TestClock, imap: Any
) -> None:
    """D14: 25 sent at 09:00; at 13:00 two hard bounces arrive by the mailbox: 8 % > 5 % over
    the last 24 h, so the guard pauses the account (and says why)."""
    w = await send_campaign(tmp_path, store, clock, imap(tls="implicit"), 25)
    guard = Guard(w.store, w.config, w.clock)
    assert (await guard.check())["mail"].state == "ok"
    await w.clock.advance(timedelta(hours=4))
    for rcpt in ("p3@cliente.example", "p7@cliente.example"):
        w.server.deliver(dsn(w, rcpt))
    result = await w.poller().poll()
    assert result.handled == 2
    decision = (await guard.check())["mail"]
    assert decision.change == "paused", decision
    assert decision.paused_until is not None and decision.paused_until > w.clock.now()
    assert "bounce rate 8.00 % > 5 % (2 of 25 in 24 h)" in (decision.reason or "")
    state = w.store.accounts.states()["mail"]
    assert state.guard_state == "paused"


def test_connection_failures_in_plain_words(
    tmp_path: Path, imap: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = imap(tls="implicit")
    smtp = start_smtp_server(tls="none", auth=False)
    try:
        config = load_config(write_config(tmp_path, smtp, server), plugins=load_plugins())
        good = config.mailboxes["retorno"]
        server.deliver(NOT_A_REPORT)
        assert check_mailbox(good) == (
            f"connected to 127.0.0.1:{server.port} (implicit TLS, certificate verified), "
            "logged in as bounces, folder 'INBOX': 1 message(s), 1 to read"
        )

        write_secret(tmp_path / "imap-password", "wrong")
        config = load_config(tmp_path / "disparo.toml", plugins=load_plugins())
        with pytest.raises(MailboxError, match="login as bounces refused"):
            check_mailbox(config.mailboxes["retorno"])

        # no ca_file: the peer's certificate is not trusted, and nothing turns that off
        path = write_config(tmp_path, smtp, server)
        doc = path.read_text().replace(f'ca_file = "{server.ca_pem}"\n', "")
        path.write_text(doc)
        config = load_config(path, plugins=load_plugins())
        with pytest.raises(MailboxError, match=r"certificate .* is not trusted"):
            check_mailbox(config.mailboxes["retorno"])

        # loopback refused without allow_private (F3), found when resolving at connect time
        doc = path.read_text().replace("allow_private = true", "allow_private = false")
        path.write_text(doc.replace('host = "127.0.0.1"', 'host = "localhost"'))
        config = load_config(path, plugins=load_plugins())
        with pytest.raises(MailboxError, match="private, loopback"):
            check_mailbox(config.mailboxes["retorno"])
    finally:
        smtp.stop()


def test_a_mailbox_needs_tracking(tmp_path: Path) -> None:
    """The VERP address and Message-ID are signed with the [tracking] secret."""
    path = tmp_path / "disparo.toml"
    path.write_text(
        tomli_w.dumps(
            {"mailboxes": {"x": {"host": "imap.empresa.com.br", "user": "u", "password_env": "P"}}}
        )
    )
    from engine.config import ConfigError

    with pytest.raises(ConfigError, match=r"mailboxes\.x.*needs \[tracking\]"):
        load_config(path, plugins=load_plugins())


def _random_message(draw: st.DrawFn) -> bytes:
    """A message shaped like mail (headers, maybe a report or an attached original), with
    arbitrary values; built as text so that no header is refused while generating."""
    value = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40)
    names = st.sampled_from(["Subject", "From", "To", "X-Any", "Auto-Submitted", "Return-Path"])
    head = "".join(f"{n}: {draw(value)}\r\n" for n in draw(st.lists(names, max_size=4)))
    kind = draw(st.sampled_from(["plain", "report", "nested"]))
    if kind == "plain":
        return (head + "\r\n" + draw(st.text(max_size=200))).encode("utf-8", "surrogatepass")
    fields = draw(
        st.lists(
            st.sampled_from(
                [
                    "Final-Recipient: rfc822; a@b.example",
                    "Action: failed",
                    "Status: 5.1.1",
                    "Status: 9.9.9",
                    "Diagnostic-Code: smtp; 550 no",
                    "Original-Recipient: ;",
                    "Feedback-Type: abuse",
                ]
            ),
            max_size=6,
        )
    )
    part = draw(
        st.sampled_from(
            ["message/delivery-status", "message/feedback-report", "message/rfc822", "text/plain"]
        )
    )
    inner = "Message-ID: " + draw(st.sampled_from(["<x@y>", "<m-1-00@z>", "", "<"]))
    text = (
        head + 'Content-Type: multipart/report; report-type=delivery-status; boundary="=_b"\r\n'
        "\r\n--=_b\r\nContent-Type: text/plain\r\n\r\n"
        + draw(st.text(max_size=80))
        + f"\r\n--=_b\r\nContent-Type: {part}\r\n\r\n"
        + "\r\n".join(fields)
        + (
            f"\r\n--=_b\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n\r\nx"
            if kind == "nested"
            else ""
        )
        + ("\r\n--=_b--\r\n" if draw(st.booleans()) else "")
    )
    return text.encode("utf-8", "surrogatepass")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=2000), st.composite(_random_message)()))
def test_decoding_never_raises(raw: bytes) -> None:
    """Whatever lands in the mailbox, decoding yields a verdict (the poller never crashes)."""
    clock = TestClock()
    decoded = decode(Signer(SECRET), "101", raw, clock.now())
    assert decoded.uid == "101"
    assert not decoded.signals or decoded.delivery_id is not None


async def test_results_and_mailbox_commands(world: World, run_cli: Any, tmp_path: Path) -> None:
    """D17 per recipient, exported with formula-safe cells (E2); `disparo mailboxes` and
    `mailboxes poll` show and do what the poller does."""
    w = world
    config = str(tmp_path / "disparo.toml")
    w.server.deliver(dsn(w, "p1@cliente.example"))
    w.server.deliver(NOT_A_REPORT)
    # `mailboxes poll` runs on the real clock; store.inline is for the test clock only
    w.store.inline = False
    done = await asyncio.to_thread(run_cli, "--config", config, "mailboxes", "poll")
    assert done.exit_code == 0, done.output
    assert "retorno: 1 handled, 1 kept unread (bounce 1, unknown 1)" in done.output
    shown = await asyncio.to_thread(run_cli, "--config", config, "mailboxes")
    assert "retorno" in shown.output and "1 handled, 1 kept unread" in shown.output

    d0, d2 = w.delivery("p0@cliente.example"), w.delivery("p2@cliente.example")
    now = w.clock.now()
    w.store.feedback.apply(
        [
            Signal("click", now, "tracking", d0.id, detail={"link": 2}),
            Signal("click", now, "tracking", d0.id, detail={"link": 1}),
            Signal("click", now, "tracking", d0.id, detail={"link": 2}),
            Signal("open", now, "tracking", d2.id),
            Signal("unsubscribe", now, "tracking", d2.id, detail={"scope": "all"}),
        ]
    )
    out = tmp_path / "results.csv"
    done = await asyncio.to_thread(
        run_cli, "--config", config, "campaign", "results", str(w.campaign), "--csv", str(out)
    )
    assert done.exit_code == 0, done.output
    assert f"6 recipients of campaign {w.campaign} written" in done.output
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].startswith("codigo;nome;endereco;status;status_provedor;enviado_em")
    rows = [line.split(";") for line in lines[1:]]
    by_address = {r[2]: r for r in rows}
    assert [r[2] for r in rows] == [f"p{i}@cliente.example" for i in range(6)]
    p0 = by_address["p0@cliente.example"]
    assert p0[1] == "'=SOMA(1,2)"  # E2: a formula is neutralised
    assert p0[9] == "3"
    assert p0[10] == "https://loja.example/conta https://loja.example/oferta"  # first-click order
    assert p0[7] != ""  # a click implies an open
    p1 = by_address["p1@cliente.example"]
    assert p1[3] == "bounced" and "5.1.1" in p1[11]
    p2 = by_address["p2@cliente.example"]
    assert (p2[7] != "", p2[12], p2[13]) == (True, "sim", "sim")
    assert by_address["p3@cliente.example"][12:14] == ["nao", "nao"]

    listing = await asyncio.to_thread(
        run_cli, "--config", config, "campaign", "results", str(w.campaign), "--json"
    )
    first = json.loads(listing.output.splitlines()[0])
    assert first["urls_clicadas"] == ["https://loja.example/conta", "https://loja.example/oferta"]


async def test_a_dovecot_separator_and_more_than_a_batch(
    tmp_path: Path, store: Store, clock: TestClock, imap: Any
) -> None:
    """D14 on a stock Dovecot Maildir++ account: the hierarchy separator is ``.`` and a name
    holding ``/`` is refused (``NO [CANNOT] Invalid mailbox name``). The poller asks the
    server (``LIST "" ""``) and files handled reports under ``disparo.tratadas``; one poll
    reads every waiting report, batch after batch, not only the first BATCH of them."""
    server = imap(tls="implicit", separator=".")
    w = await send_campaign(tmp_path, store, clock, server, 3)
    total = BATCH + 51
    for i in range(total):
        rcpt = f"p{i % 3}@cliente.example"
        w.server.deliver(dsn(w, rcpt, diagnostic=f"550 5.1.1 <{{rcpt}}>: unknown ({i})"))
    result = await w.poller().poll()
    assert result.ok, result.message
    assert (result.fetched, result.handled, result.unparsed) == (total, total, 0)
    assert w.server.messages() == []
    assert "disparo/tratadas" not in w.server.folders()
    assert len(w.server.messages("disparo.tratadas")) == total
    assert w.store.mailboxes.states()["retorno"].status == "ok"


def test_the_separator_is_read_from_list() -> None:
    """``LIST "" ""`` answers as servers spell them: quoted, escaped, or NIL (flat)."""
    assert separator_of([b'(\\Noselect) "." ""']) == "."
    assert separator_of([b'(\\Noselect) "/" ""']) == "/"
    assert separator_of([b'(\\Noselect) "\\\\" ""']) == "\\"
    assert separator_of([b'(\\Noselect) NIL ""']) is None
    assert separator_of([None]) == "/"


async def test_copies_of_one_dsn_bounce_the_delivery_once(
    tmp_path: Path, store: Store, clock: TestClock, imap: Any
) -> None:
    """D14/D15: a DSN delivered 201 times, each copy with one more ``Received:`` line (so
    each is a different message), is one bounce of one delivery: one ``bounced`` event, the
    campaign counts one bounce, and the guard's rate (1 of 25 = 4 %) pauses nothing."""
    w = await send_campaign(tmp_path, store, clock, imap(tls="implicit"), 25)
    guard = Guard(w.store, w.config, w.clock)
    await w.clock.advance(timedelta(hours=1))
    raw = dsn(w, "p3@cliente.example")
    for i in range(201):
        hop = f"Received: from relay{i}.example by mx.empresa.com.br; id {i}\r\n"
        w.server.deliver(hop.encode() + raw)
    result = await w.poller().poll()
    assert (result.ok, result.handled, result.events) == (True, 201, 1), result
    assert result.duplicates == 200
    with w.store.read() as conn:
        bounced = conn.execute(
            sa.select(sa.func.count()).where(t.events.c.kind == "bounced")
        ).scalar()
    assert bounced == 1
    c = w.store.campaigns.get(w.campaign)
    assert c is not None and c.counters["bounced"] == 1
    decision = (await guard.check())["mail"]
    assert decision.state == "ok" and decision.change is None, decision
    assert w.store.accounts.states()["mail"].bounces_24h == 1


async def test_a_complaint_reported_twice_counts_once(world: World) -> None:
    """D14: two abuse reports about one message are one complaint (one event)."""
    w = world
    w.server.deliver(arf(w, "p2@cliente.example"))
    w.server.deliver(b"Received: from fbl2.example\r\n" + arf(w, "p2@cliente.example"))
    result = await w.poller().poll()
    assert (result.handled, result.events, result.duplicates) == (2, 1, 1), result
    with w.store.read() as conn:
        kinds = conn.execute(
            sa.select(sa.func.count()).where(t.events.c.kind == "complaint")
        ).scalar()
    assert kinds == 1


async def test_the_watched_folder_is_spelled_with_the_separator_too(
    tmp_path: Path, store: Store, clock: TestClock, imap: Any
) -> None:
    """D14: ``folder = "retornos/dsn"`` is ``retornos.dsn`` on a server whose separator is
    ``.``; the poller reads it there and files what it handled under ``disparo.tratadas``."""
    server = imap(tls="implicit", separator=".")
    w = await send_campaign(tmp_path, store, clock, server, 2)
    smtp = start_smtp_server(tls="none", auth=False)
    try:
        url = store.engine.url.render_as_string(hide_password=False)
        path = write_config(tmp_path, smtp, server, url, folder="retornos/dsn")
        w.config = load_config(path, plugins=w.plugins)
    finally:
        smtp.stop()
    server.deliver(dsn(w, "p0@cliente.example"), folder="retornos.dsn")
    result = await w.poller().poll()
    assert (result.ok, result.handled) == (True, 1), result.message
    assert server.messages("retornos.dsn") == []
    assert len(server.messages("disparo.tratadas")) == 1

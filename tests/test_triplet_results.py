"""Seed 001 end to end: MediaPost's example send dropped on an FTPS server (strict about TLS
session reuse) becomes an e-mail campaign paced in batches (T7), sent to an SMTP peer; opens,
clicks and an unsubscribe come back through the tracking endpoint over HTTP, bounces through
the bounce parser; ``results_after`` after the campaign ends, ``disparo publish`` writes the
six return files (T8) to that server with exactly the expected rows. The same over SFTP, and
``mailing-results`` for mailing files."""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner

from engine.cli.collect import sources as sources_command
from engine.cli.context import AppContext
from engine.cli.publish import publish_command
from engine.clock import TestClock
from engine.config import Config
from engine.feedback.mailbox import decode
from engine.feedback.tracking import Tracking
from engine.intake.collector import Collector
from engine.plugins import load_plugins
from engine.publish.service import Publishing
from engine.sending.dispatcher import Dispatcher
from engine.service import signer_for
from engine.store import Store
from engine.testing.eventually import eventually
from engine.testing.store import write_secret
from tests.helpers import load, tick, write_config
from tests.peers.ftp import FtpServer
from tests.peers.sftp import SftpServer
from tests.peers.smtp import SmtpServer, start_smtp_server

PUBLIC = "https://t.lojaexemplo.com.br"
SENDER = "marketing@lojaexemplo.com.br"
# The seed's example send, as a MediaPost customer writes it (seed 001, "Arquivos de entrada")
CONF = (
    "CAMPANHA;ASSUNTO;REMETENTE_NOME;REMETENTE_EMAIL;RESPONDER_PARA;DATA_ENVIO\n"
    f"Promoção de Natal;{{{{ NOME }}}}, ofertas de Natal em {{{{ CIDADE }}}};Loja Exemplo;{SENDER};"
    "atendimento@lojaexemplo.com.br;23/11/2026 10:00\n"
)
HTML = (
    "<html><body><p>Olá {{ NOME }}!</p><p>As ofertas de Natal chegaram a {{ CIDADE }}.</p>"
    '<p><a href="https://www.lojaexemplo.com.br/natal?utm_source=mediapost">Ver ofertas</a></p>'
    '<p><a href="https://www.lojaexemplo.com.br/conta?email={{ EMAIL }}">Minha conta</a></p>'
    "</body></html>"
)
MAIL = (
    "EMAIL;NOME;CIDADE\n"
    "ana@cliente.example;Ana;Recife\n"
    "bruno@cliente.example;Bruno;Natal\n"
    "maria.silva@;Maria;Manaus\n"
    "carla@cliente.example;Carla;São Paulo\n"
    "bloqueado@cliente.example;Gil;Salvador\n"
    "+davi@cliente.example;Davi;Curitiba\n"
    "eva@cliente.example;=Eva;Belém\n"
)
SEND = {"CONF": CONF, "HTML": HTML, "MAIL": MAIL}
RESULTS = ("ABERTURA", "ABERTURAUNICA", "CLIQUE", "CLIQUEUNICO", "RETORNADO", "CANCELADO")


def at(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    """A local time in São Paulo (UTC-3) on November ``day``, 2026, as UTC."""
    return datetime(2026, 11, day, hour + 3, minute, second, tzinfo=UTC)


async def until(clock: TestClock, when: datetime) -> None:
    """Move the clock to ``when`` (waking what sleeps until then)."""
    await clock.advance((when - clock.now()).total_seconds())


def drop_send(folder: Path, name: str = "NATAL2026", day: str = "20261123") -> None:
    for kind, text in SEND.items():
        (folder / f"{name}_{kind}_{day}").write_text(text, encoding="utf-8")


def tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp_server(tls="none", auth=False)
    yield server
    server.stop()


def config_for(
    tmp_path: Path, store: Store, smtp: SmtpServer, source: dict[str, Any], **extra: Any
) -> Config:
    write_secret(tmp_path / "tracking-key", "k" * 32)
    return load(
        write_config(
            tmp_path,
            engine={"database_url": store.engine.url.render_as_string(False)},
            tracking={"public_url": PUBLIC, "secret_file": "tracking-key"},
            accounts={
                "mail": {
                    "channel": "email",
                    "from_address": SENDER,
                    "bounce_address": "retorno@lojaexemplo.com.br",
                    "host": smtp.host,
                    "port": smtp.port,
                    "tls": "none",
                    "rate": 100,
                }
            },
            sources={"mediapost": {"format": "triplet", "allow_private": True, **source, **extra}},
        )
    )


def poll(c: Collector) -> Any:
    summary = c.poll_blocking(c.config.sources["mediapost"])
    assert isinstance(c.clock, TestClock)
    c.clock.jump(timedelta(minutes=2))
    return summary


def parsed(smtp: SmtpServer) -> dict[str, EmailMessage]:
    return {
        m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=email.policy.default)  # type: ignore[misc]
        for m in smtp.messages
    }


async def send_due(dispatcher: Dispatcher, clock: TestClock, smtp: SmtpServer, total: int) -> None:
    """Tick until the SMTP peer holds ``total`` messages (the batches released by now)."""
    await eventually(
        lambda: _ticked(dispatcher, clock, smtp, total),
        what=f"{total} messages at the SMTP peer",
    )


async def _ticked(dispatcher: Dispatcher, clock: TestClock, smtp: SmtpServer, total: int) -> bool:
    await tick(dispatcher, clock, 0)
    return len(smtp.messages) >= total


def dsn(message: EmailMessage, rcpt: str, status: str, diagnostic: str) -> bytes:
    """A Postfix DSN for the message sent to ``rcpt``, naming it by its Message-ID."""
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.cliente.example (Mail Delivery System)\r\n"
        "To: retorno@lojaexemplo.com.br\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status;\r\n"
        ' boundary="B1"\r\n\r\n--B1\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n\r\n'
        "--B1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.cliente.example\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
        "--B1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {SENDER}\r\nTo: {rcpt}\r\nMessage-ID: {message['Message-ID']}\r\n\r\n--B1--\r\n"
    ).encode()


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


async def test_seed_001_on_ftps_from_the_drop_to_the_six_return_files(
    tmp_path: Path,
    store: Store,
    clock: TestClock,
    ftps_server: FtpServer,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FTP_PASSWORD", ftps_server.password)
    source = {
        "kind": "ftps",
        "host": ftps_server.host,
        "port": ftps_server.port,
        "user": ftps_server.user,
        "password_env": "FTP_PASSWORD",
        "ca_file": str(ftps_server.ca_pem),
    }
    config = config_for(
        tmp_path, store, smtp, source, batch_size=2, batch_every="1h", results_after="3d"
    )
    plugins = load_plugins()
    store.inline = True
    store.suppressions.add("email", "bloqueado@cliente.example", origin="manual", actor="test")
    root = ftps_server.root

    # -- collection: the three files, stable, once ------------------------------------------
    drop_send(root)
    collector = Collector(store, plugins, config, clock)
    poll(collector)
    [report] = poll(collector).reports  # 09:02: stable on two listings
    assert report.outcome == "imported", report.problems
    assert (report.recipients, report.suppressed, report.batches) == (6, 1, 3)
    assert tree(root) == [
        "processed/NATAL2026_CONF_20261123",
        "processed/NATAL2026_HTML_20261123",
        "processed/NATAL2026_MAIL_20261123",
        "processed/NATAL2026_MAIL_20261123.rejeitados.csv",
    ]
    campaign_id = report.campaign_id
    assert campaign_id is not None

    # -- sending: DATA_ENVIO 10:00, then batches of 2 every hour (T7) -----------------------
    dispatcher = Dispatcher(store, plugins, config, clock, signer=signer_for(config))
    tracking = Tracking(store, config, clock, plugins=plugins)
    base = f"http://{await tracking.start('127.0.0.1:0')}"

    async def get(url: str, when: datetime) -> None:
        await until(clock, when)
        async with http.get(base + url[len(PUBLIC) :], allow_redirects=False) as r:
            assert r.status in (200, 302), url

    def bounce(rcpt: str, status: str, diagnostic: str, when: datetime) -> None:
        found = decode(signer, "1", dsn(parsed(smtp)[rcpt], rcpt, status, diagnostic), when)
        assert found.signals, found.report
        store.feedback.apply(list(found.signals))

    signer = signer_for(config)
    assert signer is not None
    try:
        async with aiohttp.ClientSession() as http:
            await tick(dispatcher, clock)
            assert smtp.messages == []  # not before DATA_ENVIO
            await until(clock, at(23, 10, 0))
            await send_due(dispatcher, clock, smtp, 2)
            mails = parsed(smtp)
            assert sorted(mails) == ["ana@cliente.example", "bruno@cliente.example"]
            ana = mails["ana@cliente.example"]
            assert ana["Subject"] == "Ana, ofertas de Natal em Recife"
            assert ana["From"] == f"Loja Exemplo <{SENDER}>"
            assert ana["Reply-To"] == "atendimento@lojaexemplo.com.br"
            assert "Olá Ana!" in html_of(ana) and "chegaram a Recife" in html_of(ana)
            pixel = re.search(r'<img src="([^"]+)"', html_of(ana))
            links = re.findall(rf'href="({PUBLIC}/c/[^"]+)"', html_of(ana))
            assert pixel is not None and len(links) == 2
            await get(pixel.group(1), at(23, 10, 5))
            await get(pixel.group(1), at(23, 10, 30))
            await get(links[0], at(23, 10, 31))
            await get(links[1], at(23, 10, 40))
            bruno = re.findall(
                rf'href="({PUBLIC}/c/[^"]+)"', html_of(mails["bruno@cliente.example"])
            )
            await get(bruno[0], at(23, 10, 50))  # a click, images blocked: an open too

            await until(clock, at(23, 11, 0))
            await send_due(dispatcher, clock, smtp, 4)
            assert len(smtp.messages) == 4  # the second batch only
            bounce(
                "carla@cliente.example",
                "5.1.1",
                "550 5.1.1 <carla@cliente.example>: Recipient address rejected: User unknown",
                at(23, 11, 20),
            )
            bounce("+davi@cliente.example", "5.2.2", "552 5.2.2 Mailbox full", at(23, 11, 25))

            await until(clock, at(23, 12, 0))
            await send_due(dispatcher, clock, smtp, 5)
            eva = parsed(smtp)["eva@cliente.example"]
            pixel = re.search(r'<img src="([^"]+)"', html_of(eva))
            assert pixel is not None
            await get(pixel.group(1), at(23, 12, 10))
            await until(clock, at(23, 12, 15))
            unsubscribe = str(eva["List-Unsubscribe"]).strip("<>")
            async with http.post(
                base + unsubscribe[len(PUBLIC) :], data={"List-Unsubscribe": "One-Click"}
            ) as r:
                assert r.status == 200
            writer = tracking.writer
            await eventually(lambda: writer.applied >= writer.submitted, what="signals stored")
            await completed(dispatcher, clock, store, campaign_id)
    finally:
        await dispatcher.shutdown()
        await tracking.stop()
    campaign = store.campaigns.get(campaign_id)
    assert campaign is not None and campaign.finished_at is not None
    assert campaign.counters["opened"] == 3 and campaign.counters["clicks"] == 3

    # -- results_after: nothing before, the six files after (T8) ---------------------------
    def run(command: Any, *args: str) -> Any:  # one context (and store) per command
        return CliRunner().invoke(command, list(args), obj=AppContext(config.path, clock))

    early = run(publish_command, "--dry-run")
    assert early.exit_code == 0 and "nothing is due" in early.output
    due_at = (campaign.finished_at + timedelta(days=3)).astimezone(config.tz)
    shown = run(sources_command)
    assert f"#{campaign_id} completed" in shown.output
    assert due_at.strftime("%d/%m %H:%M") in shown.output
    await until(clock, campaign.finished_at + timedelta(days=3))
    done = run(publish_command, "mediapost")
    assert done.exit_code == 0, done.output
    assert done.output.count("published") == 6
    again = run(publish_command)
    assert "nothing is due" in again.output  # exactly once

    files = {
        p.name: p.read_bytes().decode("utf-8")
        for p in root.iterdir()
        if p.is_file() and p.name.startswith("NATAL2026_")
    }
    assert sorted(files) == sorted(f"NATAL2026_{kind}_20261123" for kind in RESULTS)
    rows = {name.split("_")[1]: text.split("\r\n") for name, text in files.items()}
    assert rows["ABERTURA"] == [
        "EMAIL;DATA_HORA",
        "ana@cliente.example;23/11/2026 10:05:00",
        "ana@cliente.example;23/11/2026 10:30:00",
        "bruno@cliente.example;23/11/2026 10:50:00",
        "eva@cliente.example;23/11/2026 12:10:00",
        "",
    ]
    assert rows["ABERTURAUNICA"] == [
        "EMAIL;DATA_HORA",
        "ana@cliente.example;23/11/2026 10:05:00",
        "bruno@cliente.example;23/11/2026 10:50:00",
        "eva@cliente.example;23/11/2026 12:10:00",
        "",
    ]
    offer = "https://www.lojaexemplo.com.br/natal?utm_source=mediapost"
    assert rows["CLIQUE"] == [
        "EMAIL;DATA_HORA;URL",
        f"ana@cliente.example;23/11/2026 10:31:00;{offer}",
        "ana@cliente.example;23/11/2026 10:40:00;"
        "https://www.lojaexemplo.com.br/conta?email=ana%40cliente.example",
        f"bruno@cliente.example;23/11/2026 10:50:00;{offer}",
        "",
    ]
    assert rows["CLIQUEUNICO"] == [
        "EMAIL;DATA_HORA;URL",
        f"ana@cliente.example;23/11/2026 10:31:00;{offer}",
        f"bruno@cliente.example;23/11/2026 10:50:00;{offer}",
        "",
    ]
    assert rows["RETORNADO"][0] == "EMAIL;DATA_HORA;MOTIVO"
    assert rows["RETORNADO"][1:] == [
        "carla@cliente.example;23/11/2026 11:20:00;bounce permanente: 5.1.1 550 5.1.1 "
        "<carla@cliente.example>: Recipient address rejected: User unknown",
        "bloqueado@cliente.example;23/11/2026 09:02:00;suprimido (bloqueado pelo operador)",
        # a cell a spreadsheet would run as a formula is quoted (E2)
        "'+davi@cliente.example;23/11/2026 11:25:00;bounce temporário: 5.2.2 552 5.2.2 "
        "Mailbox full",
        "maria.silva@;23/11/2026 09:02:00;endereço inválido: `maria.silva@` não é um endereço "
        "de e-mail válido (The part after the @-sign is invalid (Empty Label))",
        "",
    ]
    assert rows["CANCELADO"] == ["EMAIL;DATA_HORA", "eva@cliente.example;23/11/2026 12:15:00", ""]
    assert ftps_server.session_reuse_refusals == 0

    # the next poll leaves the return files alone (T8 names are not sends)
    poll(collector)
    assert sorted(files) == sorted(
        p.name for p in root.iterdir() if p.is_file() and p.name.startswith("NATAL2026_")
    )
    seen = {o.path: o.status for o in store.files.observations()}
    assert {seen[name] for name in files} == {"result"}


async def completed(
    dispatcher: Dispatcher, clock: TestClock, store: Store, campaign_id: int
) -> None:
    """Tick until the dispatcher sees the campaign has nothing left (D1: completed)."""

    async def check() -> bool:
        await tick(dispatcher, clock, 0)
        c = store.campaigns.get(campaign_id)
        return c is not None and c.status == "completed"

    await eventually(check, what="the campaign to complete")


async def test_a_send_over_sftp_and_its_results_at_once(
    tmp_path: Path,
    store: Store,
    clock: TestClock,
    sftp_server: SftpServer,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SFTP_PASSWORD", sftp_server.password)
    source = {
        "kind": "sftp",
        "host": sftp_server.host,
        "port": sftp_server.port,
        "user": sftp_server.user,
        "password_env": "SFTP_PASSWORD",
        "host_key_fingerprint": sftp_server.fingerprint,
        "remote_dir": "envios",
    }
    config = config_for(tmp_path, store, smtp, source, results_after="0s")
    plugins = load_plugins()
    store.inline = True
    folder = sftp_server.root / "envios" / "LOJA"  # a folder below the source's is its wallet
    folder.mkdir(parents=True)
    drop_send(folder, "SEM_DATA")
    collector = Collector(store, plugins, config, clock)
    poll(collector)
    [report] = poll(collector).reports
    assert report.outcome == "imported" and report.wallet == "LOJA", report.problems
    dispatcher = Dispatcher(store, plugins, config, clock, signer=signer_for(config))
    try:
        await until(clock, at(23, 10, 0))
        await send_due(dispatcher, clock, smtp, 6)
        await completed(dispatcher, clock, store, report.campaign_id or 0)
    finally:
        await dispatcher.shutdown()
    publishing = Publishing(store, plugins, config, clock)
    outcomes = publishing.publish()
    assert [o.status for o in outcomes] == ["published"] * 6
    assert sorted(p.name for p in folder.iterdir() if p.is_file()) == sorted(
        f"SEM_DATA_{kind}_20261123" for kind in RESULTS
    )
    assert (folder / "SEM_DATA_ABERTURA_20261123").read_bytes() == b"EMAIL;DATA_HORA\r\n"
    retornado = (folder / "SEM_DATA_RETORNADO_20261123").read_text("utf-8").splitlines()
    assert retornado[0] == "EMAIL;DATA_HORA;MOTIVO"
    assert [line.split(";")[0] for line in retornado[1:]] == ["maria.silva@"]
    assert publishing.publish() == []

"""Channels against real peers: e-mail through aiosmtpd (STARTTLS, AUTH, implicit TLS), SMS
and WhatsApp through the real twilio client against a fake of Twilio's Messages API."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels.email import EmailChannel
from channels.twilio import (
    SmsLongChannel,
    WhatsAppExclusiveChannel,
    WhatsAppProspectChannel,
    WhatsAppSharedChannel,
)
from engine.campaign import Campaign, Content
from engine.clock import TestClock
from engine.config import Config
from engine.plugins.channel import (
    CampaignProblem,
    ChannelContext,
    DeliveryInfo,
    Failed,
    Retry,
    Sent,
)
from engine.render import variables
from engine.testing import write_secret
from engine.tokens import Signer
from tests.helpers import load, write_config
from tests.peers.smtp import SmtpServer, start_smtp_server
from tests.peers.twilio import FakeResponse, TwilioFake, start_twilio_fake

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def start_smtp() -> AsyncIterator[Callable[..., SmtpServer]]:
    servers: list[SmtpServer] = []

    def start(**kwargs: Any) -> SmtpServer:
        server = start_smtp_server(**kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        # let TLS clients finish their close on this loop (else a ResourceWarning lands later)
        await asyncio.to_thread(server.wait_idle)
        for _ in range(5):
            await asyncio.sleep(0)
        server.stop()


@pytest.fixture
def twilio() -> AsyncIterator[TwilioFake]:
    fake = start_twilio_fake()
    yield fake
    fake.stop()


def email_config(
    tmp_path: Path, server: SmtpServer, monkeypatch: pytest.MonkeyPatch, **extra: Any
) -> Config:
    monkeypatch.setenv("SMTP_PASSWORD", server.password or "")
    write_secret(tmp_path / "tracking.key", SECRET)
    return load(
        _write_with_tracking(
            tmp_path,
            {
                "channel": "email",
                "from_address": "aviso@empresa.com.br",
                "from_name": "Empresa Ação",
                "host": server.host,
                "port": server.port,
                "tls": server.tls,
                "user": server.user,
                "password_env": "SMTP_PASSWORD",
                "ca_file": str(server.ca_pem),
                "bounce_address": "bounces@empresa.com.br",
                "concurrency": 3,
                **extra,
            },
        )
    )


def _write_with_tracking(tmp_path: Path, account: dict[str, Any]) -> Path:
    import tomli_w

    data = {
        "engine": {"spool_dir": "spool"},
        "tracking": {"public_url": "https://t.empresa.com.br", "secret_file": "tracking.key"},
        "accounts": {"avisos": account},
    }
    path = tmp_path / "disparo.toml"
    path.write_text(tomli_w.dumps(data))
    return path


CAMPAIGN = Campaign(
    id=7,
    name="Oferta",
    channel="email",
    account="avisos",
    start_at=datetime(2026, 11, 23, 12, tzinfo=UTC),
    content=Content(
        subject="Olá {{ nome }}, uma oferta",
        body="<html><body><p>Olá {{ nome }} de {{ cidade }},</p>"
        '<p><a href="https://loja.example/oferta">Ver a oferta</a></p></body></html>',
    ),
)


def with_body(campaign: Campaign, body: str) -> Campaign:
    return replace(campaign, content=replace(campaign.content, body=body))


def delivery(i: int, address: str, **fields: str) -> DeliveryInfo:
    return DeliveryInfo(
        id=i,
        campaign_id=7,
        address=address,
        variables=variables(
            name=fields.pop("nome", "Ana"),
            email=address,
            phone=None,
            external_key=None,
            fields=fields,
        ),
    )


async def open_email(config: Config, clock: TestClock) -> EmailChannel:
    channel = EmailChannel(config.accounts["avisos"], ChannelContext(config, clock, Signer(SECRET)))
    await channel.open()
    return channel


async def test_email_over_starttls_and_auth(
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_smtp(tls="starttls", auth=True)
    config = email_config(tmp_path, server, monkeypatch)
    channel = await open_email(config, clock)
    try:
        prepared = channel.prepare(CAMPAIGN)
        result = await channel.send(prepared, delivery(41, "ana@example.com", cidade="Niterói"))
        again = await channel.send(prepared, delivery(41, "ana@example.com", cidade="Niterói"))
    finally:
        await channel.close()
    assert isinstance(result, Sent) and result == again  # D12: the same Message-ID on a resend
    received = server.messages[0]
    assert received.tls and received.auth_user == "disparo"
    assert received.rcpt_tos == ("ana@example.com",)
    signer = Signer(SECRET)
    assert received.mail_from.startswith("bounces+b-41-")  # VERP names the delivery
    assert signer.delivery_from_verp(received.mail_from) == 41
    msg = email.message_from_bytes(received.data, policy=email.policy.default)
    assert msg["Message-ID"] == result.message_id == signer.message_id(41, "empresa.com.br")
    assert str(make_header(decode_header(msg["Subject"]))) == "Olá Ana, uma oferta"
    assert "Empresa Ação" in str(msg["From"]) and "aviso@empresa.com.br" in str(msg["From"])
    unsubscribe = f"https://t.empresa.com.br/u/{signer.sign('u', 41)}"
    assert msg["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_payload()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    plain, markup = text.get_content(), html.get_content()
    # links go through the tracking endpoint, signed for campaign 7, delivery 41, link 1
    click = f"https://t.empresa.com.br/c/{signer.sign('c', 7, 41, 1)}"
    assert "Olá Ana de Niterói," in plain and f"Ver a oferta ({click})" in plain
    assert "Olá Ana de Niterói," in markup and f'href="{click}"' in markup
    assert "loja.example" not in markup and "loja.example" not in plain
    pixel = f"https://t.empresa.com.br/o/{signer.sign('o', 41)}.gif"
    assert f'<img src="{pixel}"' in markup and pixel not in plain
    assert channel.tracked_links(prepared) == ("https://loja.example/oferta",)
    assert unsubscribe in markup and unsubscribe in plain  # a visible unsubscribe link (D19)
    assert all(len(line) <= 998 for line in received.data.split(b"\r\n"))


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "one-by-one"])
async def test_email_pool_reuses_connections_and_maps_smtp_replies(
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    pipelining: bool,
) -> None:
    """The same replies mean the same with a relay that offers PIPELINING (RFC 2920: the
    envelope and DATA in one write) and with one that does not (a command at a time)."""
    from channels import email as email_channel

    pipelined: list[str] = []
    original = email_channel._Pipelined.send

    async def spy(self: Any, sender: str, recipient: str, *args: Any) -> None:
        pipelined.append(recipient)
        await original(self, sender, recipient, *args)

    monkeypatch.setattr(email_channel._Pipelined, "send", spy)
    server = start_smtp(tls="starttls", auth=True, pipelining=pipelining)
    server.reject("gone@example.com")
    server.tempfail("busy@example.com")
    config = email_config(tmp_path, server, monkeypatch)
    channel = await open_email(config, clock)
    try:
        prepared = channel.prepare(CAMPAIGN)
        results = await asyncio.gather(
            *(channel.send(prepared, delivery(i, f"p{i}@example.com")) for i in range(30))
        )
        gone = await channel.send(prepared, delivery(100, "gone@example.com"))
        busy = await channel.send(prepared, delivery(101, "busy@example.com"))
        busy_again = await channel.send(prepared, delivery(101, "busy@example.com"))
        invalid = await channel.send(prepared, delivery(102, "not an address"))
        server.drop_after(0)  # the relay restarts: the pool reconnects
        await asyncio.to_thread(server.wait_idle)
        after = await channel.send(prepared, delivery(103, "later@example.com"))
        after = (
            after
            if isinstance(after, Sent)
            else await channel.send(prepared, delivery(103, "later@example.com"))
        )
    finally:
        await channel.close()
    assert all(isinstance(r, Sent) for r in results)
    assert server.connections <= 3 + 1  # a pool of 3 reused connections (+1 after the drop)
    assert isinstance(gone, Failed) and gone.bounce and gone.reason.startswith("550")
    assert isinstance(busy, Retry) and busy.reason.startswith("451")
    assert isinstance(busy_again, Sent)
    assert isinstance(invalid, Failed) and not invalid.bounce
    assert isinstance(after, Sent)
    assert len(server.messages) == 32  # 30, busy@ at the second try, later@
    assert ("gone@example.com" in pipelined) is pipelining
    assert (len(pipelined) >= 34) is pipelining


async def test_accented_addresses_need_smtputf8(
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An address with accents in its local part goes out with SMTPUTF8 (RFC 6531) when the
    relay offers it; when it does not, the delivery fails at once with the reason (no
    retries, no bounce, no sender hold-off) and the connection stays in the pool."""
    utf8 = start_smtp()
    config = email_config(tmp_path, utf8, monkeypatch)
    channel = await open_email(config, clock)
    try:
        prepared = channel.prepare(CAMPAIGN)
        accented = await channel.send(prepared, delivery(1, "fábio.conceição@example.com"))
        plain = await channel.send(prepared, delivery(2, "ana@example.com"))
    finally:
        await channel.close()
    assert isinstance(accented, Sent) and isinstance(plain, Sent)
    first, second = utf8.messages
    assert first.rcpt_tos == ("fábio.conceição@example.com",) and first.smtputf8
    assert not second.smtputf8  # only when an address needs it

    ascii_only = start_smtp(smtputf8=False)
    (tmp_path / "b").mkdir()
    config = email_config(tmp_path / "b", ascii_only, monkeypatch)
    channel = await open_email(config, clock)
    try:
        prepared = channel.prepare(CAMPAIGN)
        refused = await channel.send(prepared, delivery(3, "fábio@example.com"))
        after = await channel.send(prepared, delivery(4, "ana@example.com"))
    finally:
        await channel.close()
    assert isinstance(refused, Failed) and not refused.bounce
    assert "SMTPUTF8" in refused.reason and "fábio@example.com" in refused.reason
    assert isinstance(after, Sent) and ascii_only.connections == 1


async def test_email_implicit_tls_and_an_untrusted_relay(
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_smtp(tls="implicit", auth=True)
    config = email_config(tmp_path, server, monkeypatch)
    channel = await open_email(config, clock)
    try:
        assert isinstance(
            await channel.send(channel.prepare(CAMPAIGN), delivery(1, "a@example.com")), Sent
        )
    finally:
        await channel.close()
    assert server.messages[0].tls
    other = start_smtp(tls="starttls", auth=True)  # its certificate is from another CA
    config = email_config(tmp_path, other, monkeypatch, ca_file=str(server.ca_pem))
    channel = await open_email(config, clock)
    try:
        result = await channel.send(channel.prepare(CAMPAIGN), delivery(2, "b@example.com"))
    finally:
        await channel.close()
    assert isinstance(result, Retry) and "certificate" in result.reason.lower()
    assert other.messages == []


async def test_dkim_signature_verifies_and_covers_list_unsubscribe(
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_secret(
        tmp_path / "dkim.pem",
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    server = start_smtp(tls="starttls", auth=True)
    config = email_config(
        tmp_path,
        server,
        monkeypatch,
        dkim_selector="s2026",
        dkim_key_file=str(tmp_path / "dkim.pem"),
    )
    channel = await open_email(config, clock)
    try:
        await channel.send(channel.prepare(CAMPAIGN), delivery(5, "ana@example.com"))
    finally:
        await channel.close()
    data = server.messages[0].data

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s2026._domainkey.empresa.com.br."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    signature = email.message_from_bytes(data)["DKIM-Signature"].replace("\r\n", "")
    signed = signature.split("h=")[1].split(";")[0].replace(" ", "").lower().split(":")
    assert {"from", "subject", "message-id", "list-unsubscribe", "list-unsubscribe-post"} <= set(
        signed
    )
    tampered = data.replace(b"Ver a oferta", b"Ver o golpe!")
    assert tampered != data
    assert not dkim.verify(tampered, dnsfunc=dns)


async def test_templates_are_sandboxed_and_escaped(
    start_smtp: Callable[..., SmtpServer],
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = start_smtp(tls="starttls", auth=True)
    config = email_config(tmp_path, server, monkeypatch)
    channel = await open_email(config, clock)
    attacks = [
        "<p>{{ ''.__class__.__mro__[1].__subclasses__() }}</p>",
        "<p>{{ cycler.__init__.__globals__.os.system('id') }}</p>",
        "<p>{{ self._TemplateReference__context }}</p>",
    ]
    benign = with_body(CAMPAIGN, "<p>{{ nome }}|{{ desconhecido }}|{{ cidade }}</p>")
    try:
        for body in attacks:  # refused once, for the campaign, before anyone is sent to
            with pytest.raises(CampaignProblem, match="cannot be used"):
                channel.prepare(with_body(CAMPAIGN, body))
        result = await channel.send(
            channel.prepare(benign), delivery(9, "ana@example.com", nome="<script>x</script>")
        )
    finally:
        await channel.close()
    assert isinstance(result, Sent)
    html = (
        email.message_from_bytes(server.messages[0].data, policy=email.policy.default)
        .get_payload()[1]
        .get_content()
    )
    assert "<p>&lt;script&gt;x&lt;/script&gt;||</p>" in html  # escaped; unknown -> empty


# -- Twilio ------------------------------------------------------------------------------------


def twilio_config(
    tmp_path: Path,
    fake: TwilioFake,
    monkeypatch: pytest.MonkeyPatch,
    channel: str = "sms-long",
    **extra: Any,
) -> Config:
    import tomli_w

    monkeypatch.setenv("TWILIO_TOKEN", fake.auth_token)
    write_secret(tmp_path / "tracking.key", SECRET)
    data = {
        "engine": {"spool_dir": "spool"},
        "tracking": {"public_url": "https://t.empresa.com.br", "secret_file": "tracking.key"},
        "accounts": {
            "tw": {
                "channel": channel,
                "account_sid": fake.account_sid,
                "auth_token_env": "TWILIO_TOKEN",
                "api_base_url": fake.base_url,
                "from_number": "+5511900000000",
                **extra,
            }
        },
        "templates": {
            "TEMPLATE_HOMOLOGADO_ITAU": {
                "content_sid": "HX" + "a" * 32,
                "variables": ["nome", "cidade"],
            }
        },
    }
    path = tmp_path / "disparo.toml"
    path.write_text(tomli_w.dumps(data))
    return load(path)


def sms_campaign(**kw: Any) -> Campaign:
    content = {
        k: kw.pop(k)
        for k in ("subject", "body", "template", "whatsapp_number", "sender", "from_name")
        if k in kw
    }
    content.setdefault("body", "Olá {{ nome }}, sua fatura vence amanhã")
    values: dict[str, Any] = dict(
        id=3,
        name="SMS",
        channel="sms-long",
        account="tw",
        start_at=datetime(2026, 11, 23, 12, tzinfo=UTC),
        address_kind="phone",
    )
    values.update(kw)
    return Campaign(**values, content=Content(**content))


def phone_delivery(i: int, phone: str, message: str | None = None, **fields: str) -> DeliveryInfo:
    return DeliveryInfo(
        id=i,
        campaign_id=3,
        address=phone,
        message=message,
        variables=variables(
            name=fields.pop("nome", "Ana"),
            email=None,
            phone=phone,
            external_key=None,
            fields=fields,
        ),
    )


async def test_sms_through_the_twilio_client(
    twilio: TwilioFake, tmp_path: Path, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = twilio_config(tmp_path, twilio, monkeypatch)
    channel = SmsLongChannel(config.accounts["tw"], ChannelContext(config, clock))
    await channel.open()
    twilio.script("+5511988880002", FakeResponse(429, retry_after=37))
    twilio.script("+5511988880003", FakeResponse(500))
    twilio.script("+5511988880004", FakeResponse(400, code=21610))
    twilio.script("+5511988880005", FakeResponse(400, code=21211))
    try:
        prepared = channel.prepare(sms_campaign())
        sent = await channel.send(prepared, phone_delivery(1, "(11) 98888-0001"))
        from_row = await channel.send(prepared, phone_delivery(6, "11988880006", "Texto da linha"))
        limited = await channel.send(prepared, phone_delivery(2, "11988880002"))
        down = await channel.send(prepared, phone_delivery(3, "11988880003"))
        stopped = await channel.send(prepared, phone_delivery(4, "11988880004"))
        invalid = await channel.send(prepared, phone_delivery(5, "11988880005"))
        fixed = await channel.send(prepared, phone_delivery(7, "1133334444"))
    finally:
        await channel.close()
    assert isinstance(sent, Sent) and sent.provider_id and sent.provider_id.startswith("SM")
    first = twilio.requests[0]
    assert first.authorized and first.form == {
        "To": "+5511988880001",
        "From": "+5511900000000",
        "Body": "Olá Ana, sua fatura vence amanhã",
        "StatusCallback": "https://t.empresa.com.br/twilio/tw/status",
    }
    assert isinstance(from_row, Sent)
    assert twilio.requests[1].form["Body"] == "Texto da linha"  # the row's own text (N28)
    assert limited == Retry(limited.reason, 37.0, scope="account") and "429" in limited.reason
    assert isinstance(down, Retry) and down.retry_after is None
    assert isinstance(stopped, Failed) and stopped.suppress == "stop"
    assert isinstance(invalid, Failed) and invalid.bounce
    assert isinstance(fixed, Failed) and "mobile" in fixed.reason  # never sent to a landline
    assert len(twilio.requests) == 6


async def test_sms_with_a_messaging_service_and_wrong_credentials(
    twilio: TwilioFake, tmp_path: Path, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = twilio_config(tmp_path, twilio, monkeypatch, messaging_service_sid="MG" + "1" * 32)
    channel = SmsLongChannel(config.accounts["tw"], ChannelContext(config, clock))
    await channel.open()
    try:
        await channel.send(channel.prepare(sms_campaign()), phone_delivery(1, "11988880001"))
    finally:
        await channel.close()
    assert twilio.requests[0].form["MessagingServiceSid"] == "MG" + "1" * 32
    monkeypatch.setenv("TWILIO_TOKEN", "wrong")
    channel = SmsLongChannel(config.accounts["tw"], ChannelContext(config, clock))
    await channel.open()
    try:
        refused = await channel.send(
            channel.prepare(sms_campaign()), phone_delivery(2, "11988880001")
        )
    finally:
        await channel.close()
    assert isinstance(refused, Retry) and "credentials" in refused.reason
    assert "wrong" not in refused.reason


async def test_whatsapp_templates_and_senders(
    twilio: TwilioFake, tmp_path: Path, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign = sms_campaign(
        channel="whatsapp-exclusive",
        template="TEMPLATE_HOMOLOGADO_ITAU",
        whatsapp_number="+5511998877665",
        body=None,
    )
    config = twilio_config(tmp_path, twilio, monkeypatch, "whatsapp-exclusive")
    exclusive = WhatsAppExclusiveChannel(config.accounts["tw"], ChannelContext(config, clock))
    await exclusive.open()
    try:
        await exclusive.send(
            exclusive.prepare(campaign), phone_delivery(1, "11988880001", cidade="Recife")
        )
        with pytest.raises(CampaignProblem, match=r"\[templates.OUTRO\]"):
            exclusive.prepare(
                sms_campaign(
                    channel="whatsapp-exclusive", template="OUTRO", whatsapp_number="+5511998877665"
                )
            )
    finally:
        await exclusive.close()
    form = twilio.requests[0].form
    assert form["To"] == "whatsapp:+5511988880001"
    assert form["From"] == "whatsapp:+5511998877665"  # the campaign's _nw number (N15)
    assert form["ContentSid"] == "HX" + "a" * 32
    assert json.loads(form["ContentVariables"]) == {"1": "Ana", "2": "Recife"}
    assert "Body" not in form

    pool = ["+5511900000001", "+5511900000002", "+5511900000003"]
    config = twilio_config(tmp_path, twilio, monkeypatch, "whatsapp-shared", from_numbers=pool)
    shared = WhatsAppSharedChannel(config.accounts["tw"], ChannelContext(config, clock))
    await shared.open()
    try:
        prepared = shared.prepare(
            sms_campaign(channel="whatsapp-shared", template="TEMPLATE_HOMOLOGADO_ITAU", body=None)
        )
        for i, number in enumerate(["11988880001", "11988880002", "11988880001"]):
            await shared.send(prepared, phone_delivery(10 + i, number))
    finally:
        await shared.close()
    senders = [r.form["From"] for r in twilio.requests[1:4]]
    assert senders[0] == senders[2] and {s.removeprefix("whatsapp:") for s in senders} <= set(pool)

    config = twilio_config(tmp_path, twilio, monkeypatch, "whatsapp-prospect")
    prospect = WhatsAppProspectChannel(config.accounts["tw"], ChannelContext(config, clock))
    await prospect.open()
    try:
        await prospect.send(
            prospect.prepare(
                sms_campaign(
                    channel="whatsapp-prospect", template="TEMPLATE_HOMOLOGADO_ITAU", body=None
                )
            ),
            phone_delivery(20, "11988880009"),
        )
    finally:
        await prospect.close()
    assert twilio.requests[4].form["From"] == "whatsapp:+5511900000000"


async def test_sandbox_outbox(tmp_path: Path, clock: TestClock) -> None:
    config = load(write_config(tmp_path, accounts={"tw": {"channel": "sms-long", "sandbox": True}}))
    channel = SmsLongChannel(config.accounts["tw"], ChannelContext(config, clock))
    await channel.open()
    try:
        result = await channel.send(
            channel.prepare(sms_campaign()), phone_delivery(8, "11988880001")
        )
    finally:
        await channel.close()
    assert isinstance(result, Sent) and result.provider_id == "SANDBOX8"
    [line] = (tmp_path / "outbox" / "tw.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["To"] == "+5511988880001" and record["Body"].startswith("Olá Ana")
    assert "sandbox" in channel.describe()


def test_live_accounts_need_credentials(tmp_path: Path) -> None:
    from engine.config import ConfigError

    with pytest.raises(ConfigError) as info:
        load(
            write_config(
                tmp_path,
                accounts={
                    "tw": {"channel": "sms-long"},
                    "mail": {
                        "channel": "email",
                        "from_address": "a@b.com",
                        "tls": "none",
                        "host": "relay",
                        "password_env": "X",
                    },
                },
            )
        )
    text = str(info.value)
    assert "accounts.tw.account_sid: missing" in text
    assert "accounts.tw.from_number: give `from_number` or `messaging_service_sid`" in text
    assert "accounts.mail.tls: refusing to send a password without TLS" in text


async def test_the_twilio_library_logs_only_warnings(
    twilio: TwilioFake,
    tmp_path: Path,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the engine logging at INFO, a send through the fake Twilio peer adds no line from
    the twilio library (it logs ~10 INFO lines per request: headers, URL, status)."""
    caplog.set_level(logging.INFO)
    config = twilio_config(tmp_path, twilio, monkeypatch)
    channel = SmsLongChannel(config.accounts["tw"], ChannelContext(config, clock))
    await channel.open()
    try:
        sent = await channel.send(channel.prepare(sms_campaign()), phone_delivery(1, "11988880001"))
    finally:
        await channel.close()
    assert isinstance(sent, Sent) and len(twilio.requests) == 1
    chatter = [r for r in caplog.records if r.name.startswith("twilio")]
    assert chatter == [], [r.getMessage() for r in chatter[:3]]
    assert logging.getLogger("twilio.http_client").getEffectiveLevel() == logging.WARNING

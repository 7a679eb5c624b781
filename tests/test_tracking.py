"""The tracking endpoint over real HTTP (D17–D19): e-mails sent by the dispatcher to a real SMTP
peer carry signed open, click and unsubscribe links; requesting them records what happened,
tampered tokens change nothing; Twilio's callbacks signed with the real library are accepted
and anything else refused; health and metrics."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
import tomli_w
from twilio.request_validator import RequestValidator

from engine import hookimpl
from engine.addresses import normalise_phone
from engine.clock import TestClock, local_today
from engine.config import Config, load_config
from engine.events import DeliveryEvent, Signal
from engine.feedback.tracking import Tracking
from engine.intake.importer import file_digest, import_file
from engine.plugins import Plugins, load_plugins
from engine.plugins.format import FormatContext
from engine.plugins.webhook import Route, keyword
from engine.sending.dispatcher import Dispatcher
from engine.service import signer_for
from engine.store import Store
from engine.store import schema as t
from engine.testing import write_secret
from engine.testing.eventually import eventually
from tests.helpers import tick
from tests.peers.smtp import SmtpServer, start_smtp_server
from tests.peers.twilio import FakeResponse, TwilioFake, start_twilio_fake

PUBLIC = "https://t.empresa.com.br"
BODY = (
    "<html><body><p>Olá {{ nome }},</p>"
    '<p><a href="https://loja.example/oferta?utm=1&amp;x=2">Ver a oferta</a></p>'
    '<p><a href="https://loja.example/conta/{{ cpf }}?n={{ nome }}">Sua conta</a></p>'
    '<p><a href="mailto:sac@empresa.com.br">SAC</a></p></body></html>'
)


class Observer:
    def __init__(self) -> None:
        self.events: list[DeliveryEvent] = []

    @hookimpl
    def delivery_event(self, event: DeliveryEvent) -> None:
        self.events.append(event)


@dataclass
class Sent:
    config: Config
    store: Store
    clock: TestClock
    plugins: Plugins
    campaigns: dict[str, int]
    mails: dict[str, email.message.EmailMessage]
    base: str  # the endpoint as bound (http://127.0.0.1:port)
    tracking: Tracking
    http: aiohttp.ClientSession
    observer: Observer
    twilio: TwilioFake


def write_config(tmp_path: Path, smtp: SmtpServer, twilio: TwilioFake, **tracking: Any) -> Path:
    write_secret(tmp_path / "key", "k" * 32)
    (tmp_path / "body.html").write_text(BODY)
    path = tmp_path / "disparo.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "tracking": {"public_url": PUBLIC, "secret_file": "key", **tracking},
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "from_address": "aviso@empresa.com.br",
                        "host": smtp.host,
                        "port": smtp.port,
                        "tls": "none",
                        "rate": 100,
                    },
                    "sms": {
                        "channel": "sms-long",
                        "account_sid": twilio.account_sid,
                        "auth_token_env": "TWILIO_TOKEN",
                        "api_base_url": twilio.base_url,
                        "from_number": "+5511900000000",
                        "rate": 100,
                    },
                },
                "wallets": {
                    "BRAD": {
                        "email_subject": "Novidades",
                        "email_template": "body.html",
                        "sms_template": "Oi {{ nome }}",
                    }
                },
            }
        )
    )
    return path


def import_mailing(
    store: Store,
    config: Config,
    clock: TestClock,
    tmp_path: Path,
    seq: int,
    params: str,
    rows: str,
) -> int:
    day = local_today(clock, config.tz)
    spool = tmp_path / f"in-{seq}.csv"
    spool.write_text(rows)
    fmt = load_plugins().formats()["mailing"](FormatContext(config, "drop", day, clock.now()))
    report = import_file(
        store,
        fmt,
        source="drop",
        path=f"mailing_{day:%d%m%y}_{seq:03d}_cBRAD_{params}.csv",
        spool=spool,
        size=spool.stat().st_size,
        mtime=None,
        sha256=file_digest(spool),
    )
    assert report.outcome == "imported", report.problems
    assert report.campaign_id is not None
    return report.campaign_id


@pytest.fixture
async def sent(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Sent]:
    """An e-mail campaign (4 recipients) and an SMS campaign (4 numbers) sent through real
    peers, and the tracking endpoint listening on loopback."""
    smtp = start_smtp_server(tls="none", auth=False)
    twilio = start_twilio_fake()
    monkeypatch.setenv("TWILIO_TOKEN", twilio.auth_token)
    plugins = load_plugins()
    observer = Observer()
    plugins.register(observer, "observer")
    config = load_config(write_config(tmp_path, smtp, twilio), plugins=plugins)
    store.inline = True
    people = "".join(f"Pessoa {i};p{i}@example.com;{100 + i}\n" for i in range(4))
    campaigns = {
        "email": import_mailing(
            store, config, clock, tmp_path, 1, "email", "nome;email;cpf\n" + people
        ),
        "sms": import_mailing(
            store,
            config,
            clock,
            tmp_path,
            2,
            "smslong",
            "nome;telefone\n" + "".join(f"P{i};1199000000{i}\n" for i in range(4)),
        ),
    }
    dispatcher = Dispatcher(store, plugins, config, clock, signer=signer_for(config))
    try:
        for _ in range(60):
            await tick(dispatcher, clock)
            if len(smtp.messages) >= 4 and len(twilio.requests) >= 4:
                break
        for _ in range(3):
            await dispatcher.tick()
            await clock.advance(1)
    finally:
        await dispatcher.shutdown()
    mails = {
        m.rcpt_tos[0]: email.message_from_bytes(m.data, policy=email.policy.default)
        for m in smtp.messages
    }
    assert len(mails) == 4 and len(twilio.requests) == 4
    tracking = Tracking(store, config, clock, plugins=plugins)
    bound = await tracking.start("127.0.0.1:0")
    async with aiohttp.ClientSession() as http:
        yield Sent(
            config,
            store,
            clock,
            plugins,
            campaigns,
            mails,
            f"http://{bound}",
            tracking,
            http,
            observer,
            twilio,
        )
    await tracking.stop()
    plugins.unregister(name="observer")
    twilio.stop()
    smtp.stop()


def html_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def local(s: Sent, url: str) -> str:
    """A public tracking URL, requested on the endpoint as bound (behind the 'proxy')."""
    assert url.startswith(PUBLIC)
    return s.base + url[len(PUBLIC) :]


def delivery(s: Sent, address: str) -> Any:
    with s.store.read() as c:
        return c.execute(sa.select(t.deliveries).where(t.deliveries.c.address == address)).one()


def events(s: Sent, kind: str | None = None) -> list[Any]:
    with s.store.read() as c:
        query = sa.select(t.events).where(t.events.c.origin != "engine").order_by(t.events.c.id)
        if kind:
            query = query.where(t.events.c.kind == kind)
        return list(c.execute(query))


async def settle(s: Sent) -> None:
    """Wait until the writer stored what the handlers submitted (they answer a pixel or a
    click before the signal is stored)."""
    writer = s.tracking.writer
    await eventually(
        lambda: writer.applied >= writer.submitted,
        what="the writer to store every signal submitted",
        detail=lambda: f"{writer.applied} of {writer.submitted} stored",
    )


async def test_opens_and_clicks_are_recorded_and_redirect_to_the_campaigns_links(
    sent: Sent,
) -> None:
    s = sent
    html = html_of(s.mails["p1@example.com"])
    pixel = re.search(r'<img src="([^"]+)"', html)
    clicks = re.findall(r'href="(https://t\.empresa\.com\.br/c/[^"]+)"', html)
    assert pixel is not None and len(clicks) == 2  # mailto: is not tracked
    assert 'href="mailto:sac@empresa.com.br"' in html

    async with s.http.get(local(s, pixel.group(1))) as r:
        assert r.status == 200 and r.content_type == "image/gif"
        assert "no-store" in r.headers["Cache-Control"]
        assert (await r.read()).startswith(b"GIF89a")
    async with s.http.get(local(s, clicks[0]), allow_redirects=False) as r:
        assert r.status == 302
        assert r.headers["Location"] == "https://loja.example/oferta?utm=1&x=2"
    async with s.http.get(local(s, clicks[1]), allow_redirects=False) as r:
        # a link made per recipient: their values, URL-encoded
        assert r.headers["Location"] == "https://loja.example/conta/101?n=Pessoa%201"
    async with s.http.get(local(s, clicks[0]), allow_redirects=False) as r:
        assert r.status == 302
    await settle(s)

    d = delivery(s, "p1@example.com")
    assert d.opened_at is not None and d.clicked_at is not None
    campaign = s.store.campaigns.get(s.campaigns["email"])
    assert campaign is not None
    assert (campaign.counters["opened"], campaign.counters["clicked"]) == (1, 1)
    assert campaign.counters["clicks"] == 3  # every click; clicked counts recipients
    clicks_seen = [e.detail["link"] for e in events(s, "click")]
    assert clicks_seen == [1, 2, 1]
    # the observer hook saw them too, with the delivery's channel and address
    seen = [(e.kind, e.address) for e in s.observer.events]
    assert ("open", "p1@example.com") in seen and seen.count(("click", "p1@example.com")) == 3

    # a click without an open (images blocked) still counts the recipient as having read
    other = re.findall(
        r'href="(https://t\.empresa\.com\.br/c/[^"]+)"', html_of(s.mails["p2@example.com"])
    )
    async with s.http.get(local(s, other[0]), allow_redirects=False) as r:
        assert r.status == 302
    await settle(s)
    assert delivery(s, "p2@example.com").opened_at is not None
    campaign = s.store.campaigns.get(s.campaigns["email"])
    assert campaign is not None and campaign.counters["opened"] == 2


async def test_tampered_or_foreign_tokens_get_404_and_change_nothing(sent: Sent) -> None:
    s = sent
    html = html_of(s.mails["p1@example.com"])
    click = re.findall(r'href="(https://t\.empresa\.com\.br/c/[^"]+)"', html)[0]
    pixel = re.search(r'<img src="([^"]+)"', html)
    assert pixel is not None
    signer = s.tracking.signer
    d = delivery(s, "p1@example.com")
    tampered = [
        click[:-1] + ("0" if click[-1] != "0" else "1"),  # one hex digit of the MAC
        click.replace(f".{d.id}.", f".{d.id + 1}."),  # another delivery, same MAC
        f"{PUBLIC}/c/{signer.sign('u', d.id)}",  # a token made for another purpose
        f"{PUBLIC}/c/{signer.sign('c', s.campaigns['email'], d.id, 9)}",  # no such link
        f"{PUBLIC}/c/javascript:alert(1)",
        f"{PUBLIC}/c/c-1.1.1-{'0' * 20}",
        pixel.group(1).replace(".gif", "0.gif"),
        f"{PUBLIC}/u/u-{d.id}-{'f' * 20}",
    ]
    for url in tampered:
        async with s.http.get(local(s, url), allow_redirects=False) as r:
            assert r.status == 404, url
            assert "Location" not in r.headers
    async with s.http.post(
        local(s, f"{PUBLIC}/u/u-{d.id}-{'f' * 20}"), data={"List-Unsubscribe": "One-Click"}
    ) as r:
        assert r.status == 404
    await settle(s)
    assert events(s) == []
    assert s.store.suppressions.search() == []


async def test_unsubscribe_page_get_changes_nothing_and_post_unsubscribes(sent: Sent) -> None:
    s = sent
    headers = s.mails["p1@example.com"]
    url = str(headers["List-Unsubscribe"]).strip("<>")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert url in html_of(headers)  # the visible link is the same

    async with s.http.get(local(s, url)) as r:  # GET (and link scanners) change nothing
        page = await r.text()
        assert r.status == 200 and "desta campanha" in page and "nenhuma" in page
        assert 'name="scope" value="campaign"' in page and 'name="scope" value="all"' in page
        assert "Set-Cookie" not in r.headers
    await settle(s)
    assert events(s) == [] and s.store.suppressions.search() == []

    # RFC 8058: what a mail client's "unsubscribe" button sends, without cookies
    async with s.http.post(local(s, url), data={"List-Unsubscribe": "One-Click"}) as r:
        assert r.status == 200
    [suppression] = s.store.suppressions.search()
    assert (suppression.address, suppression.origin) == ("p1@example.com", "unsubscribe")
    assert delivery(s, "p1@example.com").unsubscribed == "all"

    # the page's "this campaign only": no suppression
    url2 = str(s.mails["p2@example.com"]["List-Unsubscribe"]).strip("<>")
    async with s.http.post(local(s, url2), data={"scope": "campaign"}) as r:
        assert r.status == 200 and "desta campanha" in await r.text()
    assert delivery(s, "p2@example.com").unsubscribed == "campaign"
    assert len(s.store.suppressions.search()) == 1
    async with s.http.post(local(s, url2), data={"scope": "everything"}) as r:
        assert r.status == 400  # says what it expects
    campaign = s.store.campaigns.get(s.campaigns["email"])
    assert campaign is not None and campaign.counters["unsubscribed"] == 2
    assert [e.detail["scope"] for e in events(s, "unsubscribe")] == ["all", "campaign"]


def e164(phone: str) -> str:
    value = normalise_phone(phone).value
    assert value is not None
    return value


def sign(s: Sent, path: str, form: dict[str, str], url: str | None = None) -> str:
    return RequestValidator(s.twilio.auth_token).compute_signature(url or PUBLIC + path, form)


async def post_twilio(
    s: Sent,
    path: str,
    form: dict[str, str],
    *,
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    all_headers = {"X-Twilio-Signature": signature or sign(s, path, form), **(headers or {})}
    async with s.http.post(s.base + path, data=form, headers=all_headers) as r:
        await r.read()
        return r


def sms_deliveries(s: Sent) -> list[Any]:
    with s.store.read() as c:
        return list(
            c.execute(
                sa.select(t.deliveries)
                .where(t.deliveries.c.campaign_id == s.campaigns["sms"])
                .order_by(t.deliveries.c.position)
            )
        )


async def test_twilio_status_callbacks_signed_out_of_order_and_retried(sent: Sent) -> None:
    s = sent
    d0, d1, d2, d3 = sms_deliveries(s)
    path = "/twilio/sms/status"

    def form(d: Any, status: str, **extra: str) -> dict[str, str]:
        return {
            "MessageSid": d.provider_id,
            "MessageStatus": status,
            "AccountSid": s.twilio.account_sid,
            "To": d.address,
            **extra,
        }

    # the callback URL the channel gave Twilio is the one validated against
    assert s.twilio.requests[0].form["StatusCallback"] == PUBLIC + path
    assert (await post_twilio(s, path, form(d0, "queued"))).status == 204
    assert (await post_twilio(s, path, form(d0, "delivered"))).status == 204
    assert (await post_twilio(s, path, form(d0, "sent"))).status == 204  # late: no regression
    retry = {"I-Twilio-Idempotency-Token": "abc-123"}
    assert (await post_twilio(s, path, form(d1, "delivered"), headers=retry)).status == 204
    assert (await post_twilio(s, path, form(d1, "delivered"), headers=retry)).status == 204
    hard = form(d2, "undelivered", ErrorCode="30005")  # unknown destination handset
    assert (await post_twilio(s, path, hard)).status == 204
    stop = form(d3, "failed", ErrorCode="21610")  # the recipient had sent STOP
    assert (await post_twilio(s, path, stop)).status == 204
    await settle(s)

    d0, d1, d2, d3 = sms_deliveries(s)
    assert (d0.provider_status, d0.status) == ("delivered", "sent")
    assert d1.provider_status == "delivered"
    assert (d2.status, d2.provider_status) == ("bounced", "undelivered")
    assert d3.status == "failed"
    campaign = s.store.campaigns.get(s.campaigns["sms"])
    assert campaign is not None
    counters = campaign.counters
    assert (counters["delivered"], counters["sent"], counters["bounced"], counters["failed"]) == (
        2,
        2,
        1,
        1,
    )
    assert campaign.remaining == 0
    origins = {x.address: x.origin for x in s.store.suppressions.search()}
    assert origins == {e164(d2.address): "bounce", e164(d3.address): "stop"}
    with s.store.read() as c:
        delivered = c.execute(
            sa.select(sa.func.count())
            .select_from(t.events)
            .where(t.events.c.kind == "delivered", t.events.c.delivery_id == d1.id)
        ).scalar()
    assert delivered == 1  # the retried callback was applied once
    ignored = [e for e in events(s, "status") if e.detail.get("applied") is False]
    assert len(ignored) == 1 and ignored[0].delivery_id == d0.id


async def test_twilio_callbacks_without_a_valid_signature_get_403_and_change_nothing(
    sent: Sent,
) -> None:
    s = sent
    d0 = sms_deliveries(s)[0]
    path = "/twilio/sms/status"
    good = {"MessageSid": d0.provider_id, "MessageStatus": "delivered"}
    async with s.http.post(s.base + path, data=good) as r:  # unsigned
        assert r.status == 403
    tampered = {**good, "MessageStatus": "undelivered", "ErrorCode": "30005"}
    assert (await post_twilio(s, path, tampered, signature=sign(s, path, good))).status == 403
    wrong_url = sign(s, path, good, url="https://evil.example" + path)
    assert (await post_twilio(s, path, good, signature=wrong_url)).status == 403
    other_token = RequestValidator("x" * 32).compute_signature(PUBLIC + path, good)
    assert (await post_twilio(s, path, good, signature=other_token)).status == 403
    assert (await post_twilio(s, "/twilio/mail/status", good)).status == 404  # not Twilio
    assert (await post_twilio(s, "/twilio/nobody/status", good)).status == 404
    await settle(s)
    assert events(s) == []
    assert sms_deliveries(s)[0].provider_status is None


async def test_inbound_messages_stop_start_and_interactions(sent: Sent) -> None:
    s = sent
    d0, d1, *_ = sms_deliveries(s)
    path = "/twilio/sms/inbound"

    def inbound(sid: str, sender: str, body: str) -> dict[str, str]:
        return {
            "MessageSid": sid,
            "From": sender,
            "To": "+5511900000000",
            "Body": body,
            "AccountSid": s.twilio.account_sid,
        }

    # Twilio sends numbers in E.164; this file had them without hygiene (as written)
    r = await post_twilio(s, path, inbound("SM1", e164(d0.address), "  sair! "))
    assert r.status == 200 and r.content_type == "text/xml"
    again = await post_twilio(s, path, inbound("SM1", e164(d0.address), "  sair! "))  # a retry
    assert again.status == 200
    [stop] = s.store.suppressions.search()
    assert (stop.address, stop.origin) == (e164(d0.address), "stop")
    await post_twilio(s, path, inbound("SM2", e164(d0.address), "START"))
    assert s.store.suppressions.search() == []  # START lifts what STOP did
    await post_twilio(s, path, inbound("SM3", f"whatsapp:{e164(d1.address)}", "Quero saber"))
    await settle(s)
    kinds = [(e.kind, e.address) for e in events(s)]
    assert kinds == [
        ("stop", e164(d0.address)),
        ("start", e164(d0.address)),
        ("reply", e164(d1.address)),
    ]
    reply = events(s, "reply")[0]
    assert reply.campaign_id == s.campaigns["sms"] and reply.detail["channel"] == "whatsapp"
    with s.store.read() as c:
        touched = c.execute(
            sa.select(t.contacts.c.last_interaction_at).where(t.contacts.c.id == d1.contact_id)
        ).scalar()
    assert touched == s.clock.now()  # an inbound reply is an interaction (D4, _x)


def test_keywords() -> None:
    for word in ("STOP", "stop", " Sair ", "PARAR.", "cancelar", "DESCADASTRAR", "stopall"):
        assert keyword(word) == "stop", word
    for word in ("START", "unstop", "yes"):
        assert keyword(word) == "start", word
    for text in ("Não quero parar de receber", "sair daqui", "", "STOP please"):
        assert keyword(text) is None, text


async def test_healthz_and_metrics(sent: Sent) -> None:
    s = sent
    async with s.http.get(s.base + "/healthz") as r:
        body = await r.json()
        assert r.status == 200 and body["status"] == "ok"
    async with s.http.get(s.base + "/metrics") as r:
        text = await r.text()
        assert r.status == 200
    assert 'disparo_queue_depth{account="sms"} 0.0' in text
    assert 'disparo_guard_paused{account="mail"} 0.0' in text
    assert 'disparo_campaigns{status="completed"} 2.0' in text
    assert "disparo_tracking_requests_total" in text


async def test_metrics_count_every_tracking_request_exactly(sent: Sent) -> None:
    """The endpoint counts its requests on the event loop and adds them to
    ``disparo_tracking_requests_total`` when ``/metrics`` is scraped: each scrape shows every
    request answered before it, none twice."""
    s = sent
    pixel = re.search(r'<img src="([^"]+)"', html_of(s.mails["p1@example.com"]))
    assert pixel is not None

    async def scrape() -> dict[tuple[str, str], float]:
        async with s.http.get(s.base + "/metrics") as r:
            text = await r.text()
        found = re.findall(
            r'disparo_tracking_requests_total\{outcome="([^"]+)",route="([^"]+)"\} (\S+)', text
        )
        return {(route, outcome): float(n) for outcome, route, n in found}

    before = await scrape()
    for _ in range(3):
        async with s.http.get(local(s, pixel.group(1))) as r:
            assert r.status == 200
    async with s.http.get(local(s, pixel.group(1).replace(".gif", "0.gif"))) as r:
        assert r.status == 404
    first = await scrape()
    assert first.get(("open", "ok"), 0) - before.get(("open", "ok"), 0) == 3
    assert first.get(("open", "refused"), 0) - before.get(("open", "refused"), 0) == 1
    assert await scrape() == first  # a second scrape adds nothing


async def test_metrics_are_refused_outside_the_allowed_networks(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp, twilio = start_smtp_server(tls="none", auth=False), start_twilio_fake()
    monkeypatch.setenv("TWILIO_TOKEN", twilio.auth_token)
    try:
        config = load_config(write_config(tmp_path, smtp, twilio, metrics_from=["10.0.0.0/8"]))
        tracking = Tracking(store, config, clock)
        bound = await tracking.start("127.0.0.1:0")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://{bound}/metrics") as r:
                    assert r.status == 403
                async with http.get(f"http://{bound}/healthz") as r:
                    assert r.status == 200
        finally:
            await tracking.stop()
    finally:
        twilio.stop()
        smtp.stop()


_ = FakeResponse  # (the fake's scripted answers are exercised in test_channels.py)


async def test_ses_notifications_through_sns(sent: Sent) -> None:
    """Amazon SES through SNS: a genuine signed bounce (mapped by our Message-ID) bounces
    and suppresses the address once, whatever the retries; a complaint suppresses; a forged
    signature or a topic not configured gets 403 and changes nothing."""
    from dataclasses import replace

    from channels._ses import SesWebhooks
    from tests.test_sns import TOPIC, FakeFetch, body, notification, sign, signer, stranger

    settings = sent.config.tracking
    assert settings is not None
    config = replace(sent.config, tracking=replace(settings, ses_topics=(TOPIC,)))
    fetch = FakeFetch({sign(notification())["SigningCertURL"]: signer().pem})

    class Ses(SesWebhooks):  # certificates come from the test's fetcher, not from AWS
        pass

    Ses.fetch = fetch
    tracking = Tracking(sent.store, config, sent.clock, plugins=sent.plugins, webhooks=[Ses])
    bound = await tracking.start("127.0.0.1:0")
    try:
        now = datetime.now(UTC)

        def ses(kind: str, rcpt: str, message_id: str) -> bytes:
            mail = sent.mails[rcpt]
            payload: dict[str, Any] = {
                "notificationType": kind,
                "mail": {
                    "source": "aviso@empresa.com.br",
                    "messageId": "0100018e-ses-id",
                    "commonHeaders": {"messageId": str(mail["Message-ID"])},
                },
            }
            if kind == "Bounce":
                payload["bounce"] = {
                    "bounceType": "Permanent",
                    "bounceSubType": "General",
                    "bouncedRecipients": [
                        {"emailAddress": rcpt, "action": "failed", "status": "5.1.1",
                         "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
                    ],
                }  # fmt: skip
            else:
                payload["complaint"] = {
                    "complainedRecipients": [{"emailAddress": rcpt}],
                    "complaintFeedbackType": "abuse",
                }
            return body(
                sign(
                    notification(
                        json.dumps(payload), sent=now - timedelta(seconds=5), MessageId=message_id
                    )
                )
            )

        url = f"http://{bound}/ses"
        bounce = ses("Bounce", "p1@example.com", "sns-1")
        for _ in range(2):  # SNS retries deliver the same MessageId again
            async with sent.http.post(url, data=bounce) as r:
                assert r.status == 200, await r.text()
        async with sent.http.post(url, data=ses("Complaint", "p2@example.com", "sns-2")) as r:
            assert r.status == 200
        forged = json.loads(ses("Bounce", "p3@example.com", "sns-3"))
        forged = sign({k: v for k, v in forged.items() if k != "Signature"}, by=stranger())
        async with sent.http.post(url, data=body(forged)) as r:
            assert r.status == 403
        other = json.loads(ses("Bounce", "p3@example.com", "sns-4"))
        other["TopicArn"] = TOPIC + "-other"
        async with sent.http.post(url, data=body(sign(other))) as r:
            assert r.status == 403
        await tracking.writer.close()
    finally:
        await tracking.stop()

    assert delivery(sent, "p1@example.com").status == "bounced"
    assert delivery(sent, "p2@example.com").complained_at is not None
    assert delivery(sent, "p3@example.com").status == "sent"
    assert [e.kind for e in events(sent) if e.origin == "ses"] == ["bounced", "complaint"]
    with sent.store.read() as c:
        origins = dict(
            c.execute(sa.select(t.suppressions.c.address, t.suppressions.c.origin)).all()
        )
    assert origins == {"p1@example.com": "bounce", "p2@example.com": "complaint"}


async def test_closing_the_writer_never_drops_a_batch_being_gathered(
    store: Store, clock: TestClock
) -> None:
    """The endpoint answers a pixel before the open is stored; stopping the server (SIGTERM)
    must still store it, even when the writer is in the middle of gathering a batch."""
    from engine.feedback.tracking import SignalWriter

    writer = SignalWriter(store, linger=0.2)
    writer.start()
    first = writer.submit(Signal("open", clock.now(), "tracking", delivery_id=10**9))
    # the writer took it and now waits (0.2 s) for more to join
    await eventually(lambda: not writer.queue, what="the writer to take the first signal")
    second = writer.submit(Signal("open", clock.now(), "tracking", delivery_id=10**9 + 1))
    await writer.close()
    assert first.done() and second.done()
    assert first.result().unknown and second.result().unknown
    assert writer.applied == 2


async def test_plugin_webhooks_are_mounted_and_may_not_take_the_endpoints_paths(
    sent: Sent,
) -> None:
    """A plugin's routes answer on the endpoint (its own handler, its own metrics label);
    a route on one of the endpoint's own paths, or one another plugin has, is refused."""
    from engine.plugins import PluginError
    from tests.test_plugins import EchoWebhooks

    tracking = Tracking(sent.store, sent.config, sent.clock, webhooks=[EchoWebhooks])
    bound = await tracking.start("127.0.0.1:0")
    try:
        async with sent.http.post(f"http://{bound}/echo/hook", data=b"hello") as r:
            assert r.status == 200 and await r.text() == "hello"
    finally:
        await tracking.stop()

    class Thief(EchoWebhooks):
        name = "thief"

        def routes(self) -> Sequence[Route]:
            return (Route("GET", "/metrics", self.hook),)

    for taken in ([Thief], [EchoWebhooks, EchoWebhooks]):
        with pytest.raises(PluginError, match="cannot mount"):
            Tracking(sent.store, sent.config, sent.clock, webhooks=taken)


@pytest.mark.parametrize(
    "header",
    [
        {"X-Forwarded-For": "203.0.113.9"},
        {"Forwarded": "for=203.0.113.9;proto=https"},
        {"X-Real-IP": "203.0.113.9"},
        {"X-Forwarded-Host": "t.empresa.com.br"},
    ],
)
async def test_metrics_through_a_reverse_proxy_need_the_token(
    tmp_path: Path,
    store: Store,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    header: dict[str, str],
) -> None:
    """/metrics behind a reverse proxy on the same host (README's deployment): every visitor
    comes from 127.0.0.1, so a request carrying a proxy's header is refused (403, saying
    why); with ``Authorization: Bearer`` and the token of ``metrics_token_file`` it is served,
    through the proxy too; a wrong token is refused; loopback without any header is served."""
    smtp, twilio = start_smtp_server(tls="none", auth=False), start_twilio_fake()
    monkeypatch.setenv("TWILIO_TOKEN", twilio.auth_token)
    token = "m" * 20 + "-metrics-token"
    write_secret(tmp_path / "metrics-token", token + "\n")
    try:
        config = load_config(
            write_config(tmp_path, smtp, twilio, metrics_token_file="metrics-token")
        )
        tracking = Tracking(store, config, clock)
        bound = await tracking.start("127.0.0.1:0")
        url = f"http://{bound}/metrics"
        try:
            async with aiohttp.ClientSession() as http:
                async with http.get(url) as r:
                    assert r.status == 200
                async with http.get(url, headers=header) as r:
                    assert r.status == 403
                    text = await r.text()
                    assert "reverse proxy" in text and "metrics_token_file" in text
                bearer = {"Authorization": f"Bearer {token}"}
                async with http.get(url, headers=header | bearer) as r:
                    assert r.status == 200
                    assert "disparo_queue_depth" in await r.text()
                wrong = {"Authorization": f"Bearer {token[:-1]}x"}
                for bad in (wrong, {"Authorization": f"Basic {token}"}):
                    async with http.get(url, headers=bad) as r:
                        assert r.status == 403
        finally:
            await tracking.stop()
    finally:
        twilio.stop()
        smtp.stop()


async def test_without_a_token_a_bearer_reads_nothing(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp, twilio = start_smtp_server(tls="none", auth=False), start_twilio_fake()
    monkeypatch.setenv("TWILIO_TOKEN", twilio.auth_token)
    try:
        config = load_config(write_config(tmp_path, smtp, twilio))
        assert config.tracking is not None and config.tracking.metrics_token is None
        tracking = Tracking(store, config, clock)
        bound = await tracking.start("127.0.0.1:0")
        try:
            async with aiohttp.ClientSession() as http:
                headers = {"Authorization": "Bearer ", "X-Forwarded-For": "203.0.113.9"}
                async with http.get(f"http://{bound}/metrics", headers=headers) as r:
                    assert r.status == 403
        finally:
            await tracking.stop()
    finally:
        twilio.stop()
        smtp.stop()

"""The loopback SMTP relay and Twilio fake behave like the services they stand in for."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import aiosmtplib
import pytest
import trustme
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from tests.peers.smtp import SmtpServer, start_smtp_server
from tests.peers.twilio import FakeResponse, TwilioFake, segments, start_twilio_fake

SENDER = "campanhas@loja.example"
MESSAGE = (
    b"From: campanhas@loja.example\r\n"
    b"To: maria@cliente.example\r\n"
    b"Subject: Oferta\r\n"
    b"\r\n"
    b"Ol\xc3\xa1 Maria,\r\n"
    b".linha que comeca com ponto\r\n"
)
TWILIO_API = "https://api.twilio.com"


# -- SMTP --------------------------------------------------------------------------------------


@pytest.fixture
async def start_smtp() -> AsyncIterator[Callable[..., SmtpServer]]:
    """Start SMTP peers; at teardown wait until every connection is closed on both ends."""
    servers: list[SmtpServer] = []

    def start(**kwargs: Any) -> SmtpServer:
        servers.append(start_smtp_server(**kwargs))
        return servers[-1]

    yield start
    try:
        for server in servers:
            await asyncio.to_thread(server.wait_idle)
        for _ in range(5):  # let TLS clients finish their close_notify before the loop closes
            await asyncio.sleep(0)
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def smtp_server(start_smtp: Callable[..., SmtpServer]) -> SmtpServer:
    return start_smtp()


def smtp_kwargs(server: SmtpServer, **overrides: Any) -> dict[str, Any]:
    """What a client needs to reach `server` (trusting its CA, logging in when it has AUTH)."""
    kwargs: dict[str, Any] = {
        "hostname": server.host,
        "port": server.port,
        "local_hostname": "client.disparo.test",  # no socket.getfqdn()
        "timeout": 5,
    }
    if server.user is not None:
        kwargs |= {"username": server.user, "password": server.password}
    if server.ca_pem is not None:
        kwargs["cert_bundle"] = str(server.ca_pem)
    if server.tls == "implicit":
        kwargs["use_tls"] = True
    return kwargs | overrides


async def test_starttls_auth_send_records_what_the_server_saw(smtp_server: SmtpServer) -> None:
    errors, reply = await aiosmtplib.send(
        MESSAGE,
        sender=SENDER,
        recipients=["maria@cliente.example", "joao@cliente.example"],
        **smtp_kwargs(smtp_server),
    )
    assert errors == {}
    assert reply.startswith("2.0.0 Ok: queued as ")
    [received] = smtp_server.messages
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ("maria@cliente.example", "joao@cliente.example")
    assert received.data == MESSAGE  # CRLF kept, dot-stuffing undone
    assert received.tls is True
    assert received.auth_user == "disparo"
    assert received.peer[0] == "127.0.0.1"
    assert smtp_server.connections == 1


async def test_reused_connection_sends_several_messages(smtp_server: SmtpServer) -> None:
    client = aiosmtplib.SMTP(**smtp_kwargs(smtp_server, username=None, password=None))
    async with client:
        await client.ehlo()  # STARTTLS (done by connect) forgets the first EHLO's answer
        assert client.supports_extension("auth")
        await client.auth_login(smtp_server.user or "", smtp_server.password or "")
        for n in range(3):
            await client.sendmail(SENDER, [f"r{n}@cliente.example"], MESSAGE)
    smtp_server.wait_for(3)
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ("r0@cliente.example",),
        ("r1@cliente.example",),
        ("r2@cliente.example",),
    ]
    assert {m.peer for m in smtp_server.messages} == {smtp_server.messages[0].peer}
    assert smtp_server.connections == 1
    await aiosmtplib.send(
        MESSAGE, sender=SENDER, recipients=["x@y.example"], **smtp_kwargs(smtp_server)
    )
    assert smtp_server.connections == 2


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_untrusted_ca_is_refused_by_the_client(
    start_smtp: Callable[..., SmtpServer], tls: str
) -> None:
    server = start_smtp(tls=tls)
    context = ssl.create_default_context()
    trustme.CA().configure_trust(context)  # some other CA
    # aiosmtplib lets STARTTLS's verification error through as is, but wraps implicit TLS's
    expected = ssl.SSLCertVerificationError if tls == "starttls" else aiosmtplib.SMTPConnectError
    with pytest.raises(expected) as caught:
        await aiosmtplib.send(
            MESSAGE,
            sender=SENDER,
            recipients=["maria@cliente.example"],
            **smtp_kwargs(server, cert_bundle=None, tls_context=context),
        )
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert server.messages == []


async def test_certificate_for_another_name_is_refused(
    start_smtp: Callable[..., SmtpServer],
) -> None:
    server = start_smtp(cert_hostnames=("relay.elsewhere.example",))
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        await aiosmtplib.send(
            MESSAGE, sender=SENDER, recipients=["a@b.example"], **smtp_kwargs(server)
        )


async def test_wrong_password_is_refused_with_535(smtp_server: SmtpServer) -> None:
    with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
        await aiosmtplib.send(
            MESSAGE,
            sender=SENDER,
            recipients=["maria@cliente.example"],
            **smtp_kwargs(smtp_server, password="wrong"),
        )
    assert caught.value.code == 535
    assert smtp_server.messages == []


async def test_mail_without_starttls_or_auth_is_refused_with_530(smtp_server: SmtpServer) -> None:
    plain = smtp_kwargs(smtp_server, start_tls=False, username=None, password=None)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
        await aiosmtplib.send(MESSAGE, sender=SENDER, recipients=["a@b.example"], **plain)
    assert caught.value.code == 530
    no_auth = smtp_kwargs(smtp_server, username=None, password=None)
    with pytest.raises(aiosmtplib.SMTPSenderRefused) as caught:
        await aiosmtplib.send(MESSAGE, sender=SENDER, recipients=["a@b.example"], **no_auth)
    assert caught.value.code == 530
    assert smtp_server.messages == []


async def test_reject_refuses_one_recipient_case_insensitively(smtp_server: SmtpServer) -> None:
    smtp_server.reject("Gone@Cliente.example")
    async with aiosmtplib.SMTP(**smtp_kwargs(smtp_server)) as client:
        await client.mail(SENDER)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as caught:
            await client.rcpt("gone@cliente.example")
        assert caught.value.code == 550
        assert "<gone@cliente.example>" in caught.value.message
        assert "User unknown" in caught.value.message
        await client.rcpt("maria@cliente.example")
        await client.data(MESSAGE)
        # sendmail reports a partial refusal in its result instead of raising
        errors, _ = await client.sendmail(
            SENDER, ["gone@cliente.example", "joao@cliente.example"], MESSAGE
        )
        assert errors["gone@cliente.example"].code == 550
    assert [m.rcpt_tos for m in smtp_server.messages] == [
        ("maria@cliente.example",),
        ("joao@cliente.example",),
    ]


async def test_reject_with_a_4xx_code(smtp_server: SmtpServer) -> None:
    smtp_server.reject("full@cliente.example", 452, "4.2.2 Mailbox full")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
        await aiosmtplib.send(
            MESSAGE, sender=SENDER, recipients=["full@cliente.example"], **smtp_kwargs(smtp_server)
        )
    [refused] = caught.value.recipients
    assert (refused.code, refused.message) == (452, "4.2.2 Mailbox full")


async def test_tempfail_answers_451_then_accepts(smtp_server: SmtpServer) -> None:
    smtp_server.tempfail("grey@cliente.example", times=2)
    async with aiosmtplib.SMTP(**smtp_kwargs(smtp_server)) as client:
        for _ in range(2):
            await client.mail(SENDER)
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as caught:
                await client.rcpt("grey@cliente.example")
            assert (caught.value.code, caught.value.message) == (451, "4.7.1 Try again later")
            await client.rset()
        errors, _ = await client.sendmail(SENDER, ["grey@cliente.example"], MESSAGE)
    assert errors == {}
    assert [m.rcpt_tos for m in smtp_server.messages] == [("grey@cliente.example",)]


async def test_drop_after_aborts_every_open_connection_once(smtp_server: SmtpServer) -> None:
    first = aiosmtplib.SMTP(**smtp_kwargs(smtp_server))
    idle = aiosmtplib.SMTP(**smtp_kwargs(smtp_server))
    await first.connect()
    await idle.connect()
    smtp_server.drop_after(2)
    await first.sendmail(SENDER, ["a@cliente.example"], MESSAGE)
    await first.sendmail(SENDER, ["b@cliente.example"], MESSAGE)  # accepted, then the crash
    for client in (first, idle):
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.sendmail(SENDER, ["c@cliente.example"], MESSAGE)
        client.close()
    assert len(smtp_server.messages) == 2
    # The relay is back: new connections work and are not dropped again.
    async with aiosmtplib.SMTP(**smtp_kwargs(smtp_server)) as again:
        for _ in range(3):
            await again.sendmail(SENDER, ["d@cliente.example"], MESSAGE)
    assert len(smtp_server.messages) == 5
    assert smtp_server.connections == 3


async def test_drop_after_zero_drops_idle_connections_now(smtp_server: SmtpServer) -> None:
    client = aiosmtplib.SMTP(**smtp_kwargs(smtp_server))
    await client.connect()
    assert smtp_server.open_connections == 1
    smtp_server.drop_after(0)
    await asyncio.to_thread(smtp_server.wait_idle)
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await client.noop()
    client.close()
    assert smtp_server.messages == []


async def test_implicit_tls(start_smtp: Callable[..., SmtpServer]) -> None:
    ca = trustme.CA()
    server = start_smtp(tls="implicit", ca=ca)
    assert server.ca_pem is not None
    assert server.ca_pem.read_bytes() == ca.cert_pem.bytes()
    async with aiosmtplib.SMTP(**smtp_kwargs(server)) as client:
        assert not client.supports_extension("starttls")
        await client.sendmail(SENDER, ["maria@cliente.example"], MESSAGE)
        assert server.open_connections == 1
    [received] = server.messages
    assert (received.tls, received.auth_user) == (True, "disparo")


async def test_plain_server_without_auth(start_smtp: Callable[..., SmtpServer]) -> None:
    server = start_smtp(tls="none", auth=False)
    assert (server.ca_pem, server.user, server.password) == (None, None, None)
    async with aiosmtplib.SMTP(**smtp_kwargs(server)) as client:
        assert not client.supports_extension("auth")
        assert not client.supports_extension("starttls")
        await client.sendmail(SENDER, ["maria@cliente.example"], MESSAGE)
    [received] = server.messages
    assert (received.tls, received.auth_user, received.data) == (False, None, MESSAGE)


async def test_plain_server_with_auth_offers_it_in_the_clear(
    start_smtp: Callable[..., SmtpServer],
) -> None:
    server = start_smtp(tls="none", user="u", password="p")
    await aiosmtplib.send(MESSAGE, sender=SENDER, recipients=["a@b.example"], **smtp_kwargs(server))
    assert server.messages[0].auth_user == "u"


def test_wait_for_gives_up(smtp_server: SmtpServer) -> None:
    with pytest.raises(AssertionError, match="received 0 message"):
        smtp_server.wait_for(1, timeout=0.05)
    smtp_server.wait_idle(timeout=0.05)


def test_wait_idle_gives_up(smtp_server: SmtpServer) -> None:
    with socket.create_connection((smtp_server.host, smtp_server.port), timeout=5) as sock:
        assert sock.recv(100).startswith(b"220 ")
        with pytest.raises(AssertionError, match="1 open connection"):
            smtp_server.wait_idle(timeout=0.05)
        sock.sendall(b"QUIT\r\n")
        assert sock.recv(100).startswith(b"221 ")
    smtp_server.wait_idle()


def test_stop_is_idempotent() -> None:
    server = start_smtp_server()
    pem = server.ca_pem
    assert pem is not None and pem.exists()
    server.stop()
    server.stop()
    assert not pem.exists()


# -- Twilio ------------------------------------------------------------------------------------


class FakeTwilioHttpClient(AsyncTwilioHttpClient):
    """The real async client, sent to the fake instead of api.twilio.com. Basic auth goes in
    an explicit header: aiohttp 3.14 deprecates its ``auth`` parameter (DeprecationWarning)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the signature twilio calls
        allow_redirects: bool = False,
    ) -> Response:
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        headers = dict(headers or {})
        if auth is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        return await super().request(
            method, url, params, data, headers, None, timeout, allow_redirects
        )


@pytest.fixture
def twilio_fake() -> Iterator[TwilioFake]:
    fake = start_twilio_fake()
    yield fake
    fake.stop()


@pytest.fixture
async def twilio_http(twilio_fake: TwilioFake) -> AsyncIterator[FakeTwilioHttpClient]:
    http = FakeTwilioHttpClient(twilio_fake.base_url)  # inside the running loop
    yield http
    await http.close()


@pytest.fixture
def twilio_client(twilio_fake: TwilioFake, twilio_http: FakeTwilioHttpClient) -> Client:
    # environment={}: TWILIO_EDGE / TWILIO_REGION of the machine must not change the host
    return Client(
        twilio_fake.account_sid, twilio_fake.auth_token, http_client=twilio_http, environment={}
    )


async def test_sms_is_created_through_the_real_client(
    twilio_fake: TwilioFake, twilio_client: Client
) -> None:
    message = await twilio_client.messages.create_async(
        to="+5511999990001",
        from_="+15005550006",
        body="Olá Maria, sua oferta chegou",
        status_callback="https://disparo.example/twilio/status",
    )
    assert message.sid is not None and message.sid.startswith("SM") and len(message.sid) == 34
    assert int(message.sid[2:], 16) >= 0
    assert (message.to, message.from_, message.status) == (
        "+5511999990001",
        "+15005550006",
        "queued",
    )
    assert message.body == "Olá Maria, sua oferta chegou"
    assert message.account_sid == twilio_fake.account_sid
    assert message.date_created is not None and message.date_created.tzinfo is not None
    assert message.num_segments == "1"
    assert message.price is None and message.error_code is None
    assert (
        message.uri == f"/2010-04-01/Accounts/{twilio_fake.account_sid}/Messages/{message.sid}.json"
    )
    [request] = twilio_fake.requests
    assert request.authorized and request.account_sid == twilio_fake.account_sid
    assert request.form == {
        "To": "+5511999990001",
        "From": "+15005550006",
        "Body": "Olá Maria, sua oferta chegou",
        "StatusCallback": "https://disparo.example/twilio/status",
    }


async def test_messaging_service_and_request_times(
    twilio_fake: TwilioFake, twilio_client: Client
) -> None:
    for n in range(3):
        message = await twilio_client.messages.create_async(
            to=f"+551199999000{n}", messaging_service_sid="MG" + "1" * 32, body="oi"
        )
        assert message.messaging_service_sid == "MG" + "1" * 32
        assert message.from_ is None
    twilio_fake.wait_for(3)
    forms = [r.form for r in twilio_fake.requests]
    assert all(f["MessagingServiceSid"] == "MG" + "1" * 32 and "From" not in f for f in forms)
    times = [r.at for r in twilio_fake.requests]
    assert times == sorted(times)


async def test_whatsapp_template_fields(twilio_fake: TwilioFake, twilio_client: Client) -> None:
    variables = json.dumps({"1": "Maria", "2": "20%"})
    message = await twilio_client.messages.create_async(
        to="whatsapp:+5511999990001",
        from_="whatsapp:+15005550006",
        content_sid="HX" + "a" * 32,
        content_variables=variables,
    )
    assert message.to == "whatsapp:+5511999990001"
    [request] = twilio_fake.requests
    assert request.form == {
        "To": "whatsapp:+5511999990001",
        "From": "whatsapp:+15005550006",
        "ContentSid": "HX" + "a" * 32,
        "ContentVariables": variables,
    }


@pytest.mark.parametrize(
    ("scripted", "status", "code"),
    [
        (FakeResponse(429, retry_after=7), 429, 20429),
        (FakeResponse(500), 500, 20500),
        (FakeResponse(400, code=21610), 400, 21610),
        (FakeResponse(400, code=21211), 400, 21211),
        (FakeResponse(400, code=21614, message="not a mobile"), 400, 21614),
    ],
)
async def test_scripted_errors_surface_as_twilio_rest_exception(
    twilio_fake: TwilioFake,
    twilio_client: Client,
    twilio_http: FakeTwilioHttpClient,
    scripted: FakeResponse,
    status: int,
    code: int,
) -> None:
    to = "+5511999990001"
    twilio_fake.script(to, scripted)
    with pytest.raises(TwilioRestException) as caught:
        await twilio_client.messages.create_async(to=to, from_="+15005550006", body="oi")
    assert (caught.value.status, caught.value.code) == (status, code)
    if scripted.message:
        assert scripted.message in caught.value.msg
    last = twilio_http._test_only_last_response
    assert last is not None
    assert last.headers.get("Retry-After") == (
        None if scripted.retry_after is None else str(scripted.retry_after)
    )
    body = json.loads(last.text)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    # the queue is empty again: the retry succeeds; other recipients were never affected
    message = await twilio_client.messages.create_async(to=to, from_="+15005550006", body="oi")
    assert message.sid is not None


async def test_script_queues_per_recipient(twilio_fake: TwilioFake, twilio_client: Client) -> None:
    twilio_fake.script("+5511999990001", FakeResponse(429, retry_after=1), FakeResponse(503))
    statuses = []
    for to in ("+5511999990002", "+5511999990001", "+5511999990001", "+5511999990001"):
        try:
            await twilio_client.messages.create_async(to=to, from_="+15005550006", body="oi")
            statuses.append(201)
        except TwilioRestException as error:
            statuses.append(error.status)
    assert statuses == [201, 429, 503, 201]


async def test_wrong_token_is_401_20003(
    twilio_fake: TwilioFake, twilio_http: FakeTwilioHttpClient
) -> None:
    client = Client(twilio_fake.account_sid, "wrong-token", http_client=twilio_http, environment={})
    with pytest.raises(TwilioRestException) as caught:
        await client.messages.create_async(to="+5511999990001", from_="+15005550006", body="oi")
    assert (caught.value.status, caught.value.code) == (401, 20003)
    [request] = twilio_fake.requests
    assert not request.authorized


async def test_missing_body_is_21602(twilio_fake: TwilioFake, twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        await twilio_client.messages.create_async(to="+5511999990001", from_="+15005550006")
    assert (caught.value.status, caught.value.code) == (400, 21602)


async def test_num_segments(twilio_client: Client) -> None:
    long_gsm = await twilio_client.messages.create_async(
        to="+5511999990001", from_="+15005550006", body="a" * 161
    )
    assert long_gsm.num_segments == "2"


def test_segments() -> None:
    assert [segments("a" * 160), segments("a" * 161), segments("a" * 306), segments("a" * 307)] == [
        1,
        2,
        2,
        3,
    ]
    assert segments("{" * 80) == 1 and segments("{" * 81) == 2  # extension chars cost two
    assert segments("ç" * 70) == 1 and segments("ç" * 71) == 2  # "ç" is not GSM-7: UCS-2
    assert segments("Ç" * 160) == 1


def test_twilio_wait_for_gives_up(twilio_fake: TwilioFake) -> None:
    with pytest.raises(AssertionError, match="received 0 request"):
        twilio_fake.wait_for(1, timeout=0.05)

"""SNS message verification and SES notification parsing (channels._sns)."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given
from hypothesis import strategies as st

from channels._sns import (
    CERT_CACHE_SIZE,
    MAX_CERT_BYTES,
    SesEvent,
    SesRecipient,
    SnsError,
    SnsVerifier,
    cert_url_ok,
    fetch_https,
    parse_ses,
    subscribe_url_ok,
)

SAMPLES = Path(__file__).parent / "data" / "ses"
NOW = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
TOPIC = "arn:aws:sns:sa-east-1:123456789012:disparo-ses"
OTHER_TOPIC = "arn:aws:sns:sa-east-1:123456789012:disparo-ses-2"
CERT_URL = (
    "https://sns.sa-east-1.amazonaws.com/"
    "SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
)
SUBSCRIBE_URL = (
    "https://sns.sa-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e2425dacbba2c5ca6d57e1e0a1b2c3d4e5f6"
)
SOURCE = "bounces+b-1234-0123456789abcdef0123@empresa.com.br"
OUR_ID = "<m-1234-0123456789abcdef0123@empresa.com.br>"


# -- a signer that does what SNS does -----------------------------------------------------


@dataclass(frozen=True)
class Signer:
    key: rsa.RSAPrivateKey
    pem: bytes


def make_signer(
    not_before: datetime = NOW - timedelta(days=30),
    not_after: datetime = NOW + timedelta(days=365),
) -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return Signer(key, certificate.public_bytes(serialization.Encoding.PEM))


@cache
def signer() -> Signer:
    return make_signer()


@cache
def stranger() -> Signer:
    """A key and certificate SNS never used."""
    return make_signer()


SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_KEYS["UnsubscribeConfirmation"] = SIGNED_KEYS["SubscriptionConfirmation"]


def sign(message: dict[str, Any], version: str = "1", by: Signer | None = None) -> dict[str, Any]:
    """``message`` with SignatureVersion, Signature and SigningCertURL, as SNS sends it."""
    message = dict(message)
    text = "".join(
        f"{key}\n{message[key]}\n" for key in SIGNED_KEYS[message["Type"]] if key in message
    )
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = (by or signer()).key.sign(text.encode(), padding.PKCS1v15(), digest)
    message["SignatureVersion"] = version
    message["Signature"] = base64.b64encode(signature).decode()
    message.setdefault("SigningCertURL", CERT_URL)
    return message


def notification(
    payload: str = '{"notificationType":"Delivery"}',
    *,
    subject: str | None = "Amazon SES Email Event Notification",
    topic: str = TOPIC,
    sent: datetime = NOW - timedelta(minutes=2),
    **extra: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic,
        "Message": payload,
        "Timestamp": sent.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "UnsubscribeURL": (
            "https://sns.sa-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn="
            f"{topic}:c9135db0-26c4-47ec-8998-413945fb5a96"
        ),
        **extra,
    }
    if subject is not None:
        message["Subject"] = subject
    return message


def confirmation(kind: str = "SubscriptionConfirmation", **extra: Any) -> dict[str, Any]:
    return {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425dacbba2c5ca6d57e1e0a1b2c3d4e5f6",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\n"
        "To confirm the subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": "2026-03-02T12:25:00.000Z",
        **extra,
    }


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(message, indent=2).encode()


@dataclass
class FakeFetch:
    """Serves PEMs by URL and records every GET."""

    pems: dict[str, bytes] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    error: Exception | None = None

    async def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if self.error is not None:
            raise self.error
        if url in self.pems:
            return self.pems[url]
        if url.startswith("https://sns.") and "Action=ConfirmSubscription" in url:
            return b"<ConfirmSubscriptionResponse/>"
        raise OSError(f"404 {url}")


@pytest.fixture
def fetch() -> FakeFetch:
    return FakeFetch({CERT_URL: signer().pem})


def make_verifier(fetch: FakeFetch, **kwargs: Any) -> SnsVerifier:
    kwargs.setdefault("allowed_topics", [TOPIC, OTHER_TOPIC])
    return SnsVerifier(fetch=fetch, clock=lambda: NOW, **kwargs)


@pytest.fixture
def verifier(fetch: FakeFetch) -> SnsVerifier:
    return make_verifier(fetch)


# -- genuine messages ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
async def test_genuine_notification_accepted(
    verifier: SnsVerifier, fetch: FakeFetch, version: str
) -> None:
    message = sign(notification(), version)
    assert await verifier.verify(body(message)) == message
    assert fetch.calls == [CERT_URL]


async def test_notification_without_subject_accepted(verifier: SnsVerifier) -> None:
    message = sign(notification(subject=None), "2")
    assert "Subject" not in message
    assert (await verifier.verify(body(message)))["Message"] == message["Message"]


async def test_message_with_newlines_and_accents_accepted(verifier: SnsVerifier) -> None:
    payload = json.dumps({"texto": "linha 1\nlinha 2 — ação"}, ensure_ascii=False)
    message = sign(notification(payload, subject="Devolução"), "2")
    assert (await verifier.verify(body(message)))["Message"] == payload


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
@pytest.mark.parametrize("version", ["1", "2"])
async def test_confirmations_accepted(verifier: SnsVerifier, kind: str, version: str) -> None:
    message = sign(confirmation(kind), version)
    assert await verifier.verify(body(message)) == message


# -- forged, altered, replayed ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Message", '{"notificationType":"Bounce"}'),
        ("Subject", "Another subject"),
        ("TopicArn", OTHER_TOPIC),  # allowed too: only the signature catches it
        ("MessageId", "00000000-0000-0000-0000-000000000000"),
        ("Timestamp", "2026-03-02T12:29:00.000Z"),
    ],
)
async def test_tampered_notification_refused(verifier: SnsVerifier, key: str, value: str) -> None:
    message = sign(notification(), "2")
    message[key] = value
    with pytest.raises(SnsError, match="signature does not match"):
        await verifier.verify(body(message))


async def test_subject_added_after_signing_refused(verifier: SnsVerifier) -> None:
    message = sign(notification(subject=None))
    message["Subject"] = "Injected"
    with pytest.raises(SnsError, match="signature does not match"):
        await verifier.verify(body(message))


@pytest.mark.parametrize("key", ["SubscribeURL", "Token"])
async def test_tampered_confirmation_refused(verifier: SnsVerifier, key: str) -> None:
    message = sign(confirmation())
    message[key] = message[key].replace("2336", "6633")
    with pytest.raises(SnsError, match="signature does not match"):
        await verifier.verify(body(message))


async def test_signed_by_another_key_refused(verifier: SnsVerifier) -> None:
    message = sign(notification(), "2", by=stranger())
    with pytest.raises(SnsError, match="signature does not match"):
        await verifier.verify(body(message))


async def test_version_mismatch_refused(verifier: SnsVerifier) -> None:
    message = sign(notification(), "1")
    message["SignatureVersion"] = "2"
    with pytest.raises(SnsError, match="signature does not match"):
        await verifier.verify(body(message))


async def test_topic_not_allowed_refused_before_fetching(fetch: FakeFetch) -> None:
    verifier = make_verifier(fetch, allowed_topics=[OTHER_TOPIC])
    with pytest.raises(SnsError, match="topic not allowed"):
        await verifier.verify(body(sign(notification())))
    with pytest.raises(SnsError, match="topic not allowed"):
        await verifier.verify(body(sign(notification(topic="arn:aws:sns:us-east-1:666:evil"))))
    assert fetch.calls == []


def test_one_topic_string_is_a_mistake() -> None:
    with pytest.raises(TypeError):
        SnsVerifier(allowed_topics=TOPIC)


async def test_stale_message_refused_before_fetching(
    verifier: SnsVerifier, fetch: FakeFetch
) -> None:
    message = sign(notification(sent=NOW - timedelta(hours=1, seconds=1)))
    with pytest.raises(SnsError, match="stale"):
        await verifier.verify(body(message))
    assert fetch.calls == []
    # just inside the window
    assert await verifier.verify(body(sign(notification(sent=NOW - timedelta(minutes=59)))))


async def test_max_age_is_configurable(fetch: FakeFetch) -> None:
    verifier = make_verifier(fetch, max_age=timedelta(minutes=5))
    with pytest.raises(SnsError, match="stale"):
        await verifier.verify(body(sign(notification(sent=NOW - timedelta(minutes=6)))))


@pytest.mark.parametrize("stamp", ["yesterday", "2026-03-02T12:00:00", "0001-01-01T00:00:00+05:00"])
async def test_bad_timestamp_refused(verifier: SnsVerifier, stamp: str) -> None:
    message = sign(notification())
    message["Timestamp"] = stamp
    with pytest.raises(SnsError, match="Timestamp"):
        await verifier.verify(body(message))


@pytest.mark.parametrize("version", ["", "3", "1 ", "SHA1"])
async def test_unknown_signature_version_refused(
    verifier: SnsVerifier, fetch: FakeFetch, version: str
) -> None:
    message = sign(notification())
    message["SignatureVersion"] = version
    with pytest.raises(SnsError, match="SignatureVersion"):
        await verifier.verify(body(message))
    assert fetch.calls == []


# -- certificate URLs and the certificate -------------------------------------------------------

GOOD_CERT_URLS = [
    CERT_URL,
    "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem",
]
BAD_CERT_URLS = [
    "http://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "HTTPS://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.us-east-1.amazonaws.com.evil.com/SimpleNotificationService-abc.pem",
    "https://evil.com/sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com@evil.com/x.pem",
    "https://user:pass@sns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com:8443/x.pem",
    "https://sns.us-east-1.amazonaws.com/x.pem.txt",
    "https://sns.us-east-1.amazonaws.com/x.pem?x=1",
    "https://sns.us-east-1.amazonaws.com/x.pem#frag",
    "https://sns.us-east-1.amazonaws.com/x",
    "https://sns.us-east-1.amazonaws.com/",
    "https://sns.us-east-1.amazonaws.com/../x.pem",
    "https://sns.us-east-1.amazonaws.com/%2e%2e/x.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.com/x.pem",
    "https://sns.us-east-1.amazon\taws.com/x.pem",
    "https://sns.us-east-1.amazonaws.com/x.pem\n",
    "https://sns.amazonaws.com/x.pem",
    "https://sqs.us-east-1.amazonaws.com/x.pem",
    "https://xsns.us-east-1.amazonaws.com/x.pem",
    "https://sns.us-east-1.amazonaws.co/x.pem",
    "https://sns.us-east-1.amazonaws.com.cn.evil.com/x.pem",
    "//sns.us-east-1.amazonaws.com/x.pem",
    "sns.us-east-1.amazonaws.com/x.pem",
    "",
]


@pytest.mark.parametrize("url", GOOD_CERT_URLS)
def test_cert_url_ok(url: str) -> None:
    assert cert_url_ok(url)


@pytest.mark.parametrize("url", BAD_CERT_URLS)
def test_cert_url_refused(url: str) -> None:
    assert not cert_url_ok(url)


@pytest.mark.parametrize("url", BAD_CERT_URLS[:6])
async def test_message_with_bad_cert_url_refused_before_fetching(
    verifier: SnsVerifier, fetch: FakeFetch, url: str
) -> None:
    fetch.pems[url] = signer().pem
    with pytest.raises(SnsError, match="SigningCertURL refused"):
        await verifier.verify(body(sign(notification(SigningCertURL=url))))
    assert fetch.calls == []


async def test_certificate_fetched_once_for_many_messages(
    verifier: SnsVerifier, fetch: FakeFetch
) -> None:
    await verifier.verify(body(sign(notification(), "1")))
    await verifier.verify(body(sign(notification('{"a":1}'), "2")))
    await verifier.verify(body(sign(confirmation())))
    assert fetch.calls == [CERT_URL]


async def test_certificate_cache_is_bounded(verifier: SnsVerifier, fetch: FakeFetch) -> None:
    urls = [CERT_URL.replace(".pem", f"-{n}.pem") for n in range(CERT_CACHE_SIZE + 1)]
    for url in urls:
        fetch.pems[url] = signer().pem
        await verifier.verify(body(sign(notification(SigningCertURL=url))))
    await verifier.verify(body(sign(notification(SigningCertURL=urls[-1]))))
    assert fetch.calls == urls  # the newest is still cached
    await verifier.verify(body(sign(notification(SigningCertURL=urls[0]))))
    assert fetch.calls == [*urls, urls[0]]  # the oldest was let go


@pytest.mark.parametrize(
    ("error", "reason"),
    [(OSError("connection refused"), "OSError"), (TimeoutError(), "TimeoutError")],
)
async def test_fetch_failure_refused(
    verifier: SnsVerifier, fetch: FakeFetch, error: Exception, reason: str
) -> None:
    fetch.error = error
    with pytest.raises(SnsError, match=f"could not fetch the signing certificate .*{reason}"):
        await verifier.verify(body(sign(notification())))


@pytest.mark.parametrize(
    "pem",
    [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
async def test_not_a_certificate_refused(
    verifier: SnsVerifier, fetch: FakeFetch, pem: bytes
) -> None:
    fetch.pems[CERT_URL] = pem
    with pytest.raises(SnsError, match="not a PEM certificate"):
        await verifier.verify(body(sign(notification())))


async def test_oversized_certificate_refused(verifier: SnsVerifier, fetch: FakeFetch) -> None:
    fetch.pems[CERT_URL] = signer().pem + b"\n" * MAX_CERT_BYTES
    with pytest.raises(SnsError, match="larger than"):
        await verifier.verify(body(sign(notification())))


async def test_expired_certificate_refused(fetch: FakeFetch) -> None:
    old = make_signer(NOW - timedelta(days=400), NOW - timedelta(days=1))
    fetch.pems[CERT_URL] = old.pem
    with pytest.raises(SnsError, match="validity period"):
        await make_verifier(fetch).verify(body(sign(notification(), by=old)))


# -- malformed bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not JSON"),
        (b"{", "not JSON"),
        (b"\xff\xfe\x00garbage", "not JSON"),
        (b"[" * 100_000, "not JSON"),
        (b"[]", "not a JSON object"),
        (b'"Notification"', "not a JSON object"),
        (b"{}", "unknown Type"),
        (b'{"Type": "Notify"}', "unknown Type"),
        (b'{"Type": ["Notification"]}', "unknown Type"),
        (b'{"Type": "Notification"}', "missing Message"),
        (b" " * (1024 * 1024 + 1), "larger than"),
    ],
)
async def test_malformed_body_refused(verifier: SnsVerifier, raw: bytes, reason: str) -> None:
    with pytest.raises(SnsError, match=reason):
        await verifier.verify(raw)


@pytest.mark.parametrize(
    "key", ["Message", "MessageId", "Timestamp", "TopicArn", "Signature", "SigningCertURL"]
)
async def test_missing_key_refused(verifier: SnsVerifier, fetch: FakeFetch, key: str) -> None:
    message = sign(notification())
    del message[key]
    with pytest.raises(SnsError, match=f"missing {key}"):
        await verifier.verify(body(message))
    assert fetch.calls == []


@pytest.mark.parametrize("key", ["Message", "Subject", "TopicArn", "SignatureVersion"])
async def test_non_string_key_refused(verifier: SnsVerifier, key: str) -> None:
    message = sign(notification())
    message[key] = {"nested": True}
    with pytest.raises(SnsError, match=f"{key} is not a string"):
        await verifier.verify(body(message))


@pytest.mark.parametrize("signature", ["", "!!!not base64!!!", "QUJD=extra", "QUJ"])
async def test_bad_signature_encoding_refused(
    verifier: SnsVerifier, fetch: FakeFetch, signature: str
) -> None:
    message = sign(notification())
    message["Signature"] = signature
    with pytest.raises(SnsError, match="Signature is"):
        await verifier.verify(body(message))
    assert fetch.calls == []


async def test_short_signature_refused(verifier: SnsVerifier) -> None:
    message = sign(notification())
    message["Signature"] = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(SnsError, match="signature does not match"):
        await verifier.verify(body(message))


# -- subscription confirmation ------------------------------------------------------------------


async def test_confirm_subscription_gets_the_subscribe_url(
    verifier: SnsVerifier, fetch: FakeFetch
) -> None:
    message = await verifier.verify(body(sign(confirmation())))
    await verifier.confirm_subscription(message)
    assert fetch.calls == [CERT_URL, SUBSCRIBE_URL]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"SubscribeURL": "https://evil.com/?Action=ConfirmSubscription"}, "SubscribeURL refused"),
        (
            {"SubscribeURL": SUBSCRIBE_URL.replace("amazonaws.com", "amazonaws.com.evil.com")},
            "SubscribeURL refused",
        ),
        ({"SubscribeURL": SUBSCRIBE_URL.replace("https", "http")}, "SubscribeURL refused"),
        (
            {"SubscribeURL": SUBSCRIBE_URL.replace(TOPIC, OTHER_TOPIC)},
            "SubscribeURL is for another topic",
        ),
        ({"SubscribeURL": None}, "SubscribeURL refused"),
        ({"Type": "Notification"}, "not a SubscriptionConfirmation"),
        ({"Type": "UnsubscribeConfirmation"}, "not a SubscriptionConfirmation"),
        ({"TopicArn": "arn:aws:sns:us-east-1:666:evil"}, "topic not allowed"),
        ({"TopicArn": ["unhashable"]}, "topic not allowed"),
    ],
)
async def test_confirm_subscription_refuses_without_fetching(
    verifier: SnsVerifier, fetch: FakeFetch, change: dict[str, Any], reason: str
) -> None:
    with pytest.raises(SnsError, match=reason):
        await verifier.confirm_subscription({**confirmation(), **change})
    assert fetch.calls == []


async def test_confirm_subscription_failure_is_an_sns_error(
    verifier: SnsVerifier, fetch: FakeFetch
) -> None:
    fetch.error = OSError("reset")
    with pytest.raises(SnsError, match="could not confirm the subscription: OSError"):
        await verifier.confirm_subscription(confirmation())


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (SUBSCRIBE_URL, True),
        (
            "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn="
            "arn%3Aaws%3Asns%3Aus-west-2%3A123456789012%3AMyTopic&Token=2336",
            True,
        ),
        ("https://sns.cn-north-1.amazonaws.com.cn/?Action=ConfirmSubscription&Token=1", True),
        ("https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x", False),
        ("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Action=Publish", False),
        ("https://sns.us-west-2.amazonaws.com/", False),
        ("https://sns.us-west-2.amazonaws.com@evil.com/?Action=ConfirmSubscription", False),
        ("https://evil.com/sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription", False),
        ("https://sns.us-west-2.amazonaws.com/x?Action=ConfirmSubscription", False),
        ("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription#x", False),
        ("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription\n", False),
    ],
)
def test_subscribe_url_ok(url: str, ok: bool) -> None:
    assert subscribe_url_ok(url) is ok


# -- the default fetcher, against a real HTTPS server on loopback ---------------------------


@dataclass
class HttpsPeer:
    base: str
    client: ssl.SSLContext


@pytest.fixture
async def https_peer() -> AsyncIterator[HttpsPeer]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def pem(request: web.Request) -> web.Response:
        return web.Response(body=signer().pem)

    async def huge(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # chunked: no Content-Length to refuse early
        await response.prepare(request)
        for _ in range(MAX_CERT_BYTES // 8192 + 2):
            await response.write(b"A" * 8192)
        await response.write_eof()
        return response

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("https://evil.example/x.pem")

    app = web.Application()
    app.router.add_get("/cert.pem", pem)
    app.router.add_get("/huge.pem", huge)
    app.router.add_get("/moved.pem", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield HttpsPeer(f"https://127.0.0.1:{port}", client_ctx)
    finally:
        await runner.cleanup()


async def test_fetch_https_gets_the_body(https_peer: HttpsPeer) -> None:
    got = await fetch_https(f"{https_peer.base}/cert.pem", ssl_context=https_peer.client)
    assert got == signer().pem


@pytest.mark.parametrize(("path", "reason"), [("/huge.pem", "larger than"), ("/moved.pem", "302")])
async def test_fetch_https_refuses(https_peer: HttpsPeer, path: str, reason: str) -> None:
    with pytest.raises(SnsError, match=reason):
        await fetch_https(f"{https_peer.base}{path}", ssl_context=https_peer.client)


async def test_fetch_https_verifies_tls_by_default(https_peer: HttpsPeer) -> None:
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await fetch_https(f"{https_peer.base}/cert.pem")


# -- SES samples --------------------------------------------------------------------------------


def hard(address: str, status: str | None, diagnostic: str | None) -> SesRecipient:
    return SesRecipient(address, "hard", status, diagnostic)


def at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


EXPECTED: dict[str, SesEvent] = {
    "bounce-permanent-general.json": SesEvent(
        kind="bounce",
        recipients=(
            hard(
                "joao.silva@exemplo.com.br",
                "5.1.1",
                "smtp; 550 5.1.1 <joao.silva@exemplo.com.br>: Recipient address rejected: "
                "User unknown in virtual mailbox table",
            ),
            hard(
                "maria@exemplo.com.br",
                "5.1.1",
                "smtp; 550-5.1.1 The email account that you tried to reach does not exist. "
                "Please try 550-5.1.1 double-checking the recipient's email address for typos or "
                "550-5.1.1 unnecessary spaces.",
            ),
        ),
        ses_message_id="0100018e0a1b2a00-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type=None,
        bounce_type="Permanent",
        bounce_subtype="General",
        timestamp=at("2026-03-02T11:58:03.112+00:00"),
    ),
    "bounce-permanent-noemail.json": SesEvent(
        kind="bounce",
        recipients=(
            hard(
                "contato@dominio-inexistente.com.br",
                "5.4.4",
                "Amazon SES did not send the message to this address because the domain does "
                "not exist (no MX or A record).",
            ),
        ),
        ses_message_id="0100018e0a1b2a01-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeef-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type=None,
        bounce_type="Permanent",
        bounce_subtype="NoEmail",
        timestamp=at("2026-03-02T11:58:02.004+00:00"),
    ),
    "bounce-transient-mailboxfull.json": SesEvent(
        kind="bounce",
        recipients=(
            SesRecipient(
                "ana.souza@provedor.com.br",
                "soft",
                "4.2.2",
                (
                    "smtp; 452 4.2.2 <ana.souza@provedor.com.br>: Mailbox full - quota exceeded ("
                    + "x" * 600
                )[:500],
            ),
        ),
        ses_message_id="0100018e0a1b2a02-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef0-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type=None,
        bounce_type="Transient",
        bounce_subtype="MailboxFull",
        timestamp=at("2026-03-02T12:10:44.500+00:00"),
    ),
    "bounce-suppressed-account.json": SesEvent(
        kind="bounce",
        recipients=(
            hard(
                "antigo@exemplo.com.br",
                "5.1.1",
                "Amazon SES did not send the message to this address because it is on the "
                "suppression list for your account.",
            ),
        ),
        ses_message_id="0100018e0a1b2a03-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef1-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type=None,
        bounce_type="Permanent",
        bounce_subtype="OnAccountSuppressionList",
        timestamp=at("2026-03-02T11:58:01.950+00:00"),
    ),
    "bounce-suppressed-global.json": SesEvent(
        kind="bounce",
        recipients=(
            hard(
                "sumiu@exemplo.com.br",
                "5.1.1",
                "Amazon SES has suppressed sending to this address because it has a recent "
                "history of bouncing as an invalid address.",
            ),
        ),
        ses_message_id="0100018e0a1b2a04-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef2-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type=None,
        bounce_type="Permanent",
        bounce_subtype="Suppressed",
        timestamp=at("2026-03-02T11:58:02.100+00:00"),
    ),
    "bounce-undetermined.json": SesEvent(
        kind="bounce",
        recipients=(SesRecipient("quem@exemplo.com.br", "soft", None, None),),
        ses_message_id="0100018e0a1b2a05-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef3-000000",
        source=SOURCE,
        message_id_header=None,  # original headers not enabled for this identity
        feedback_type=None,
        bounce_type="Undetermined",
        bounce_subtype="Undetermined",
        timestamp=at("2026-03-02T13:00:00+00:00"),
    ),
    "complaint-abuse.json": SesEvent(
        kind="complaint",
        recipients=(SesRecipient("reclamou@yahoo.com.br", "none", None, None),),
        ses_message_id="0100018e0a1b2a06-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef4-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type="abuse",
        bounce_type=None,
        bounce_subtype=None,
        timestamp=at("2026-03-03T09:15:27+00:00"),
    ),
    "complaint-no-feedback-type.json": SesEvent(
        kind="complaint",
        recipients=(SesRecipient("outro@hotmail.com", "none", None, None),),
        ses_message_id="0100018e0a1b2a07-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef5-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type=None,
        bounce_type=None,
        bounce_subtype=None,
        timestamp=at("2026-03-03T10:02:11+00:00"),
    ),
    "delivery.json": SesEvent(
        kind="delivery",
        recipients=(
            SesRecipient(
                "cliente@gmail.com",
                "none",
                None,
                "250 2.0.0 OK 1772452684 d75a77b69052e-4c7e1b2a3f4si12345qtb.123 - gsmtp",
            ),
        ),
        ses_message_id="0100018e0a1b2a08-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef6-000000",
        source=SOURCE,
        message_id_header=None,
        feedback_type=None,
        bounce_type=None,
        bounce_subtype=None,
        timestamp=at("2026-03-02T11:58:04.321+00:00"),
    ),
    "event-bounce.json": SesEvent(
        kind="bounce",
        recipients=(hard("errado@exemplo.com.br", "5.1.1", "smtp; 550 5.1.1 user unknown"),),
        ses_message_id="0100018e0a1b2a09-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeef7-000000",
        source=SOURCE,
        message_id_header=OUR_ID,
        feedback_type=None,
        bounce_type="Permanent",
        bounce_subtype="General",
        timestamp=at("2026-03-02T11:58:03.900+00:00"),
    ),
}


def test_every_sample_has_an_expectation() -> None:
    assert sorted(p.name for p in SAMPLES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_parsed(name: str) -> None:
    assert parse_ses(json.loads((SAMPLES / name).read_text(encoding="utf-8"))) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_sample_through_sns(verifier: SnsVerifier, name: str) -> None:
    """The endpoint's path: verify the SNS body, then parse the verified Notification."""
    payload = (SAMPLES / name).read_text(encoding="utf-8")
    message = await verifier.verify(body(sign(notification(json.dumps(json.loads(payload))), "2")))
    assert parse_ses(message) == EXPECTED[name]
    assert parse_ses(json.loads(message["Message"])) == EXPECTED[name]


def test_message_id_from_headers_when_common_headers_missing() -> None:
    event = parse_ses(
        {
            "notificationType": "Bounce",
            "mail": {"headers": [{"name": "message-id", "value": f"  {OUR_ID} "}]},
        }
    )
    assert event.message_id_header == OUR_ID


def test_ses_own_message_id_is_not_ours() -> None:
    ses_id = "0100018e0a1b2a00-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee-000000"
    event = parse_ses(
        {"eventType": "Send", "mail": {"messageId": ses_id, "commonHeaders": {"messageId": ses_id}}}
    )
    assert (event.kind, event.ses_message_id, event.message_id_header) == ("other", ses_id, None)


def test_bare_message_id_gets_brackets() -> None:
    event = parse_ses({"mail": {"commonHeaders": {"messageId": "m-1@empresa.com.br"}}})
    assert event.message_id_header == "<m-1@empresa.com.br>"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("2018-10-08T14:05:45 +0000", datetime(2018, 10, 8, 14, 5, 45, tzinfo=UTC)),
        ("2026-03-02T12:00:00", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("2026-03-02T09:00:00-03:00", datetime(2026, 3, 2, 12, tzinfo=UTC)),
        ("soon", None),
        (1772452684, None),
    ],
)
def test_timestamps(stamp: object, expected: datetime | None) -> None:
    assert (
        parse_ses({"notificationType": "Delivery", "delivery": {"timestamp": stamp}}).timestamp
        == expected
    )


@pytest.mark.parametrize(
    "message",
    [
        {},
        {"notificationType": 5},
        {"notificationType": "Bounce", "bounce": "x", "mail": []},
        {"notificationType": "Bounce", "bounce": {"bouncedRecipients": "a@b"}},
        {
            "notificationType": "Bounce",
            "bounce": {"bouncedRecipients": [None, 1, {"emailAddress": 7}]},
        },
        {"notificationType": "Complaint", "complaint": {"complainedRecipients": [{}]}},
        {"notificationType": "Delivery", "delivery": {"recipients": [None, ""]}},
        {"eventType": "Open", "open": {"timestamp": "2026-03-02T12:00:00Z"}},
        {"notificationType": "AmazonSnsSubscriptionSucceeded", "message": "You have successfully"},
        {"Type": "Notification", "Message": "not json"},
        {"Type": "Notification", "Message": "[1, 2]"},
    ],
)
def test_odd_shapes_give_empty_events(message: dict[str, Any]) -> None:
    event = parse_ses(message)
    assert event.recipients == ()
    assert event.message_id_header is None


def test_unknown_bounce_type_is_soft() -> None:
    event = parse_ses(
        {"notificationType": "Bounce", "bounce": {"bouncedRecipients": [{"emailAddress": "a@b.c"}]}}
    )
    assert event.recipients == (SesRecipient("a@b.c", "soft", None, None),)


# -- properties ----------------------------------------------------------------------------------

SES_KEYS = st.sampled_from(
    [
        "notificationType", "eventType", "Bounce", "Complaint", "Delivery", "bounce", "complaint",
        "delivery", "mail", "bounceType", "bounceSubType", "Permanent", "Transient",
        "bouncedRecipients", "complainedRecipients", "recipients", "emailAddress", "status",
        "diagnosticCode", "complaintFeedbackType", "smtpResponse", "timestamp", "source",
        "messageId", "commonHeaders", "headers", "name", "value", "Message-ID", "Type",
        "Notification", "Message",
    ]
)  # fmt: skip
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | SES_KEYS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(SES_KEYS | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(st.dictionaries(SES_KEYS | st.text(max_size=8), JSONISH, max_size=6))
def test_parse_ses_never_raises(message: dict[str, Any]) -> None:
    event = parse_ses(message)
    assert event.kind in ("bounce", "complaint", "delivery", "other")
    for recipient in event.recipients:
        assert recipient.diagnostic is None or len(recipient.diagnostic) <= 500


def run_verify(raw: bytes) -> Callable[[], None]:
    async def go() -> None:
        fetch = FakeFetch({CERT_URL: signer().pem})
        with pytest.raises(SnsError):
            await make_verifier(fetch).verify(raw)

    return lambda: asyncio.run(go())


@given(st.binary(max_size=300))
def test_verify_arbitrary_bytes_only_raises_sns_error(raw: bytes) -> None:
    run_verify(raw)()


SNS_KEYS = st.sampled_from(
    [
        "Type", "Message", "MessageId", "Subject", "Timestamp", "TopicArn", "SubscribeURL",
        "Token", "SignatureVersion", "Signature", "SigningCertURL",
    ]
)  # fmt: skip
SNS_TEXTS = [
    "Notification", "SubscriptionConfirmation", TOPIC, CERT_URL, "1", "2",
    "2026-03-02T12:29:00Z", "QUJD", SUBSCRIBE_URL,
]  # fmt: skip
SNS_VALUES = st.sampled_from(SNS_TEXTS) | JSONISH


@given(st.dictionaries(SNS_KEYS, SNS_VALUES, max_size=11))
def test_verify_arbitrary_messages_only_raise_sns_error(message: dict[str, Any]) -> None:
    run_verify(json.dumps(message).encode())()

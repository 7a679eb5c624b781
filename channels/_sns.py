"""Amazon SNS over HTTPS: prove a message genuine, then read the SES notification inside.

Verification follows the AWS pages "Verifying the signatures of Amazon SNS messages" and
"Verifying the signature of an Amazon SNS message when using HTTP query-based requests"
(Amazon SNS Developer Guide), plus "Parsing message formats" for the keys of each message
type. In order, cheapest first, and nothing is fetched until the message has passed every
local check:

1. the body is a JSON object no bigger than ``MAX_BODY`` whose ``Type`` is ``Notification``,
   ``SubscriptionConfirmation`` or ``UnsubscribeConfirmation``, with every signed key a string;
2. ``TopicArn`` is one of ours (otherwise any AWS account's topic could post to us);
3. ``SignatureVersion`` is ``1`` (RSA PKCS#1 v1.5 over SHA1) or ``2`` (over SHA256);
4. ``SigningCertURL`` is ``https://sns.<region>.amazonaws.com[.cn]/<name>.pem`` and nothing
   else (``cert_url_ok``);
5. ``Timestamp`` is no older than ``max_age`` (a captured message cannot be replayed later);
6. the certificate is fetched (default: aiohttp, verified TLS, 10 s, at most 64 KiB, no
   redirects), cached per URL, within its validity period, and its RSA key verifies
   ``Signature`` over the documented string to sign.

Parsing follows the Amazon SES pages "Amazon SNS notification contents for Amazon SES"
(``notificationType``) and "Contents of event data that Amazon SES publishes to Amazon SNS"
(``eventType``, event publishing through a configuration set). ``parse_ses`` never raises:
odd shapes give ``None`` or empty fields. Note that SES only includes ``mail.headers`` and
``mail.commonHeaders`` when "Include original headers" is enabled for the identity, so
``message_id_header`` may be ``None``; ``source`` (our VERP address) is always there.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.clock import RealClock

__all__ = [
    "CERT_CACHE_SIZE",
    "MAX_BODY",
    "MAX_CERT_BYTES",
    "Fetch",
    "SesEvent",
    "SesRecipient",
    "SnsError",
    "SnsVerifier",
    "cert_url_ok",
    "fetch_https",
    "parse_ses",
    "subscribe_url_ok",
]

#: An SNS message is at most 256 KiB; JSON escaping of SES's JSON-in-JSON stays well under this.
MAX_BODY = 1024 * 1024
#: A signing certificate is about 2 KiB; anything much bigger is not one.
MAX_CERT_BYTES = 64 * 1024
#: Certificates kept per verifier (SNS rotates them rarely; one per region in use).
CERT_CACHE_SIZE = 16
FETCH_TIMEOUT = 10.0

Fetch = Callable[[str], Awaitable[bytes]]
"""GET an https URL and return the body; raise on any failure."""

MESSAGE_TYPES = frozenset({"Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"})

# The string to sign, per type: "Key\nValue\n" for each key, in exactly this order.
_NOTIFICATION_KEYS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
_CONFIRMATION_KEYS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
_OPTIONAL_KEYS = frozenset({"Subject"})

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

# Whole-string matches on the raw URL (not on urlsplit's view of it), so userinfo, ports,
# backslashes, percent-escapes and the tabs/newlines urlsplit silently drops are all refused.
_SNS_HOST = r"sns\.[a-z0-9]+(?:-[a-z0-9]+)+\.amazonaws\.com(?:\.cn)?"
_CERT_URL = re.compile(
    rf"https://{_SNS_HOST}/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*\.pem",
    re.ASCII,
)
_SUBSCRIBE_URL = re.compile(rf"https://{_SNS_HOST}/\?[A-Za-z0-9._~%:&=+-]+", re.ASCII)


class SnsError(Exception):
    """Why a message is refused (safe to log; never contains secrets)."""


def cert_url_ok(url: str) -> bool:
    """True when ``url`` is an SNS signing certificate URL: https, an SNS host, a ``.pem`` path.

    The host must be exactly ``sns.<region>.amazonaws.com`` (or ``.amazonaws.com.cn``), with
    no user, password or port; the path is plain name segments ending in ``.pem``; no query
    or fragment.
    """
    return isinstance(url, str) and _CERT_URL.fullmatch(url) is not None


def subscribe_url_ok(url: str) -> bool:
    """True when ``url`` is an SNS ``ConfirmSubscription`` URL on an SNS host over https."""
    if not isinstance(url, str) or _SUBSCRIBE_URL.fullmatch(url) is None:
        return False
    query = parse_qs(urlsplit(url).query, keep_blank_values=True)
    return query.get("Action") == ["ConfirmSubscription"]


async def fetch_https(url: str, *, ssl_context: ssl.SSLContext | None = None) -> bytes:
    """The default fetcher: GET ``url`` with verified TLS, 10 s, no redirects, at most 64 KiB.

    ``ssl_context`` replaces aiohttp's default verifying context (tests pass one trusting a
    local CA); raises SnsError for a non-200 answer or an oversized body.
    """
    import aiohttp  # the engine imports cleanly without the HTTP stack until it is needed

    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT)
    # True: aiohttp's default context, which verifies against the system's trust store
    verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(url, allow_redirects=False, ssl=verify) as response,
    ):
        # the query is left out of messages: a SubscribeURL carries the subscription token
        shown = url.split("?", 1)[0]
        if response.status != 200:
            raise SnsError(f"GET {shown} answered HTTP {response.status}")
        if (response.content_length or 0) > MAX_CERT_BYTES:
            raise SnsError(f"GET {shown} is larger than {MAX_CERT_BYTES} bytes")
        body = bytearray()
        async for chunk in response.content.iter_chunked(8192):
            body += chunk
            if len(body) > MAX_CERT_BYTES:
                raise SnsError(f"GET {shown} is larger than {MAX_CERT_BYTES} bytes")
        return bytes(body)


def _string_to_sign(message: Mapping[str, Any]) -> bytes:
    keys = _NOTIFICATION_KEYS if message["Type"] == "Notification" else _CONFIRMATION_KEYS
    parts = [f"{key}\n{message[key]}\n" for key in keys if key in message]
    return "".join(parts).encode("utf-8")


def _parse_timestamp(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise SnsError(f"Timestamp is not an ISO 8601 instant: {value[:40]!r}") from None
    if when.tzinfo is None:
        raise SnsError("Timestamp has no time zone")
    try:
        return when.astimezone(UTC)
    except OverflowError:
        raise SnsError(f"Timestamp out of range: {value[:40]!r}") from None


class SnsVerifier:
    """Checks SNS HTTP(S) messages for topics we subscribed to; keeps fetched certificates."""

    def __init__(
        self,
        *,
        allowed_topics: Collection[str],
        fetch: Fetch | None = None,
        max_age: timedelta = timedelta(hours=1),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``allowed_topics``: TopicArns we accept; ``fetch``: GET for certificates and
        subscription confirmations (default ``fetch_https``); ``max_age``: oldest Timestamp
        accepted; ``clock``: returns the current aware instant (default the wall clock)."""
        if isinstance(allowed_topics, str):
            raise TypeError("allowed_topics is a collection of TopicArns, not one string")
        self.allowed_topics = frozenset(allowed_topics)
        self._fetch = fetch or fetch_https
        self.max_age = max_age
        self._clock = clock or RealClock().now
        self._certificates: OrderedDict[str, x509.Certificate] = OrderedDict()

    async def verify(self, body: bytes) -> dict[str, Any]:
        """The parsed SNS message when genuine; raises SnsError otherwise."""
        message = self._parse(body)
        self._check_local(message)
        signature = self._signature(message)
        certificate = await self._certificate(message["SigningCertURL"])
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsError("signing certificate does not hold an RSA key")
        algorithm = _HASHES[message["SignatureVersion"]]()
        try:
            key.verify(signature, _string_to_sign(message), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise SnsError("signature does not match the message") from None
        return message

    async def confirm_subscription(self, message: dict[str, Any]) -> None:
        """GET the SubscribeURL of a verified SubscriptionConfirmation.

        Only ``https://sns.<region>.amazonaws.com/?Action=ConfirmSubscription&…`` for one of
        our topics is visited; anything else raises SnsError without a request.
        """
        if message.get("Type") != "SubscriptionConfirmation":
            raise SnsError(f"not a SubscriptionConfirmation: Type {message.get('Type')!r:.60}")
        topic = message.get("TopicArn")
        if not isinstance(topic, str) or topic not in self.allowed_topics:
            raise SnsError(f"topic not allowed: {topic!r:.200}")
        url = message.get("SubscribeURL")
        if not isinstance(url, str) or not subscribe_url_ok(url):
            shown = url.split("?", 1)[0] if isinstance(url, str) else url
            raise SnsError(f"SubscribeURL refused: {shown!r:.200}")
        if parse_qs(urlsplit(url).query).get("TopicArn", [topic]) != [topic]:
            raise SnsError("SubscribeURL is for another topic")
        try:
            await self._fetch(url)
        except SnsError:
            raise
        except Exception as exc:
            raise SnsError(f"could not confirm the subscription: {type(exc).__name__}") from exc

    # -- the steps of verify -------------------------------------------------------------

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        if not isinstance(body, bytes | bytearray | memoryview):
            raise SnsError("body must be bytes")
        if len(body) > MAX_BODY:
            raise SnsError(f"body larger than {MAX_BODY} bytes")
        try:
            message = json.loads(bytes(body))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            raise SnsError("body is not JSON") from None
        if not isinstance(message, dict):
            raise SnsError("body is not a JSON object")
        kind = message.get("Type")
        if not isinstance(kind, str) or kind not in MESSAGE_TYPES:
            raise SnsError(f"unknown Type {kind!r:.60}")
        keys = _NOTIFICATION_KEYS if kind == "Notification" else _CONFIRMATION_KEYS
        for key in (*keys, "SignatureVersion", "Signature", "SigningCertURL"):
            if key not in message:
                if key in _OPTIONAL_KEYS:
                    continue
                raise SnsError(f"missing {key}")
            if not isinstance(message[key], str):
                raise SnsError(f"{key} is not a string")
        return message

    def _check_local(self, message: dict[str, Any]) -> None:
        topic = message["TopicArn"]
        if topic not in self.allowed_topics:
            raise SnsError(f"topic not allowed: {topic[:200]!r}")
        if message["SignatureVersion"] not in _HASHES:
            raise SnsError(f"unsupported SignatureVersion {message['SignatureVersion'][:20]!r}")
        if not cert_url_ok(message["SigningCertURL"]):
            raise SnsError(f"SigningCertURL refused: {message['SigningCertURL'][:200]!r}")
        sent = _parse_timestamp(message["Timestamp"])
        age = self._clock() - sent
        if age > self.max_age:
            raise SnsError(f"message is stale: sent {sent.isoformat()}, {age} ago")

    @staticmethod
    def _signature(message: dict[str, Any]) -> bytes:
        try:
            signature = base64.b64decode(message["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise SnsError("Signature is not base64") from None
        if not signature:
            raise SnsError("Signature is empty")
        return signature

    async def _certificate(self, url: str) -> x509.Certificate:
        certificate = self._certificates.get(url)
        if certificate is None:
            try:
                pem = await self._fetch(url)
            except SnsError:
                raise
            except Exception as exc:
                raise SnsError(
                    f"could not fetch the signing certificate {url}: {type(exc).__name__}"
                ) from exc
            if len(pem) > MAX_CERT_BYTES:
                raise SnsError(f"signing certificate larger than {MAX_CERT_BYTES} bytes")
            try:
                certificate = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise SnsError(f"{url} is not a PEM certificate") from None
            self._certificates[url] = certificate
            while len(self._certificates) > CERT_CACHE_SIZE:
                self._certificates.popitem(last=False)
        else:
            self._certificates.move_to_end(url)
        now = self._clock()
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            raise SnsError("signing certificate is outside its validity period")
        return certificate


# -- SES ---------------------------------------------------------------------------------

Severity = Literal["hard", "soft", "none"]
Kind = Literal["bounce", "complaint", "delivery", "other"]

DIAGNOSTIC_LIMIT = 500
_KINDS: dict[str, Kind] = {"bounce": "bounce", "complaint": "complaint", "delivery": "delivery"}


@dataclass(frozen=True)
class SesRecipient:
    """One address an SES notification is about."""

    address: str
    #: hard: never send again; soft: try again later; none: not a bounce
    severity: Severity
    #: the enhanced status code, such as "5.1.1"
    status: str | None
    #: the remote server's words (bounce diagnosticCode, delivery smtpResponse), one line,
    #: at most 500 characters
    diagnostic: str | None


@dataclass(frozen=True)
class SesEvent:
    """What an SES bounce, complaint or delivery notification says."""

    kind: Kind
    recipients: tuple[SesRecipient, ...]
    #: SES's own id for the sent message (mail.messageId)
    ses_message_id: str | None
    #: mail.source: the MAIL FROM / Return-Path (disparo puts a VERP address there)
    source: str | None
    #: our Message-ID header, with <>, when SES was told to include original headers
    message_id_header: str | None
    #: complaint complaintFeedbackType, such as "abuse"
    feedback_type: str | None
    #: Permanent | Transient | Undetermined
    bounce_type: str | None
    #: General, NoEmail, MailboxFull, OnAccountSuppressionList, Suppressed, …
    bounce_subtype: str | None
    #: when the bounce, complaint or delivery happened (else when the mail was sent)
    timestamp: datetime | None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _one_line(value: Any) -> str | None:
    text = _text(value)
    if text is None:
        return None
    return " ".join(text.split())[:DIAGNOSTIC_LIMIT]


def _when(value: Any) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    when: datetime | None = None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        # older SES examples write "2018-10-08T14:05:45 +0000"
        try:
            when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S %z")
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def _message_id(mail: dict[str, Any]) -> str | None:
    ses_id = _text(mail.get("messageId"))
    candidates = [_dict(mail.get("commonHeaders")).get("messageId")]
    candidates += [
        header.get("value")
        for header in map(_dict, _list(mail.get("headers")))
        if isinstance(header.get("name"), str) and header["name"].lower() == "message-id"
    ]
    for candidate in candidates:
        text = _text(candidate)
        # without our own Message-ID SES reports its id here; that one is not ours
        if text is None or text == ses_id:
            continue
        return text if text.startswith("<") else f"<{text}>"
    return None


def _severity(bounce_type: str | None) -> Severity:
    # Permanent covers OnAccountSuppressionList and Suppressed too: the address is known bad.
    # Transient, Undetermined and anything unknown are soft: retry rather than lose an address.
    return "hard" if bounce_type == "Permanent" else "soft"


def parse_ses(message: dict[str, Any]) -> SesEvent:
    """Read an SES notification; never raises.

    ``message`` is the SES JSON (the decoded ``Message`` of an SNS Notification), or the
    verified SNS Notification itself, whose ``Message`` is then decoded here. Both the
    ``notificationType`` shape (identity notifications) and the ``eventType`` shape (event
    publishing) are read. Bounce: Permanent gives hard recipients, Transient and
    Undetermined soft; Complaint and Delivery give recipients of severity "none"; any other
    type gives kind "other".
    """
    if not isinstance(message, dict):
        message = {}
    if message.get("Type") == "Notification" and isinstance(message.get("Message"), str):
        try:
            inner = json.loads(message["Message"])
        except (ValueError, RecursionError):
            inner = None
        message = inner if isinstance(inner, dict) else {}

    raw_kind = message.get("notificationType") or message.get("eventType")
    kind: Kind = _KINDS.get(raw_kind.lower(), "other") if isinstance(raw_kind, str) else "other"
    mail = _dict(message.get("mail"))
    detail = _dict(message.get(kind)) if kind != "other" else {}

    recipients: list[SesRecipient] = []
    bounce_type: str | None = None
    bounce_subtype: str | None = None
    feedback_type: str | None = None
    if kind == "bounce":
        bounce_type = _text(detail.get("bounceType"))
        bounce_subtype = _text(detail.get("bounceSubType"))
        severity = _severity(bounce_type)
        for entry in map(_dict, _list(detail.get("bouncedRecipients"))):
            address = _text(entry.get("emailAddress"))
            if address is not None:
                recipients.append(
                    SesRecipient(
                        address=address,
                        severity=severity,
                        status=_text(entry.get("status")),
                        diagnostic=_one_line(entry.get("diagnosticCode")),
                    )
                )
    elif kind == "complaint":
        feedback_type = _text(detail.get("complaintFeedbackType"))
        for entry in map(_dict, _list(detail.get("complainedRecipients"))):
            address = _text(entry.get("emailAddress"))
            if address is not None:
                recipients.append(SesRecipient(address, "none", None, None))
    elif kind == "delivery":
        response = _one_line(detail.get("smtpResponse"))
        for entry in _list(detail.get("recipients")):
            address = _text(entry)
            if address is not None:
                recipients.append(SesRecipient(address, "none", None, response))

    return SesEvent(
        kind=kind,
        recipients=tuple(recipients),
        ses_message_id=_text(mail.get("messageId")),
        source=_text(mail.get("source")),
        message_id_header=_message_id(mail),
        feedback_type=feedback_type,
        bounce_type=bounce_type,
        bounce_subtype=bounce_subtype,
        timestamp=_when(detail.get("timestamp")) or _when(mail.get("timestamp")),
    )

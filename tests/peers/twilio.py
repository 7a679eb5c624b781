"""A loopback fake of Twilio's Messages API (aiohttp) for tests, on its own event loop."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, TypeVar

from aiohttp import web

from engine.testing.eventually import TIMEOUT, eventually_sync
from tests.peers.common import run_loop

T = TypeVar("T")
_TIMEOUT = 10.0
API_VERSION = "2010-04-01"
MESSAGES_PATH = f"/{API_VERSION}/Accounts/{{account_sid}}/Messages.json"

#: Twilio's wording for the error codes tests are likely to script
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    63016: "Failed to send freeform message because you are outside the allowed window. "
    "If you are using WhatsApp, please use a Message Template.",
}
#: the code Twilio puts in the body when a status comes without a more specific one
DEFAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}

# GSM 03.38: the basic alphabet costs one septet, the extension table two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class FakeRequest:
    """One request to the Messages endpoint, as received (recorded before it is answered)."""

    account_sid: str  # from the URL path
    form: dict[str, str]  # the form fields exactly as received (last value of a repeated field)
    authorized: bool  # Basic auth matched the fake's account SID and auth token
    at: float  # time.monotonic() when received


@dataclass(frozen=True)
class FakeResponse:
    """A scripted answer: a 2xx creates the message, anything else is a Twilio error."""

    status: int = 201
    code: int | None = None  # Twilio error code (21610, 21211, 21614…); defaults by status
    retry_after: int | None = None  # seconds, sent as a Retry-After header
    message: str | None = None  # defaults to Twilio's wording for the code


@dataclass
class TwilioFake:
    """A running fake of ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``; ``stop()`` it.

    Point the real client at it by replacing ``https://api.twilio.com`` with ``base_url``.
    """

    base_url: str
    account_sid: str
    auth_token: str
    requests: list[FakeRequest] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _scripts: dict[str, deque[FakeResponse]] = field(default_factory=dict, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _runner: web.AppRunner | None = field(default=None, repr=False)

    def script(self, to: str, *responses: FakeResponse) -> None:
        """Queue responses for requests whose ``To`` is exactly `to` (e.g. "+5511999990001" or
        "whatsapp:+55…"), one per authorized request; once the queue is empty, answer 201."""
        with self._lock:
            self._scripts.setdefault(to, deque()).extend(responses)

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> None:
        """Block until at least `count` requests arrived, else raise AssertionError."""
        eventually_sync(
            lambda: len(self.requests) >= count,
            what=f"{count} request(s) at the Twilio fake",
            timeout=timeout,
            detail=lambda: f"Twilio fake received {len(self.requests)} request(s), not {count}",
        )

    def stop(self) -> None:
        """Close the listener and its connections, then the event loop and its thread."""
        if self._loop is None or self._thread is None:
            return
        try:
            if self._runner is not None:
                self._call(self._runner.cleanup())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_TIMEOUT)
            self._loop = self._thread = self._runner = None

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_TIMEOUT)

    # -- server side (runs on the fake's loop) ---------------------------------------------

    def _authorized(self, header: str | None) -> bool:
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, _, password = decoded.partition(":")
        return user == self.account_sid and hmac.compare_digest(
            password.encode(), self.auth_token.encode()
        )

    def _next_scripted(self, to: str) -> FakeResponse | None:
        with self._lock:
            queue = self._scripts.get(to)
            return queue.popleft() if queue else None

    async def _create_message(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        posted = await request.post()
        form = {key: str(value) for key, value in posted.items()}
        account_sid = request.match_info["account_sid"]
        authorized = self._authorized(request.headers.get("Authorization"))
        with self._lock:
            self.requests.append(FakeRequest(account_sid, form, authorized, at))

        if not authorized:
            return _error(401, 20003, headers={"WWW-Authenticate": 'Basic realm="Twilio API"'})
        if account_sid != self.account_sid:
            return _error(404, 20404)
        to = form.get("To", "")
        if not to:
            return _error(400, 21604)
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return _error(400, 21603)
        if not (form.get("Body") or form.get("ContentSid") or form.get("MediaUrl")):
            return _error(400, 21602)
        scripted = self._next_scripted(to) or FakeResponse()
        if not 200 <= scripted.status < 300:
            return _error(scripted.status, scripted.code, scripted.message, scripted.retry_after)
        return web.json_response(self._message_resource(form), status=scripted.status)

    def _message_resource(self, form: dict[str, str]) -> dict[str, Any]:
        """A Message resource as Twilio returns it on create."""
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))  # RFC 2822, "+0000" as Twilio writes it
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        body = form.get("Body", "")
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From") or None,
            "messaging_service_sid": form.get("MessagingServiceSid") or None,
            "num_media": "1" if form.get("MediaUrl") else "0",
            "num_segments": str(segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"{base}/Media.json",
                "feedback": f"{base}/Feedback.json",
            },
            "to": form["To"],
            "uri": f"{base}.json",
        }


def segments(body: str) -> int:
    """How many SMS segments `body` takes: GSM-7 (160, or 153 per part) when every character
    is in the GSM alphabet, else UCS-2 (70, or 67 per part) - "ç", "ã", "õ" are not."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENSION for c in body):
        units, single, part = len(body) + sum(c in _GSM_EXTENSION for c in body), 160, 153
    else:
        units, single, part = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / part)


def _error(
    status: int,
    code: int | None,
    message: str | None = None,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Twilio's (legacy) error body, which its client turns into ``TwilioRestException``."""
    code = code if code is not None else DEFAULT_CODES.get(status)
    payload: dict[str, Any] = {
        "code": code,
        "message": message or ERROR_MESSAGES.get(code or 0, f"HTTP {status}"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}" if code else None,
        "status": status,
    }
    headers = dict(headers or {})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return web.Response(
        status=status, text=json.dumps(payload), content_type="application/json", headers=headers
    )


def start_twilio_fake(
    account_sid: str = "AC" + "0" * 32, auth_token: str = "fake-auth-token"
) -> TwilioFake:
    """Serve the fake on 127.0.0.1 (random port) from a daemon thread.

    Requests are checked like Twilio does: Basic auth as `account_sid`:`auth_token` (else 401,
    code 20003), the path's account SID (else 404), ``To`` (21604), ``From`` or
    ``MessagingServiceSid`` (21603), ``Body``, ``ContentSid`` or ``MediaUrl`` (21602); then the
    next scripted response for ``To`` (default 201 with a Message resource) is given.
    """
    fake = TwilioFake(base_url="", account_sid=account_sid, auth_token=auth_token)
    app = web.Application()
    app.router.add_post(MESSAGES_PATH, fake._create_message)
    loop = asyncio.new_event_loop()
    fake._loop = loop
    fake._thread = threading.Thread(target=run_loop, args=(loop,), name="twilio-fake", daemon=True)
    fake._thread.start()

    async def listen() -> web.AppRunner:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    try:
        fake._runner = fake._call(listen())
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        fake._thread.join(timeout=_TIMEOUT)
        raise
    host, port = fake._runner.addresses[0][:2]
    fake.base_url = f"http://{host}:{port}"
    return fake

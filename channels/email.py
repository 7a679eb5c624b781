"""The ``email`` channel: SMTP with aiosmtplib, through a pool of reused connections.

Per message: MIME multipart/alternative (a text part made from the HTML), a stable Message-ID
(D12), a VERP return path naming the delivery, ``List-Unsubscribe`` with the RFC 8058
one-click ``List-Unsubscribe-Post`` and a visible unsubscribe link (D19), and a DKIM signature
when a key is configured (covering the List-Unsubscribe headers).

The MIME text is assembled from stdlib encoders rather than ``EmailMessage``: building an
``EmailMessage`` costs as much as sending it (480–850/s, NOTES.md); here it is ~20 µs.
SMTP 4xx is a temporary failure (D13); 5xx on the recipient (RCPT TO, or DATA for this
message) a permanent one. A failure to open a session — the connection, the greeting, TLS, the
login (535, 530, a 554 greeting) — is the account's, never a recipient's: a ``Retry`` of the
account, which pauses it when it goes on (the circuit breaker).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, timedelta
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from engine import hookimpl
from engine.addresses import Checked, normalise_email
from engine.campaign import Campaign
from engine.config import AccountSettings, Key
from engine.plugins.channel import (
    CampaignProblem,
    Channel,
    ChannelContext,
    DeliveryInfo,
    Failed,
    Retry,
    SendResult,
    Sent,
)
from engine.render import (
    LINK_VARIABLE,
    OPEN_VARIABLE,
    Substitution,
    compile_html,
    compile_text,
    html_to_text,
    substitution,
    track_links,
    trial_render,
)

if TYPE_CHECKING:
    # aiosmtplib and dkimpy are imported where mail is sent and signed: loading the plugins,
    # which every `disparo` process does, stays light
    import aiosmtplib

SIGNED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"mime-version",
    b"content-type",
    b"reply-to",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
]

FOOTER_HTML = (
    '<p style="font-size:12px;color:#666666">Para não receber mais estes e-mails, '
    '<a href="{{ unsubscribe_url }}">descadastre-se</a>.</p>'
)
FOOTER_TEXT = "\n--\nPara não receber mais estes e-mails: {{ unsubscribe_url }}\n"


def _header(value: str) -> str:
    """A header value, RFC 2047-encoded (base64 words of at most 75 characters, never splitting
    a character) when it is not plain ASCII. ``email.header.Header`` does the same at ~115 µs a
    subject, measured as the second largest cost of sending; this takes a few µs."""
    value = value.replace("\r", " ").replace("\n", " ")
    if value.isascii() and len(value) < 900:
        return value
    # cut the UTF-8 bytes every 45 bytes at most (45 bytes -> 60 base64 chars -> a 72-char
    # word), never inside a character (before a continuation byte, 0b10xxxxxx)
    data = value.encode("utf-8")
    words: list[str] = []
    start = 0
    while start < len(data):
        end = start + 45
        while end < len(data) and data[end] & 0xC0 == 0x80:
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return "\r\n ".join(words)


def _address(name: str | None, address: str) -> str:
    if not name:
        return address
    return formataddr((name, address), charset="utf-8")


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (the C encoder in binascii)."""
    encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True)
    if b"\r" in encoded:
        encoded = encoded.replace(b"\r\n", b"\n")
    return encoded.replace(b"\n", b"\r\n")


class QpPart:
    """A body part compiled once per campaign for quoted-printable: its lines without a
    variable encoded once; per recipient, only the lines that hold a variable are substituted
    and encoded (with the static text around the variables, up to the line ends, so that the
    soft line breaks fall where the whole part's encoding puts them).

    ``binascii.b2a_qp`` is line-local when the text has no ``\r`` (its CRLF mode is chosen by
    the first line end of the whole text; every other decision looks at the current line
    only): encoding whole lines apart gives the bytes of encoding them together. A rendering
    with a ``\r`` in it (a value carrying one) is encoded whole instead, as is a part whose
    template is not a ``Substitution`` (``QpPart.compile`` returns None for it).
    """

    def __init__(
        self, template: Substitution, segments: list[bytes | tuple[list[str], list[str]]]
    ) -> None:
        self.template = template
        self.segments = segments

    @classmethod
    def compile(cls, template: Any, static_run: int | None = None) -> QpPart | None:
        """The compiled part for a ``Substitution`` template without ``\r`` that has a run of
        at least ``static_run`` characters of lines without a variable; else None."""
        run = _STATIC_RUN if static_run is None else static_run
        if not isinstance(template, Substitution) or any("\r" in p for p in template.pieces):
            return None
        pieces, names = template.pieces, template.names
        if not names:
            return cls(template, [_qp(pieces[0])])
        segments: list[bytes | tuple[list[str], list[str]]] = []
        static, end, tail = pieces[0].rpartition("\n")
        if end and len(static) + 1 >= run:
            segments.append(_qp(static + end))
        else:
            tail = pieces[0]
        chunk: tuple[list[str], list[str]] = ([tail], [])
        final = len(names)
        for at, (name, piece) in enumerate(zip(names, pieces[1:], strict=True), 1):
            chunk[1].append(name)
            # the whole lines of static text after this variable (up to the next variable's
            # line, or the end): encoded ahead when long enough to be worth a segment
            first = piece.find("\n") + 1
            last = len(piece) if at == final else piece.rfind("\n") + 1
            if first == 0 or last - first < run:
                chunk[0].append(piece)
                continue
            chunk[0].append(piece[:first])
            segments.append(chunk)
            segments.append(_qp(piece[first:last]))
            chunk = ([piece[last:]], [])
        if chunk[1]:
            segments.append(chunk)
        if not any(type(s) is bytes for s in segments):
            return None  # no run of static lines long enough: the part is encoded whole
        return cls(template, segments)

    def encode(self, values: Mapping[str, Any]) -> bytes:
        """The part rendered for ``values``, quoted-printable with CRLF line ends: the bytes of
        ``_qp(template.render(values))``."""
        fill = self.template.fill
        out: list[bytes] = []
        for segment in self.segments:
            if type(segment) is bytes:
                out.append(segment)
                continue
            pieces, names = segment  # type: ignore[misc]
            rendered = fill(pieces, names, values)
            if "\r" in rendered:  # CRLF mode would change for the whole part: encode it whole
                return _qp(self.template.render(values))
            out.append(_qp(rendered))
        return b"".join(out)


#: the shortest run of static lines (characters) a compiled part encodes ahead; shorter runs are
#: encoded with the variables around them (a segment costs more than encoding a short run)
_STATIC_RUN = 160


def _with_footer(html: str, footer: str) -> str:
    lower = html.lower()
    at = lower.rfind("</body>")
    return html[:at] + footer + html[at:] if at != -1 else html + footer


@dataclass(frozen=True)
class PreparedEmail:
    """What is the same for every recipient of a campaign."""

    campaign_id: int
    subject: Any
    html: Any
    text: Any
    from_header: str
    reply_to: str | None
    envelope_from: str
    unsubscribe: bool
    links: tuple[str, ...] = ()  # tracked links, by position from 1 (click tracking)
    opens: bool = False  # an open pixel is in the HTML
    text_part: QpPart | None = None  # compiled for quoted-printable (else encoded whole)
    html_part: QpPart | None = None


_ONE_CLICK = "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
_PART = (
    b'\r\nContent-Type: text/%s; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
)
_PLAIN_PART = _PART % b"plain"
_HTML_PART = _PART % b"html"


class _Skeleton:
    """What ``EmailChannel.compose`` writes the same for every recipient of a campaign: the
    header lines before ``To`` and after ``Message-ID`` (up to the boundary's delivery id)
    and the headers a DKIM signature covers."""

    def __init__(self, prepared: PreparedEmail, account: str) -> None:
        self.prepared = prepared
        self.head = f"From: {prepared.from_header}\r\n"
        reply_to = f"Reply-To: {prepared.reply_to}\r\n" if prepared.reply_to else ""
        self.tail = (
            f"{reply_to}Feedback-ID: {prepared.campaign_id}:{account}:disparo\r\n"
            f"MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="=_disparo_'
        )
        present = {b"from", b"to", b"subject", b"date", b"message-id", b"feedback-id"}
        present |= {b"mime-version", b"content-type"}
        if prepared.reply_to:
            present.add(b"reply-to")
        self.signed = [h for h in SIGNED_HEADERS if h in present]
        present |= {b"list-unsubscribe", b"list-unsubscribe-post"}
        self.signed_with_unsubscribe = [h for h in SIGNED_HEADERS if h in present]


async def _transaction(
    client: aiosmtplib.SMTP, sender: str, recipient: str, data: bytes, utf8: bool
) -> None:
    """MAIL, RCPT, DATA for one message; pipelined (RFC 2920: MAIL, RCPT and DATA in one
    write, their three replies read together) when the relay offers PIPELINING.

    ``sendmail()`` parses both addresses four times per message (email.utils, ~60 µs each,
    measured as the largest cost of sending); these addresses were already checked by
    email-validator, so the commands go through aiosmtplib's ``execute_command`` as they are.
    """
    import aiosmtplib

    if utf8 and not client.supports_extension("smtputf8"):
        raise aiosmtplib.SMTPNotSupported(
            "the relay does not offer SMTPUTF8 (RFC 6531), which an address with accents "
            "in its local part needs; use a relay that does (Postfix ≥ 3.0 with "
            "smtputf8_enable = yes)"
        )
    encoding = "utf-8" if utf8 else "ascii"
    options = [b"SMTPUTF8"] if utf8 else []
    mail = b"FROM:<" + sender.encode(encoding) + b">"
    rcpt = b"TO:<" + recipient.encode(encoding) + b">"
    if _Pipelined.fits(client):
        await _Pipelined(client).send(
            sender, recipient, b" ".join([b"MAIL", mail, *options]), b"RCPT " + rcpt, data
        )
        return
    reply = await client.execute_command(b"MAIL", mail, *options)
    if reply.code != 250:
        await _reset(client)
        raise aiosmtplib.SMTPSenderRefused(reply.code, reply.message, sender)
    reply = await client.execute_command(b"RCPT", rcpt)
    if reply.code not in (250, 251):
        await _reset(client)
        raise aiosmtplib.SMTPRecipientRefused(reply.code, reply.message, recipient)
    try:
        await client.data(data)
    except aiosmtplib.SMTPResponseException:
        await _reset(client)
        raise


class _Pipelined:
    """One pipelined transaction on an aiosmtplib connection (aiosmtplib 5 has no PIPELINING
    of its own): the envelope and DATA go in one write, then the message in a second; the
    four replies are read in order. The protocol is made to keep every reply it receives
    (by default it drops what arrives while no reply is awaited), once per connection."""

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.protocol: Any = client.protocol
        self.timeout = client.timeout

    @staticmethod
    def fits(client: aiosmtplib.SMTP) -> bool:
        """Does the relay offer PIPELINING, and does this aiosmtplib's protocol have what
        pipelining relies on? (Answered once per connection.)"""
        p = client.protocol
        if p is None:
            return False
        found: bool | None = getattr(p, "_disparo_fits", None)
        if found is None:
            found = p._disparo_fits = client.supports_extension("pipelining") and all(
                hasattr(p, a)
                for a in (
                    "_buffer",
                    "_response_waiter",
                    "_read_response_from_buffer",
                    "read_response",
                )
            )
        return found

    def _keep_replies(self) -> None:
        p = self.protocol
        if getattr(p, "_disparo_pipelining", False):
            return
        original = p.data_received

        def data_received(data: bytes) -> None:
            waiter = p._response_waiter
            if waiter is not None and (waiter.done() or not p._response_pending):
                p._buffer.extend(data)  # a reply not awaited yet: kept for the next read
                return
            original(data)

        p.data_received = data_received
        p._read_response_from_buffer = _one_line_first(p._read_response_from_buffer, p._buffer)
        p._disparo_pipelining = True

    async def _reply(self) -> Any:
        """The next reply: one already received, else the one the protocol waits for, within
        the timeout (what ``read_response`` does, with a timer instead of ``wait_for``, which
        costs a task's worth of bookkeeping per reply)."""
        import aiosmtplib

        p = self.protocol
        reply = p._read_response_from_buffer()  # one already received
        if reply is not None:
            return reply
        waiter = p._response_waiter
        if waiter is None:
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        p._response_pending = True
        loop = asyncio.get_running_loop()
        if self.timeout is not None:
            _Watch.of(p, loop).wait(self.timeout)
        try:
            return await waiter
        finally:
            if self.timeout is not None:
                p._disparo_watch.deadline = None
            p._response_pending = False
            p._response_waiter = None if p.transport is None else loop.create_future()

    async def send(
        self, sender: str, recipient: str, mail: bytes, rcpt: bytes, data: bytes
    ) -> None:
        import aiosmtplib

        injection, period, normalise = _PROTOCOL or _protocol()
        for command in (mail, rcpt):
            if injection.search(command):
                raise ValueError("Command arg contains a prohibited control character")
        p = self.protocol
        if p is None or p._command_lock is None:
            raise aiosmtplib.SMTPServerDisconnected("Server not connected")
        self._keep_replies()
        body = _dot_stuffed(data, normalise, period)
        try:
            async with p._command_lock:
                p._response_pending = True
                p.write(mail + b"\r\n" + rcpt + b"\r\nDATA\r\n")
                sent, accepted, go = [await self._reply() for _ in range(3)]
                if go.code == 354 and (sent.code != 250 or accepted.code not in (250, 251)):
                    p._response_pending = True
                    p.write(b".\r\n")  # a relay that took DATA without a recipient: no message
                    await self._reply()
                if sent.code != 250:
                    raise aiosmtplib.SMTPSenderRefused(sent.code, sent.message, sender)
                if accepted.code not in (250, 251):
                    raise aiosmtplib.SMTPRecipientRefused(
                        accepted.code, accepted.message, recipient
                    )
                if go.code != 354:
                    raise aiosmtplib.SMTPDataError(go.code, go.message)
                p._response_pending = True
                p.write(body)
                done = await self._reply()
                if done.code != 250:
                    raise aiosmtplib.SMTPDataError(done.code, done.message)
        except aiosmtplib.SMTPResponseException:
            await _reset(self.client)
            raise
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError):
            self.client.close()
            raise


#: aiosmtplib's command-injection and leading-period expressions and its line-end normaliser,
#: looked up once (a ``from … import`` per message cost ~1 µs)
_PROTOCOL: tuple[Any, Any, Callable[[bytes], bytes]] | None = None


def _protocol() -> tuple[Any, Any, Callable[[bytes], bytes]]:
    global _PROTOCOL
    from aiosmtplib.protocol import (
        COMMAND_INJECTION_REGEX,
        PERIOD_REGEX,
        normalize_message_line_endings,
    )

    _PROTOCOL = (COMMAND_INJECTION_REGEX, PERIOD_REGEX, normalize_message_line_endings)
    return _PROTOCOL


def _one_line_first(parse: Callable[[], Any], buffer: bytearray) -> Callable[[], Any]:
    """aiosmtplib's reply parser (``parse``, over ``buffer``) with a shortcut for the usual
    reply, one line (``250 2.0.0 Ok``): the same reply and the same bytes left in the buffer;
    anything else (several lines, a partial or malformed line) goes to ``parse``."""
    from aiosmtplib.protocol import MAX_LINE_LENGTH
    from aiosmtplib.response import SMTPResponse

    def read() -> Any:
        end = buffer.find(b"\n")
        if 4 < end < MAX_LINE_LENGTH and buffer[3] == 32 and buffer[:3].isdigit():
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            return SMTPResponse(
                int(line[:3]), line[4:].strip(b" \t\r\n").decode("utf-8", "surrogateescape")
            )
        return parse()

    return read


class _Watch:
    """The read timeout of one connection: the deadline of the reply awaited now, and one
    timer that is moved only when it fires early (a timer per reply, or ``wait_for``, cost a
    tenth of the event loop's time at a few thousand messages a second)."""

    def __init__(self, protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.protocol = protocol
        self.loop = loop
        self.deadline: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, protocol: Any, loop: asyncio.AbstractEventLoop) -> _Watch:
        watch: _Watch | None = getattr(protocol, "_disparo_watch", None)
        if watch is None:
            watch = protocol._disparo_watch = cls(protocol, loop)
        return watch

    def wait(self, timeout: float) -> None:
        """A reply is awaited from now, for at most ``timeout`` seconds."""
        self.deadline = self.loop.time() + timeout
        if self.timer is None:
            self.timer = self.loop.call_at(self.deadline, self._check)

    def _check(self) -> None:
        self.timer = None
        if self.deadline is None:
            return  # no reply awaited: the next wait arms the timer again
        if self.loop.time() < self.deadline:
            self.timer = self.loop.call_at(self.deadline, self._check)
            return
        import aiosmtplib

        waiter = self.protocol._response_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(
                aiosmtplib.SMTPReadTimeoutError("Timed out waiting for server response")
            )


def _dot_stuffed(data: bytes, normalise: Callable[[bytes], bytes], period: Any) -> bytes:
    """The DATA payload: CRLF line ends, a leading dot doubled (RFC 5321 4.5.2), the final
    dot. A message composed here has CRLF line ends and rarely a line starting with a dot,
    so three C counts and a search usually stand in for aiosmtplib's two regular
    expressions over the whole message."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = normalise(data)
    if data.startswith(b".") or b"\n." in data:
        data = period.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


async def _reset(client: aiosmtplib.SMTP) -> None:
    import aiosmtplib

    with contextlib.suppress(aiosmtplib.SMTPException, ConnectionError):
        await client.rset()


class SmtpPool:
    """Up to ``size`` reused SMTP connections; a broken one is dropped and replaced."""

    def __init__(self, size: int, connect: Callable[[], Awaitable[aiosmtplib.SMTP]]) -> None:
        self.size = size
        self._connect = connect
        self._idle: asyncio.Queue[aiosmtplib.SMTP] = asyncio.Queue()
        self._slots = asyncio.Semaphore(size)
        self._all: set[aiosmtplib.SMTP] = set()

    async def send(self, sender: str, recipient: str, data: bytes, utf8: bool) -> None:
        import aiosmtplib

        async with self._slots:
            try:
                client = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                client = await self._connect()
                self._all.add(client)
            try:
                await _transaction(client, sender, recipient, data, utf8)
            except (
                aiosmtplib.SMTPResponseException,
                aiosmtplib.SMTPRecipientsRefused,
                aiosmtplib.SMTPNotSupported,
            ):
                # the relay answered (the envelope was reset), or nothing was sent: the
                # connection is fine
                if client.is_connected:
                    self._idle.put_nowait(client)
                else:
                    self._all.discard(client)
                raise
            except BaseException:
                self._all.discard(client)
                with contextlib.suppress(Exception):
                    client.close()
                # the relay went away (a restart, a network cut): the idle connections opened
                # before went with it; drop them so the next sends connect afresh
                self._drop_idle()
                raise
            self._idle.put_nowait(client)

    async def warm(self, sends: int) -> None:
        """Open connections until ``min(sends, size)`` are there, so that the next sends start
        on a connection at once instead of waiting for one after their token was taken (D10:
        the rate holds at the relay from the first second). A failure is left for the sends,
        which report it: one connection is tried first, the rest only when it worked."""
        missing = min(sends, self.size) - len(self._all)
        if missing <= 0:
            return

        async def one() -> None:
            async with self._slots:
                client = await self._connect()
                self._all.add(client)
                self._idle.put_nowait(client)

        try:
            await one()
        except Exception:
            return
        if missing > 1:
            await asyncio.gather(*(one() for _ in range(missing - 1)), return_exceptions=True)

    def _drop_idle(self) -> None:
        while True:
            try:
                client = self._idle.get_nowait()
            except asyncio.QueueEmpty:
                return
            self._all.discard(client)
            with contextlib.suppress(Exception):
                client.close()

    async def close(self) -> None:
        clients, self._all = self._all, set()
        for client in clients:
            with contextlib.suppress(Exception):
                if client.is_connected:
                    await asyncio.wait_for(client.quit(), 5)
            with contextlib.suppress(Exception):
                client.close()


class EmailChannel(Channel):
    """E-mail through an SMTP relay (or, with ``sandbox = true``, the local sink)."""

    name = "email"
    address_kind = "email"
    file_word = "email"
    #: a relay's usual limit for one authenticated sender; raise it with the relay's own
    default_rate = 10.0
    default_concurrency = 8
    config_keys: ClassVar[dict[str, Key]] = {
        "from_address": Key("str", help="The sender address (From)."),
        "from_name": Key("str", None, "The sender's display name (a wallet's from_name wins)."),
        "reply_to": Key("str", None, "The Reply-To address (a wallet's reply_to wins)."),
        "host": Key("str", None, help="The SMTP relay; required unless sandbox."),
        "port": Key(
            "int",
            None,
            "The relay's port; default 587 with starttls, 465 with implicit, 25 with none.",
            minimum=1,
            maximum=65535,
        ),
        "tls": Key(
            "choice",
            "starttls",
            "starttls: upgrade a plain connection; implicit: TLS from the first byte; none: no "
            "TLS (refused with a password). Certificates are always verified.",
            choices=("starttls", "implicit", "none"),
        ),
        "user": Key("str", None, "The SMTP login (AUTH), when the relay asks for one."),
        "password": Key("secret", None, "The SMTP login's password."),
        "ca_file": Key(
            "path",
            None,
            "A CA bundle (PEM) to trust instead of the system's, for a private CA.",
            target="file",
        ),
        "bounce_address": Key("str", None, help="VERP base for bounces; default: from_address."),
        "dkim_selector": Key("str", None, "The DKIM selector (its public key is in DNS)."),
        "dkim_domain": Key("str", None, "The DKIM signing domain; default: from_address's."),
        "dkim_key_file": Key(
            "path",
            None,
            help="The DKIM private key (PEM; only its owner may read it: mode 600).",
            target="private",
        ),
        "sink": Key("str", "127.0.0.1:2525", help="Where sandbox mail goes (`disparo sink`)."),
        "timeout": Key(
            "duration", timedelta(seconds=30), "How long connecting and each SMTP command may take."
        ),
    }

    @classmethod
    def validate_account(cls, account: AccountSettings) -> list[tuple[str, str]]:
        o = account.options
        found = []
        for key in ("from_address", "bounce_address", "reply_to"):
            value = o.get(key)
            if value and not normalise_email(str(value)).ok:
                found.append((key, f"`{value}` is not a valid e-mail address"))
        if not account.sandbox:
            if not o.get("host"):
                found.append(("host", "missing: the SMTP relay (or set sandbox = true)"))
            if o.get("password") is not None and o.get("tls") == "none":
                found.append(
                    ("tls", 'refusing to send a password without TLS; use "starttls" or "implicit"')
                )
        if bool(o.get("dkim_selector")) != bool(o.get("dkim_key_file")):
            found.append(("dkim_key_file", "give dkim_selector and dkim_key_file together"))
        return found

    def __init__(self, account: AccountSettings, context: ChannelContext) -> None:
        super().__init__(account, context)
        o = account.options
        self.from_address: str = o["from_address"]
        self.domain = self.from_address.rpartition("@")[2].lower()
        self.bounce_address: str = o.get("bounce_address") or self.from_address
        self.pool = SmtpPool(self.concurrency, self._connect)
        self._dkim_key: bytes | None = None
        key_file: Path | None = o.get("dkim_key_file")
        if key_file is not None:
            self._dkim_key = key_file.read_bytes()
        self._dkim_domain = (o.get("dkim_domain") or self.domain).encode()
        self._dkim_selector = (o.get("dkim_selector") or "").encode()
        self._tls_context: ssl.SSLContext | None = None
        self._date: tuple[int, str] = (-1, "")
        self._skeletons: dict[int, _Skeleton] = {}

    def _tls(self) -> ssl.SSLContext | None:
        """The account's TLS context, built once (loading the CA bundle takes ~20 ms of the
        event loop: once per connection, it delayed the first sends of a campaign and so
        bunched them at the relay, D10); none when the account sends without TLS."""
        o = self.account.options
        if self.account.sandbox or o.get("tls", "starttls") == "none":
            return None
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context(
                cafile=str(o["ca_file"]) if o.get("ca_file") else None
            )
        return self._tls_context

    def describe(self) -> str:
        o = self.account.options
        if self.account.sandbox:
            return f"email sandbox → smtp://{o.get('sink')} (the local sink)"
        return f"email via smtp://{o.get('host')}:{self._port()} ({o.get('tls')})"

    def _port(self) -> int:
        o = self.account.options
        if self.account.sandbox:
            return int(str(o.get("sink", "127.0.0.1:2525")).rpartition(":")[2])
        return int(o.get("port") or {"implicit": 465, "none": 25}.get(o.get("tls", ""), 587))

    async def _connect(self) -> aiosmtplib.SMTP:
        """A new session with the relay, step by step (connection and greeting, STARTTLS,
        login), so that a failure says which step failed: ``RelayUnavailable``."""
        import aiosmtplib

        o = self.account.options
        timeout = float(o["timeout"].total_seconds()) if o.get("timeout") else 30.0
        mode = "none" if self.account.sandbox else o.get("tls", "starttls")
        if self.account.sandbox:
            host = str(o.get("sink", "127.0.0.1:2525")).rpartition(":")[0]
        else:
            host = o["host"]
        context = self._tls()
        where = f"{host}:{self._port()}"
        client = aiosmtplib.SMTP(
            hostname=host,
            port=self._port(),
            use_tls=mode == "implicit",
            start_tls=False,
            tls_context=context,
            timeout=timeout,
        )
        phase = "connect"
        try:
            await client.connect()  # the TCP connection (with implicit TLS) and the greeting
            phase = "ehlo"
            await client.ehlo()
            if mode == "starttls":
                phase = "tls"
                await client.starttls()
                phase = "ehlo"
                await client.ehlo()
            if o.get("user") and not self.account.sandbox:
                phase = "login"
                password = o["password"].reveal() if o.get("password") is not None else ""
                await client.login(o["user"], password)
        except Exception as exc:
            client.close()
            raise RelayUnavailable(
                _relay_problem(phase, where, exc, o.get("user"), timeout)
            ) from exc
        except BaseException:  # cancelled (the engine stops): no half-open session left
            client.close()
            raise
        return client

    async def close(self) -> None:
        await self.pool.close()

    async def ready(self, sends: int) -> None:
        await self.pool.warm(sends)

    def normalise(self, address: str) -> Checked:
        return normalise_email(address)

    def prepare(self, campaign: Campaign) -> PreparedEmail:
        if not campaign.content.body or not campaign.content.subject:
            raise CampaignProblem("the campaign has no subject or body")
        o = self.account.options
        unsubscribe = self.context.signer is not None and self.context.config.tracking is not None
        html_source = campaign.content.body
        if unsubscribe and "unsubscribe_url" not in html_source:
            html_source = _with_footer(html_source, FOOTER_HTML)
        tracking = self.context.config.tracking
        links: list[str] = []
        opens = False
        if tracking is not None and self.context.signer is not None:
            opens = tracking.open_tracking
            html_source, links = track_links(
                html_source, clicks=tracking.click_tracking, opens=opens
            )
        # the text part carries the same (tracked) links, without the pixel
        text_source = html_to_text(
            track_links(campaign.content.body, clicks=bool(links), opens=False)[0]
        )
        if unsubscribe and "unsubscribe_url" not in campaign.content.body:
            text_source += FOOTER_TEXT
        sender = campaign.content.sender or self.from_address
        name = campaign.content.from_name or o.get("from_name")
        subject, html, text = (
            compile_text(campaign.content.subject),
            compile_html(html_source),
            compile_text(text_source),
        )
        from jinja2 import TemplateError

        for template in (subject, html, text):
            try:
                trial_render(template, {"unsubscribe_url": "https://example.com/u"})
            except TemplateError as exc:
                raise CampaignProblem(f"the e-mail template cannot be used: {exc}") from None
        # text and {{ name }} only (the usual case): rendered by substitution
        html_fast, text_fast = substitution(html), substitution(text)
        return PreparedEmail(
            campaign_id=campaign.id,
            subject=substitution(subject),
            html=html_fast,
            text=text_fast,
            from_header=_header(_address(name, sender)) if name else sender,
            reply_to=campaign.content.reply_to or o.get("reply_to"),
            envelope_from=self.bounce_address,
            unsubscribe=unsubscribe,
            links=tuple(links),
            opens=opens,
            text_part=QpPart.compile(text_fast),
            html_part=QpPart.compile(html_fast),
        )

    def tracked_links(self, prepared: PreparedEmail) -> tuple[str, ...]:
        return prepared.links

    def compose(
        self, prepared: PreparedEmail, delivery: DeliveryInfo, to: str
    ) -> tuple[str, bytes, str]:
        """(envelope sender, message bytes, Message-ID) for one recipient.

        The header lines the same for every recipient (From, Reply-To, Feedback-ID,
        MIME-Version and the start of Content-Type) are made once per campaign
        (``_Skeleton``); per recipient, its own values are joined between them."""
        signer = self.context.signer
        variables = dict(delivery.variables)
        skeleton = self._skeleton(prepared)
        did = delivery.id
        unsubscribe = ""
        if signer is not None:
            envelope = signer.verp(did, prepared.envelope_from)
            message_id = signer.message_id(did, self.domain)
            tracking = self.context.config.tracking
            if tracking is not None:
                base = tracking.public_url
                if prepared.unsubscribe:
                    url = f"{base}/u/{signer.sign('u', did)}"
                    variables["unsubscribe_url"] = url
                    unsubscribe = f"List-Unsubscribe: <{url}>\r\n{_ONE_CLICK}"
                if prepared.opens:
                    variables[OPEN_VARIABLE] = f"{base}/o/{signer.sign('o', did)}.gif"
                for i in range(1, len(prepared.links) + 1):
                    token = signer.sign("c", prepared.campaign_id, did, i)
                    variables[LINK_VARIABLE.format(i)] = f"{base}/c/{token}"
        else:
            envelope = prepared.envelope_from
            message_id = f"<disparo.{prepared.campaign_id}.{did}@{self.domain}>"
        subject = prepared.subject.render(variables).strip().replace("\n", " ")
        head = (
            f"{skeleton.head}To: {to}\r\n{unsubscribe}Subject: {_header(subject)}\r\n"
            f"Date: {self._date_header()}\r\nMessage-ID: {message_id}\r\n{skeleton.tail}"
            f'{did}"\r\n'
        )
        b = b"=_disparo_%d" % did
        data = b"".join(
            [
                head.encode("utf-8"),
                b"\r\n--",
                b,
                _PLAIN_PART,
                prepared.text_part.encode(variables)
                if prepared.text_part is not None
                else _qp(prepared.text.render(variables)),
                b"\r\n--",
                b,
                _HTML_PART,
                prepared.html_part.encode(variables)
                if prepared.html_part is not None
                else _qp(prepared.html.render(variables)),
                b"\r\n--",
                b,
                b"--\r\n",
            ]
        )
        if self._dkim_key is not None:
            import dkim

            present = skeleton.signed_with_unsubscribe if unsubscribe else skeleton.signed
            signature = dkim.sign(
                data,
                self._dkim_selector,
                self._dkim_domain,
                self._dkim_key,
                include_headers=present,
            )
            data = signature + data
        return envelope, data, message_id

    def _skeleton(self, prepared: PreparedEmail) -> _Skeleton:
        """The campaign's constant header lines, made at its first message."""
        found = self._skeletons.get(prepared.campaign_id)
        if found is None or found.prepared is not prepared:
            found = self._skeletons[prepared.campaign_id] = _Skeleton(prepared, self.account.name)
        return found

    def _date_header(self) -> str:
        """The Date header, formatted once a second."""
        now = self.context.clock.now()
        second = int(now.timestamp())
        if self._date[0] != second:
            self._date = (second, format_datetime(now.astimezone(UTC), usegmt=True))
        return self._date[1]

    async def send(self, prepared: PreparedEmail, delivery: DeliveryInfo) -> SendResult:
        if delivery.normalised:  # the engine normalised it before the suppression check
            checked = Checked(delivery.address)
        else:
            checked = normalise_email(delivery.address)
        if checked.value is None:
            return Failed(checked.error or "not a valid e-mail address")
        try:
            if self._dkim_key is not None:  # dkimpy's RSA is pure Python (~7 ms): not on the loop
                envelope, data, message_id = await asyncio.to_thread(
                    self.compose, prepared, delivery, checked.value
                )
            else:
                envelope, data, message_id = self.compose(prepared, delivery, checked.value)
        except Exception as exc:  # a template that fails for this recipient
            return Failed(f"the message could not be rendered: {exc}")
        utf8 = not (checked.value.isascii() and envelope.isascii())
        import aiosmtplib

        try:
            await self.pool.send(envelope, checked.value, data, utf8)
        except RelayUnavailable as exc:  # never the recipient's fault: the account waits
            return Retry(str(exc), scope="account")
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return _refused(refused.code, refused.message)
        except aiosmtplib.SMTPRecipientRefused as exc:
            return _refused(exc.code, exc.message)
        except aiosmtplib.SMTPSenderRefused as exc:
            return Retry(
                f"the relay refused the sender ({exc.code} {exc.message})", 60, scope="account"
            )
        except aiosmtplib.SMTPServerDisconnected as exc:
            return Retry(f"the relay closed the connection: {exc}", scope="account")
        except aiosmtplib.SMTPResponseException as exc:  # the reply to DATA, for this message
            if exc.code == 421:
                return Retry(f"the relay is closing: {exc.code} {exc.message}", scope="account")
            if 400 <= exc.code < 500:
                return Retry(f"{exc.code} {exc.message}")
            return Failed(f"the relay refused the message: {exc.code} {exc.message}")
        except aiosmtplib.SMTPNotSupported as exc:
            return Failed(f"cannot send to {checked.value}: {exc}")
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Retry(f"connection to the relay failed: {exc}", scope="account")
        except ValueError as exc:
            return Failed(f"the address cannot be used in SMTP: {exc}")
        return Sent(message_id=message_id)


def _refused(code: int, message: str) -> SendResult:
    """SMTP reply to RCPT TO: 4xx temporary, 5xx a hard bounce (D13); 421 is the relay
    closing the session, whoever the recipient."""
    if code == 421:
        return Retry(f"the relay is closing: {code} {message}", scope="account")
    if 400 <= code < 500:
        return Retry(f"{code} {message}")
    return Failed(f"{code} {message}", bounce=True)


class RelayUnavailable(Exception):
    """The relay cannot be used at all: the connection, its greeting, TLS or the login
    failed. The account's problem (its breaker counts it), never a recipient's."""


def _relay_problem(phase: str, where: str, exc: Exception, user: str | None, timeout: float) -> str:
    """What went wrong opening a session with the relay, in an operator's words."""
    import aiosmtplib

    cause = exc.__cause__
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        return f"relay {where} closed the connection ({phase}): {exc}"
    if phase == "connect":
        if isinstance(exc, aiosmtplib.SMTPConnectResponseError):
            return f"relay {where} refused the session: {exc.code} {exc.message}"
        if isinstance(exc, aiosmtplib.SMTPConnectTimeoutError):
            if "ready message" in str(exc):
                return f"relay {where} accepted the connection but did not greet in {timeout:g} s"
            return f"relay {where} did not answer in {timeout:g} s"
        if isinstance(cause, ssl.SSLError):
            return f"TLS with relay {where} failed: {_ssl_reason(cause)}"
        if isinstance(exc, ssl.SSLError):
            return f"TLS with relay {where} failed: {_ssl_reason(exc)}"
        if isinstance(cause, ConnectionRefusedError):
            return f"relay {where} refused the connection"
        return f"cannot connect to relay {where}: {cause or exc}"
    if phase == "tls":
        if isinstance(exc, ssl.SSLError):
            return f"TLS with relay {where} failed: {_ssl_reason(exc)}"
        if "not supported" in str(exc):
            return f'relay {where} does not offer STARTTLS (the account says tls = "starttls")'
        return f"STARTTLS with relay {where} failed: {exc}"
    if phase == "login":
        if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
            return f"relay {where} refused the login of {user}: {exc.code} {exc.message}"
        return f"relay {where}: cannot log in as {user}: {exc}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"relay {where} refused EHLO: {exc.code} {exc.message}"
    return f"relay {where} failed ({phase}): {exc!r}"


def _ssl_reason(exc: ssl.SSLError) -> str:
    verify = getattr(exc, "verify_message", None)
    return str(verify or exc.reason or exc)


@hookimpl
def register_channels(register: Any) -> None:
    register(EmailChannel)


@hookimpl
def register_webhooks(register: Any) -> None:
    from channels._ses import SesWebhooks

    register(SesWebhooks)

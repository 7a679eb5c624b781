"""A loopback SMTP relay (aiosmtpd: STARTTLS or implicit TLS, AUTH) for tests, on its own loop."""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import ssl
import tempfile
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trustme
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    TLSSetupException,
)

from engine.testing.eventually import TIMEOUT, eventually_sync
from tests.peers.common import run_loop, server_context

T = TypeVar("T")
_TIMEOUT = 10.0
TLS_MODES = ("starttls", "implicit", "none")
HOSTNAME = "smtp-peer.disparo.test"  # also spares aiosmtpd a socket.getfqdn() per connection


class _NoLoginDataNoise(logging.Filter):
    """aiosmtpd 1.4.6 itself sets ``Session.login_data`` on every successful AUTH and then
    logs (not warns) that the attribute is deprecated: drop exactly that record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Session.login_data is deprecated")


_mail_log = logging.getLogger("mail.log")  # aiosmtpd's logger
if not any(isinstance(f, _NoLoginDataNoise) for f in _mail_log.filters):
    _mail_log.addFilter(_NoLoginDataNoise())


@dataclass(frozen=True)
class Received:
    """One message the server accepted, as the server saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # raw message, CRLF line endings as sent, dot-stuffing removed
    tls: bool  # the session was encrypted (STARTTLS or implicit)
    auth_user: str | None  # who authenticated, if anyone
    peer: tuple[str, int]
    smtputf8: bool = False  # MAIL FROM carried the SMTPUTF8 parameter (RFC 6531)


@dataclass
class SmtpServer:
    """A running SMTP relay on loopback; ``stop()`` it when done.

    ``messages`` grows (from the server thread) before the client sees the 250 after DATA.
    """

    host: str
    port: int
    tls: str  # "starttls" | "implicit" | "none"
    ca_pem: Path | None  # CA bundle clients must trust, when tls != "none"
    user: str | None  # AUTH credentials, when auth is on
    password: str | None
    messages: list[Received] = field(default_factory=list)
    _auth: bool = field(default=True, repr=False)
    _pipelining: bool = field(default=True, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _open: set[_PeerSMTP] = field(default_factory=set, repr=False)
    _opened: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _rejects: dict[str, str] = field(default_factory=dict, repr=False)
    _tempfails: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False)
    _drop_countdown: int | None = field(default=None, repr=False)
    _tmpdir: Path | None = field(default=None, repr=False)
    #: how new sessions are greeted: None (220), "silent" (never), or a refusal ("554 …")
    _greeting: str | None = field(default=None, repr=False)

    @property
    def connections(self) -> int:
        """How many SMTP connections were opened in total (STARTTLS does not count again)."""
        with self._lock:
            return self._opened

    @property
    def open_connections(self) -> int:
        """How many SMTP connections are open right now (as the server sees them)."""
        with self._lock:
            return len(self._open)

    def stop(self) -> None:
        """Close the listener and abort every connection, then the loop, its thread, PEM files."""
        if self._loop is not None and self._thread is not None:
            try:
                self._call(self._shutdown())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=_TIMEOUT)
                self._loop = self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def reject(
        self,
        address: str,
        code: int = 550,
        text: str = "5.1.1 <address>: Recipient address rejected: User unknown",
    ) -> None:
        """RCPT TO for exactly this address (case-insensitive) answers ``code text`` from now
        on (5xx or 4xx); a literal ``<address>`` in `text` becomes the address as the client sent
        it, in angle brackets (as Postfix echoes it)."""
        with self._lock:
            self._rejects[address.lower()] = f"{code} {text}"

    def tempfail(
        self, address: str, times: int = 1, code: int = 451, text: str = "4.7.1 Try again later"
    ) -> None:
        """The next `times` RCPT TO for this address (case-insensitive) answer ``code text``,
        then it is accepted (or rejected, if ``reject()`` was also called for it). ``<address>``
        in `text` is replaced as in ``reject()``; ``times=0`` cancels a pending tempfail."""
        with self._lock:
            if times > 0:
                self._tempfails[address.lower()] = (times, f"{code} {text}")
            else:
                self._tempfails.pop(address.lower(), None)

    def drop_after(self, messages: int) -> None:
        """After `messages` more accepted messages (once the last one's 250 is out), abort every
        open connection at once, without QUIT/221 or TLS close_notify: the relay crashed. Only
        once; the listener stays up, so new connections work. ``drop_after(0)`` drops now."""
        if messages <= 0:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._abort_all)
            return
        with self._lock:
            self._drop_countdown = messages

    def refuse_sessions(self, code: int = 554, text: str = "5.3.2 No SMTP service here") -> None:
        """New connections are greeted with ``code text`` instead of 220, then closed (a relay
        refusing the client, RFC 5321 3.1)."""
        with self._lock:
            self._greeting = f"{code} {text}"

    def never_greet(self) -> None:
        """New connections are accepted and never greeted (a hung relay, a tarpit)."""
        with self._lock:
            self._greeting = "silent"

    def greet_normally(self) -> None:
        with self._lock:
            self._greeting = None

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> None:
        """Block until at least `count` messages were received, else raise AssertionError."""
        eventually_sync(
            lambda: len(self.messages) >= count,
            what=f"{count} message(s) at the SMTP peer",
            timeout=timeout,
            detail=lambda: f"SMTP peer received {len(self.messages)} message(s), not {count}",
        )

    def wait_idle(self, timeout: float = TIMEOUT) -> None:
        """Block until no connection is open, else raise AssertionError.

        In async tests call it through ``asyncio.to_thread`` once the clients are closed, then
        let the loop turn a few times (``await asyncio.sleep(0)``): a TLS client finishes its
        close_notify exchange on its own loop, and if pytest-asyncio closes that loop first
        the client's socket is reported unclosed (ResourceWarning) whenever it is collected.
        """
        eventually_sync(
            lambda: self.open_connections == 0,
            what="every connection to the SMTP peer to close",
            timeout=timeout,
            detail=lambda: f"SMTP peer still has {self.open_connections} open connection(s)",
        )

    # -- server side (runs on the peer's loop) ---------------------------------------------

    def _rcpt_verdict(self, address: str) -> str | None:
        """The refusal for RCPT TO `address`, or None to accept it."""
        key = address.lower()
        with self._lock:
            left = self._tempfails.get(key)
            if left is not None:
                times, status = left
                if times <= 1:
                    del self._tempfails[key]
                else:
                    self._tempfails[key] = (times - 1, status)
                refusal: str | None = status
            else:
                refusal = self._rejects.get(key)
        return None if refusal is None else refusal.replace("<address>", f"<{address}>")

    def _record(self, message: Received) -> bool:
        """Store an accepted message; True when it is the one after which to drop everything."""
        with self._lock:
            self.messages.append(message)
            if self._drop_countdown is None:
                return False
            self._drop_countdown -= 1
            if self._drop_countdown > 0:
                return False
            self._drop_countdown = None
            return True

    def _connected(self, conn: _PeerSMTP) -> None:
        with self._lock:
            self._opened += 1
            self._open.add(conn)

    def _disconnected(self, conn: _PeerSMTP) -> None:
        with self._lock:
            self._open.discard(conn)

    def _abort_all(self) -> None:
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            conn.abort()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_TIMEOUT)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        self._abort_all()
        await self._server.wait_closed()


class _PeerSMTP(SMTP):
    """aiosmtpd's SMTP protocol that reports its connection to the peer and can be aborted."""

    def __init__(self, peer: SmtpServer, handler: _Handler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._peer = peer
        self._implicit_tls = False
        self._raw_transport: asyncio.BaseTransport | None = None
        self.drop_pending = False
        self._gone: asyncio.Future[None] = kwargs["loop"].create_future()

    @property
    def encrypted(self) -> bool:
        return self._implicit_tls or self._tls_protocol is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self._original_transport is None  # STARTTLS calls this again, after setting it
        if first:
            self._raw_transport = transport
            self._implicit_tls = transport.get_extra_info("ssl_object") is not None
        super().connection_made(transport)
        if first:
            self._peer._connected(self)

    def connection_lost(self, error: Exception | None) -> None:
        self._peer._disconnected(self)
        if not self._gone.done():
            self._gone.set_result(None)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        with self._peer._lock:
            greeting = self._peer._greeting
        if greeting is None:
            await super()._handle_client()
            return
        if greeting == "silent":
            try:
                await self._gone  # until the client gives up (EOF cancels this) or the peer stops
            finally:
                if self.transport is not None:
                    self.transport.close()
            return
        await self.push(greeting)
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection like a crashed process: no reply, no TLS close_notify."""
        transport = self._original_transport or self._raw_transport
        if transport is not None and not transport.is_closing():
            transport.abort()  # type: ignore[attr-defined]

    async def smtp_DATA(self, arg: str) -> None:
        await super().smtp_DATA(arg)  # the 250 reply is written by now
        if self.drop_pending:
            self.drop_pending = False
            self._peer._abort_all()


class _Handler:
    """aiosmtpd hooks: AUTH on/off, scripted RCPT refusals, recording of accepted messages."""

    def __init__(self, peer: SmtpServer) -> None:
        self._peer = peer

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # the new-style hook takes this over from aiosmtpd
        if not self._peer._auth:
            responses = [r for r in responses if not r.startswith("250-AUTH")]
        if self._peer._pipelining:  # as Postfix does (aiosmtpd reads pipelined commands fine)
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_AUTH(
        self, server: SMTP, session: Session, envelope: Envelope, args: list[str]
    ) -> Any:
        if not self._peer._auth:
            return "503 5.5.1 Error: authentication not enabled"
        return MISSING  # aiosmtpd runs the PLAIN/LOGIN exchange, then authenticate()

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        peer = self._peer
        if isinstance(data, LoginPassword) and peer.user is not None and peer.password is not None:
            login = data.login.decode("utf-8", "replace")
            if login == peer.user and hmac.compare_digest(data.password, peer.password.encode()):
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self._peer._rcpt_verdict(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(server, _PeerSMTP)
        host, port = session.peer[:2]
        message = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""),
            tls=server.encrypted,
            auth_user=session.auth_data if session.authenticated else None,
            peer=(str(host), int(port)),
            smtputf8=envelope.smtp_utf8,
        )
        server.drop_pending = self._peer._record(message)
        return f"250 2.0.0 Ok: queued as {uuid.uuid4().hex[:12].upper()}"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client that refuses our certificate: expected in tests, not worth a traceback.
            return "454 4.7.0 TLS handshake failed"
        logging.getLogger("mail.log").exception("SMTP peer: unexpected error")
        return f"451 4.3.0 Error: ({error.__class__.__name__}) {error}"


def start_smtp_server(
    *,
    tls: str = "starttls",
    auth: bool = True,
    user: str = "disparo",
    password: str = "s3cret-smtp",
    ca: trustme.CA | None = None,
    cert_hostnames: tuple[str, ...] = ("127.0.0.1",),
    smtputf8: bool = True,
    pipelining: bool = True,
) -> SmtpServer:
    """Run an SMTP relay on 127.0.0.1 (random port) from a daemon thread.

    ``tls="starttls"`` advertises STARTTLS and requires it before MAIL (530 otherwise);
    ``"implicit"`` speaks TLS from the first byte (like port 465); ``"none"`` is plain. The
    certificate is issued for `cert_hostnames` by `ca` (a fresh CA by default) whose PEM is
    ``ca_pem``. With `auth`, AUTH PLAIN/LOGIN as `user`/`password` is required before MAIL
    (530 otherwise, 535 for wrong credentials), and is only offered over TLS unless
    ``tls="none"``. Without it no AUTH is advertised and AUTH answers 503. ``smtputf8``
    advertises SMTPUTF8 (RFC 6531); without it, a UTF-8 envelope is refused as aiosmtpd does.
    ``pipelining`` advertises PIPELINING (RFC 2920), as Postfix does.
    """
    if tls not in TLS_MODES:
        raise ValueError(f"tls must be one of {TLS_MODES}, not {tls!r}")
    peer = SmtpServer(
        host="127.0.0.1",
        port=0,
        tls=tls,
        ca_pem=None,
        user=user if auth else None,
        password=password if auth else None,
        _auth=auth,
        _pipelining=pipelining,
    )
    context: ssl.SSLContext | None = None
    if tls != "none":
        ca = ca or trustme.CA()
        context = server_context(ca, cert_hostnames)
        peer._tmpdir = Path(tempfile.mkdtemp(prefix="disparo-smtp-"))
        peer.ca_pem = peer._tmpdir / "ca.pem"
        ca.cert_pem.write_to_path(str(peer.ca_pem))
    handler = _Handler(peer)
    loop = asyncio.new_event_loop()

    def protocol() -> _PeerSMTP:
        conn = _PeerSMTP(
            peer,
            handler,
            hostname=HOSTNAME,
            enable_SMTPUTF8=smtputf8,
            tls_context=context if tls == "starttls" else None,
            require_starttls=tls == "starttls",
            auth_required=auth,
            # Passed as True, then relaxed: aiosmtpd warns when AUTH is required without TLS.
            auth_require_tls=True,
            authenticator=handler.authenticate,
            loop=loop,
        )
        # AUTH in the clear only on a plain server; over implicit TLS aiosmtpd cannot tell
        # that the connection is encrypted (it only knows about its own STARTTLS).
        conn._auth_require_tls = tls == "starttls"
        return conn

    peer._loop = loop
    peer._thread = threading.Thread(target=run_loop, args=(loop,), name="smtp-peer", daemon=True)
    peer._thread.start()

    async def listen() -> asyncio.Server:
        server_ssl = context if tls == "implicit" else None
        return await loop.create_server(protocol, "127.0.0.1", 0, ssl=server_ssl)

    try:
        peer._server = peer._call(listen())
    except BaseException:
        loop.call_soon_threadsafe(loop.stop)
        peer._thread.join(timeout=_TIMEOUT)
        peer._loop = peer._thread = None
        peer.stop()  # deletes the PEM files
        raise
    peer.port = int(peer._server.sockets[0].getsockname()[1])
    return peer

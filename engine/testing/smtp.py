"""An SMTP sink for tests: aiosmtpd on 127.0.0.1 (a free port), plain SMTP without
authentication, keeping every message it accepts. Point an e-mail account at it with
``sandbox = true`` and ``sink = "127.0.0.1:<port>"``, or any SMTP client at ``host:port``."""

from __future__ import annotations

import asyncio
import threading
import warnings
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

_TIMEOUT = 10.0


@dataclass(frozen=True)
class SinkMessage:
    """One message the sink accepted: its envelope and its bytes as sent (CRLF line ends,
    dot-stuffing removed)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def parsed(self) -> EmailMessage:
        """The message parsed (``msg["Subject"]``, ``msg.get_body(("plain",))``…)."""
        return message_from_bytes(self.data, policy=policy.default)


@dataclass
class SmtpSink:
    """A running sink; ``stop()`` it (or use it as a context manager). A message is in
    ``messages`` before the client reads the ``250`` that accepts it."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[SinkMessage] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _open: set[asyncio.BaseTransport] = field(default_factory=set, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, as an e-mail account's ``sink`` key takes it."""
        return f"{self.host}:{self.port}"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd's hook: keep the message."""
        raw = envelope.original_content or b""
        self.messages.append(
            SinkMessage(envelope.mail_from or "", tuple(envelope.rcpt_tos), bytes(raw))
        )
        return "250 2.0.0 Ok: kept by the test sink"

    def stop(self) -> None:
        """Close the listener and every open connection, then the sink's loop and thread."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
                for transport in list(self._open):
                    transport.abort()  # type: ignore[attr-defined]
                await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(_TIMEOUT)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_TIMEOUT)

    def __enter__(self) -> SmtpSink:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _run(loop: asyncio.AbstractEventLoop) -> None:
    """The sink's thread: run its loop until stopped, then end what is left and close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        left = asyncio.all_tasks(loop)
        for task in left:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def start_smtp_sink() -> SmtpSink:
    """Start a sink on 127.0.0.1 (a free port) in a daemon thread with its own event loop,
    so sync and async tests can use it alike."""
    with warnings.catch_warnings():  # aiosmtpd imports deprecated names of its own
        warnings.simplefilter("ignore", DeprecationWarning)
        from aiosmtpd.smtp import SMTP

    sink = SmtpSink()
    loop = asyncio.new_event_loop()

    class _Connection(SMTP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if self._original_transport is None:
                sink._open.add(transport)
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            sink._open.discard(self._original_transport or self.transport)
            super().connection_lost(error)

    def protocol() -> Any:
        return _Connection(sink, hostname="disparo-sink.test", enable_SMTPUTF8=True, loop=loop)

    thread = threading.Thread(target=_run, args=(loop,), name="smtp-sink", daemon=True)
    thread.start()
    sink._loop, sink._thread = loop, thread

    async def listen() -> asyncio.Server:
        return await loop.create_server(protocol, sink.host, 0)

    try:
        sink._server = asyncio.run_coroutine_threadsafe(listen(), loop).result(_TIMEOUT)
    except BaseException:
        sink.stop()
        raise
    sink.port = int(sink._server.sockets[0].getsockname()[1])
    return sink

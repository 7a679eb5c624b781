"""Loopback FTP and explicit FTPS servers (pyftpdlib) for tests, strict about TLS session reuse."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from OpenSSL import SSL

# pyOpenSSL has no public "was this session resumed?": use OpenSSL's SSL_session_reused directly.
from OpenSSL._util import lib as _openssl

with warnings.catch_warnings():
    # pyftpdlib's handlers import asynchat and asyncore, deprecated since Python 3.11.
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
    from pyftpdlib.ioloop import IOLoop
    from pyftpdlib.servers import FTPServer

# With a handler in place pyftpdlib does not add its own stderr logger; records still propagate.
logging.getLogger("pyftpdlib").addHandler(logging.NullHandler())

PERMISSIONS = "elradfmwMT"
REFUSAL_522 = "522 SSL connection failed: session reuse required."
_POLL_SECONDS = 0.02  # how long stop() may wait for the serving loop to notice


@dataclass
class FtpServer:
    """A running FTP (or explicit FTPS, when ``tls``) server on loopback; ``stop()`` it when done.

    ``transfers`` counts completed RETRs and ``session_reuse_refusals`` the protected data
    connections refused with 522 because their TLS session was not resumed; both are bumped
    before the client sees the 226 / 522 reply.
    """

    host: str
    port: int
    root: Path
    user: str
    password: str
    tls: bool
    ca_pem: Path | None
    transfers: int = 0
    session_reuse_refusals: int = 0
    _server: Any = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _drop_after: int | None = field(default=None, repr=False)
    _drop_upload_after: int | None = field(default=None, repr=False)
    _tmpdir: Path | None = field(default=None, repr=False)

    def stop(self) -> None:
        """Disconnect every client, close the server, join its thread, delete the PEM files."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def drop_next_transfer(self, after_bytes: int) -> None:
        """The next RETR sends `after_bytes` bytes then drops the data AND control connection
        abruptly (no 226/426 reply, no TLS close_notify): a connection lost mid-download.
        Only once. Use a file longer than `after_bytes`."""
        with self._lock:
            self._drop_after = after_bytes

    def _take_drop(self) -> int | None:
        with self._lock:
            after, self._drop_after = self._drop_after, None
        return after

    def drop_next_upload(self, after_bytes: int) -> None:
        """The next STOR keeps `after_bytes` bytes of what it receives, then drops the data
        AND control connection abruptly (no reply): an upload lost mid-file. Only once; plain FTP
        only (the TLS data channel reads through its own handshake code)."""
        with self._lock:
            self._drop_upload_after = after_bytes

    def _take_upload_drop(self) -> int | None:
        with self._lock:
            after, self._drop_upload_after = self._drop_upload_after, None
        return after


def make_ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


def _tls_context(certfile: str) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_COMPRESSION)
    context.use_certificate_chain_file(certfile)
    context.use_privatekey_file(certfile)
    context.set_session_id(b"disparo-ftp-peer")
    return context


class _PeerDTP:
    """Data channel behaviour shared by plain and TLS: count RETRs, cut one short when armed."""

    cmd_channel: Any
    file_obj: Any
    receive: bool
    transfer_finished: bool
    ioloop: Any
    _budget: int | None = None
    _armed_checked = False
    _dropping = False
    _counted = False
    _upload_budget: int | None = None
    _upload_checked = False

    def handle_read(self) -> None:
        if self.receive and not self._upload_checked and self.file_obj is not None:
            self._upload_checked = True  # first read of a STOR
            self._upload_budget = self.cmd_channel.peer._take_upload_drop()
        if self._upload_budget is None or self._dropping:
            super().handle_read()  # type: ignore[misc]
            return
        try:
            chunk = self.recv(65536)  # type: ignore[attr-defined]
        except OSError:
            return
        keep = chunk[: self._upload_budget]
        if keep:
            self.file_obj.write(keep)
            self.file_obj.flush()
        self._upload_budget -= len(keep)
        if self._upload_budget == 0 or not chunk:
            self._dropping = True
            self.ioloop.call_later(0, self._drop, _errback=self.handle_error)  # type: ignore[attr-defined]

    def send(self, data: bytes) -> int:
        if not self._armed_checked and self.file_obj is not None and not self.receive:
            self._armed_checked = True  # first write of a RETR (listings have no file_obj)
            self._budget = self.cmd_channel.peer._take_drop()
        if self._budget is None:
            return int(super().send(data))
        sent = int(super().send(bytes(data[: self._budget]))) if self._budget else 0
        self._budget -= sent
        if self._budget == 0 and not self._dropping:
            self._dropping = True
            # Not from inside send(): asynchat still updates its buffers after we return.
            self.ioloop.call_later(0, self._drop, _errback=self.handle_error)
        return sent

    def _drop(self) -> None:
        control = self.cmd_channel
        for channel in (self, control):
            channel._error = True  # makes pyftpdlib's TLS close() skip the close_notify
        self._resp = ()  # and the data channel reply nothing
        self.close()
        control.close()

    def close(self) -> None:
        finished_retr = self.transfer_finished and self.file_obj is not None and not self.receive
        if finished_retr and not self._counted:
            self._counted = True
            self.cmd_channel.peer.transfers += 1
        super().close()


class _PlainDTP(_PeerDTP, DTPHandler):
    # pyftpdlib binds ``handle_read_event`` to its own ``handle_read``: route it to ours
    handle_read_event = _PeerDTP.handle_read


class _TlsDTP(_PeerDTP, TLS_DTPHandler):
    """Refuses with 522, like vsftpd's ``require_ssl_reuse``, a protected data connection whose
    TLS session was not resumed. The check runs once both the handshake is done and the
    transfer command has arrived, whatever their order."""

    _refused = False

    def handle_ssl_established(self) -> None:
        self._check_session_reuse()

    def push(self, data: bytes) -> None:
        super().push(data)
        self._check_session_reuse()

    def push_with_producer(self, producer: Any) -> None:
        super().push_with_producer(producer)
        self._check_session_reuse()

    def enable_receiving(self, type: str, cmd: str) -> None:
        super().enable_receiving(type, cmd)
        self._check_session_reuse()

    def _check_session_reuse(self) -> None:
        if (
            self._refused
            or self._closed
            or not self._ssl_established
            or not self._initialized
            or not self.cmd_channel.strict_session_reuse
            or _openssl.SSL_session_reused(self.socket._ssl)
        ):
            return
        self._refused = True
        self.cmd_channel.peer.session_reuse_refusals += 1
        self.discard_buffers()
        self._resp = (REFUSAL_522, logging.getLogger("pyftpdlib").info)
        self.close()


class _PlainHandler(FTPHandler):
    peer: FtpServer
    dtp_handler = _PlainDTP
    use_sendfile = False  # every byte goes through DTP.send(), where a drop can cut it
    auth_failed_timeout = 0  # pyftpdlib waits 3 s before a 530: tests have no time to lose


class _TlsHandler(TLS_FTPHandler):
    peer: FtpServer
    strict_session_reuse = True
    dtp_handler = _TlsDTP
    use_sendfile = False
    auth_failed_timeout = 0
    tls_control_required = True
    tls_data_required = True

    @classmethod
    def get_ssl_context(cls) -> SSL.Context:
        # A fresh context per control connection (as vsftpd's process per session): its
        # session cache and ticket keys are private, so a data connection can only resume a
        # session born on this client's control (or earlier data) connection.
        return _tls_context(cls.certfile)


def _serve(server: Any, stopping: threading.Event) -> None:
    # ioloop.loop, not serve_forever: non-blocking serve_forever logs "starting" on every call.
    wait = _POLL_SECONDS
    try:
        while not stopping.is_set():
            soonest = server.ioloop.loop(wait, blocking=False)  # seconds to the next timer
            wait = _POLL_SECONDS if soonest is None else min(_POLL_SECONDS, soonest)
    finally:
        server.close_all()


def start_ftp_server(
    root: Path,
    *,
    tls: bool = False,
    cert_hostnames: tuple[str, ...] = ("127.0.0.1",),
    ca: trustme.CA | None = None,
    self_signed: bool = False,
    user: str = "disparo",
    password: str = "s3cret-ftp",
    strict_session_reuse: bool = True,
    permissions: str = PERMISSIONS,
) -> FtpServer:
    """Serve `root` over FTP on 127.0.0.1 (random port) from a daemon thread.

    With ``tls`` the server speaks explicit FTPS (AUTH TLS) and requires TLS on both control
    and data; its certificate is issued for `cert_hostnames` by `ca` (a fresh CA by default),
    whose PEM is ``ca_pem``. ``self_signed`` issues it from another, unrelated CA instead, so
    clients trusting ``ca_pem`` refuse it. ``strict_session_reuse`` answers 522 to protected
    data connections that do not resume the TLS session (stdlib ``FTP_TLS`` does not); it
    holds for TLS 1.2 and 1.3 alike because the server asks OpenSSL whether the session was
    resumed and each control connection has its own session cache and ticket keys.
    ``permissions`` are pyftpdlib's letters for the user ("" refuses even listing).
    """
    root.mkdir(parents=True, exist_ok=True)
    authorizer = DummyAuthorizer()
    authorizer.add_user(user, password, str(root), perm=permissions)
    handle = FtpServer("127.0.0.1", 0, root, user, password, tls, None)
    attrs: dict[str, Any] = {"peer": handle, "authorizer": authorizer}
    base: type[Any] = _PlainHandler
    if tls:
        ca = ca or make_ca()
        issuer = make_ca() if self_signed else ca
        handle._tmpdir = Path(tempfile.mkdtemp(prefix="disparo-ftps-"))
        certfile = handle._tmpdir / "server.pem"
        issuer.issue_cert(*cert_hostnames).private_key_and_cert_chain_pem.write_to_path(
            str(certfile)
        )
        handle.ca_pem = handle._tmpdir / "ca.pem"
        ca.cert_pem.write_to_path(str(handle.ca_pem))
        attrs |= {"certfile": str(certfile), "strict_session_reuse": strict_session_reuse}
        base = _TlsHandler
    handler = type("PeerHandler", (base,), attrs)
    server = FTPServer(("127.0.0.1", 0), handler, ioloop=IOLoop())
    handle.port = int(server.address[1])
    handle._server = server
    handle._thread = threading.Thread(
        target=_serve, args=(server, handle._stopping), name=f"ftp-peer-{handle.port}", daemon=True
    )
    handle._thread.start()
    return handle

"""A loopback IMAP server (pymap, in-memory mailboxes) for tests, on its own loop.

pymap is a pure-Python asyncio IMAP4rev1 server; its ``dict`` backend keeps users and mailboxes
in memory. This module wires it programmatically (no CLI, no config files): one user, a
trustme certificate, implicit TLS, STARTTLS or plain, and two fixes over the stock ``dict``
backend so that it behaves like Dovecot for what the engine's bounce poller does:

* custom keywords (``$DisparoUnparsed``) are stored with the message (PERMANENTFLAGS has
  ``\\*``); stock pymap keeps them only for the session that set them;
* with STARTTLS, LOGIN is refused (``LOGINDISABLED``) until the client has upgraded; stock
  pymap lets loopback clients log in in the clear.

pymap relies on private internals here (``MailboxSet._set`` and friends): the ``dev`` extra
pins ``pymap>=0.36.7,<0.37``.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import tempfile
import threading
import uuid
from argparse import Namespace
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import trustme
from proxyprotocol.sock import SocketInfoLocal
from pymap.backend.dict import Config as DictConfig
from pymap.backend.dict import Login
from pymap.backend.dict.filter import FilterSet
from pymap.backend.dict.mailbox import MailboxData, MailboxSet
from pymap.concurrent import Subsystem
from pymap.exceptions import MailboxError as PymapMailboxError
from pymap.imap import IMAPServer
from pymap.mailbox import MailboxSnapshot
from pymap.parsing.commands import Commands
from pymap.parsing.message import AppendMessage
from pymap.parsing.response import ResponseCode
from pymap.parsing.specials.flag import Flag, Wildcard
from pymap.user import UserMetadata
from pysasl.hashing import Cleartext

from engine.testing.eventually import TIMEOUT, eventually_sync
from tests.peers.common import run_loop, server_context

T = TypeVar("T")
_TIMEOUT = 10.0
TLS_MODES = ("implicit", "starttls", "none")
HOSTNAME = "imap-peer.disparo.test"  # in the greeting; spares pymap a socket.getfqdn()


# -- pymap adjustments -------------------------------------------------------------------------


class _Snapshot(MailboxSnapshot):
    """``* FLAGS`` lists the defined flags, without the ``\\*`` that PERMANENTFLAGS carries."""

    __slots__ = ()

    @property
    def flags(self) -> frozenset[Flag]:
        return (self.permanent_flags - {Wildcard}) | self.session_flags


class _KeywordMailbox(MailboxData):
    """A dict-backend mailbox that stores any keyword, as PERMANENTFLAGS ``\\*`` promises."""

    @property
    def permanent_flags(self) -> frozenset[Flag]:
        return super().permanent_flags | {Wildcard}

    async def snapshot(self) -> MailboxSnapshot:
        s = await super().snapshot()
        return _Snapshot(
            s.mailbox_id,
            s.readonly,
            s.uid_validity,
            s.permanent_flags,
            s.session_flags,
            s.exists,
            s.recent,
            s.unseen,
            s.first_unseen,
            s.next_uid,
        )


class _MailboxSet(MailboxSet):
    """The user's folders; with `keywords`, every mailbox is a ``_KeywordMailbox``.

    `separator` is the hierarchy delimiter the server reports (``LIST "" ""``). With ``"."``
    (stock Dovecot with Maildir++) a name holding ``/`` is refused as Dovecot does:
    ``NO [CANNOT] Invalid mailbox name``.
    """

    def __init__(self, keywords: bool, separator: str = "/") -> None:
        super().__init__()
        self._separator = separator
        self._mailbox_type = _KeywordMailbox if keywords else MailboxData
        self._inbox = self._mailbox_type(self._content_cache, self._thread_cache)

    @property
    def delimiter(self) -> str:
        return self._separator

    async def add_mailbox(self, name: str) -> Any:
        if self._separator != "/" and "/" in name:
            raise PymapMailboxError(name, b"Invalid mailbox name", ResponseCode.of(b"CANNOT"))
        async with self._set_lock.write_lock():
            if name in self._set:
                raise ValueError(name)  # pymap answers NO [ALREADYEXISTS]
            self._set[name] = mbx = self._mailbox_type(self._content_cache, self._thread_cache)
            return mbx.mailbox_id

    async def names(self) -> list[str]:
        async with self._set_lock.read_lock():
            return ["INBOX", *sorted(self._set)]


class _Config(DictConfig):
    def __init__(self, *args: Any, move: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._move = move

    @property
    def greeting(self) -> bytes:
        return b"Server ready " + HOSTNAME.encode("ascii")

    @property
    def login_capability(self) -> Sequence[bytes]:
        caps = list(super().login_capability)
        return caps if self._move else [c for c in caps if c != b"MOVE"]

    @property
    def commands(self) -> Commands:
        commands = super().commands
        if not self._move:
            commands.deregister(b"MOVE")  # answered BAD "Unknown command", as RFC 3501 servers do
            commands.deregister(b"UID MOVE")
        return commands


class _RemoteSocketInfo(SocketInfoLocal):
    """pymap offers LOGIN in the clear to loopback clients; pretend they come from afar."""

    __slots__ = ()

    @property
    def from_localhost(self) -> bool:
        return False


# -- the handle --------------------------------------------------------------------------------


@dataclass
class ImapServer:
    """A running IMAP server on loopback with one user; ``stop()`` it when done.

    Folder names are as the server decodes them (modified UTF-7 undone); the hierarchy
    delimiter is `separator` (``/`` unless started with another). Flags are IMAP spellings:
    ``\\Seen``, ``\\Deleted``, ``$Keyword``.
    """

    host: str
    port: int
    tls: str  # "implicit" | "starttls" | "none"
    ca_pem: Path | None  # CA bundle clients must trust, when tls != "none"
    user: str
    password: str
    move: bool = True  # MOVE advertised after LOGIN (and UID MOVE understood)
    separator: str = "/"  # the hierarchy delimiter LIST reports
    _mailboxes: _MailboxSet | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _server: asyncio.Server | None = field(default=None, repr=False)
    _open: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)
    _opened: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _tmpdir: Path | None = field(default=None, repr=False)

    @property
    def connections(self) -> int:
        """How many connections were accepted in total (STARTTLS does not count again)."""
        with self._lock:
            return self._opened

    @property
    def open_connections(self) -> int:
        """How many connections are open right now, as the server sees them."""
        with self._lock:
            return len(self._open)

    def deliver(self, raw: bytes, folder: str = "INBOX", *, flags: Iterable[str] = ()) -> int:
        """Put `raw` into `folder` (created if missing) as a new, \\Recent message, as if the
        MTA delivered it, with permanent `flags` (e.g. ``{"$DisparoUnparsed"}``); return its UID.
        Clients with the folder selected see it at their next command (NOOP, SEARCH...)."""
        when = datetime.now(UTC)
        message = AppendMessage(raw, when, frozenset(Flag(f) for f in flags))

        async def append() -> int:
            mailbox = await self._folder(folder, create=True)
            return (await mailbox.append(message, recent=True)).uid

        return self._call(append())

    def create_folder(self, folder: str) -> None:
        """Create `folder` (no error when it exists), as a prepared account would have it."""
        self._call(self._folder(folder, create=True))

    def messages(self, folder: str = "INBOX") -> list[tuple[bytes, set[str]]]:
        """The messages in `folder` now, in UID order: raw bytes as delivered/appended and the
        permanent flags (``\\Recent`` is per session, not listed). Expunged ones are gone,
        ``\\Deleted``-but-not-expunged ones are still here. KeyError for a missing folder."""

        async def read() -> list[tuple[bytes, set[str]]]:
            mailbox = await self._folder(folder, create=False)
            found = [
                (msg.uid, bytes(msg._content or b""), {str(f) for f in msg.permanent_flags})
                async for msg in mailbox.messages()
            ]
            return [(raw, flags) for _, raw, flags in sorted(found, key=lambda m: m[0])]

        return self._call(read())

    def folders(self) -> list[str]:
        """Every folder of the user: ``INBOX`` first, then the others sorted."""
        assert self._mailboxes is not None
        return self._call(self._mailboxes.names())

    def wait_idle(self, timeout: float = TIMEOUT) -> None:
        """Block until no connection is open (clients logged out), else raise AssertionError."""
        eventually_sync(
            lambda: self.open_connections == 0,
            what="every connection to the IMAP peer to close",
            timeout=timeout,
            detail=lambda: f"IMAP peer still has {self.open_connections} open connection(s)",
        )

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

    # -- server side (runs on the peer's loop) ---------------------------------------------

    async def _folder(self, name: str, *, create: bool) -> MailboxData:
        assert self._mailboxes is not None
        if name.upper() == "INBOX":
            name = "INBOX"
        elif create and name not in await self._mailboxes.names():
            await self._mailboxes.add_mailbox(name)
        return await self._mailboxes.get_mailbox(name)

    def _connected(self, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._opened += 1
            self._open.add(writer)

    def _disconnected(self, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._open.discard(writer)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            coro.close()
            raise RuntimeError("the IMAP peer is stopped")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_TIMEOUT)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        with self._lock:
            writers = list(self._open)
        for writer in writers:
            writer.transport.abort()
        await self._server.wait_closed()


def start_imap_server(
    *,
    tls: str = "implicit",
    user: str = "bounces",
    password: str = "s3cret-imap",
    ca: trustme.CA | None = None,
    cert_hostnames: tuple[str, ...] = ("127.0.0.1",),
    move: bool = True,
    keywords: bool = True,
    separator: str = "/",
) -> ImapServer:
    """Run an IMAP server on 127.0.0.1 (random port) from a daemon thread, startup ~10 ms.

    ``tls="implicit"`` speaks TLS from the first byte (like port 993); ``"starttls"``
    advertises STARTTLS and ``LOGINDISABLED`` (LOGIN answers NO) until the client upgrades;
    ``"none"`` is plain, LOGIN allowed. The certificate is issued for `cert_hostnames` by `ca`
    (a fresh CA by default) whose PEM is ``ca_pem``. One account, `user`/`password` (LOGIN and
    AUTHENTICATE PLAIN/LOGIN; a wrong password answers NO), with an empty INBOX.

    After LOGIN the server advertises IMAP4rev1 UIDPLUS MOVE CHILDREN IDLE...; ``move=False``
    drops MOVE, and MOVE/UID MOVE then answer BAD, so clients must COPY + STORE \\Deleted +
    EXPUNGE. ``keywords=False`` makes it a server without custom keywords: PERMANENTFLAGS lacks
    ``\\*`` and a STORE of ``$Keyword`` lasts only for that session (stock pymap behaviour).
    ``separator="."`` makes it a stock Dovecot Maildir++ account: LIST reports ``.`` as the
    hierarchy delimiter and CREATE of a name holding ``/`` answers
    ``NO [CANNOT] Invalid mailbox name``.
    """
    if tls not in TLS_MODES:
        raise ValueError(f"tls must be one of {TLS_MODES}, not {tls!r}")
    peer = ImapServer(
        host="127.0.0.1",
        port=0,
        tls=tls,
        ca_pem=None,
        user=user,
        password=password,
        move=move,
        separator=separator,
    )
    if tls != "none":
        ca = ca or trustme.CA()
        context = server_context(ca, cert_hostnames)
        peer._tmpdir = Path(tempfile.mkdtemp(prefix="disparo-imap-"))
        peer.ca_pem = peer._tmpdir / "ca.pem"
        ca.cert_pem.write_to_path(str(peer.ca_pem))
    else:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # unused, spares env lookups
    loop = asyncio.new_event_loop()
    peer._loop = loop
    peer._thread = threading.Thread(target=run_loop, args=(loop,), name="imap-peer", daemon=True)
    peer._thread.start()

    async def listen() -> asyncio.Server:
        config = _Config(
            Namespace(passlib_cfg=None, proxy_protocol=None),
            host="127.0.0.1",
            port=0,
            move=move,
            demo_data=False,
            demo_user=user,
            demo_password=password,
            ssl_context=context,
            tls_enabled=tls == "starttls",  # STARTTLS offered, LOGIN only after it
            hash_context=Cleartext(),  # no 500 000-round PBKDF2 per LOGIN
            cpu_subsystem=Subsystem.for_asyncio(),  # no thread pool to shut down
            invalid_user_sleep=0.0,
            reject_dnsbl=False,
        )
        config.apply_context()
        login = Login(config)
        login.users_dict[user] = UserMetadata(config, user, password=password)
        peer._mailboxes = _MailboxSet(keywords, separator)
        config.set_cache[user] = (peer._mailboxes, FilterSet())
        imap = IMAPServer(login, config)
        socket_info = _RemoteSocketInfo if tls == "starttls" else SocketInfoLocal

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            peer._connected(writer)
            try:
                config.apply_context()
                await imap(reader, writer, socket_info(writer, unique_id=uuid.uuid4().bytes))
            finally:
                peer._disconnected(writer)

        return await asyncio.start_server(
            connected, "127.0.0.1", 0, ssl=context if tls == "implicit" else None
        )

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

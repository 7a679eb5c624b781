"""A loopback SFTP server (asyncssh, chrooted, no shell) for tests, on its own event loop."""

from __future__ import annotations

import asyncio
import atexit
import hmac
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncssh

from tests.peers.common import run_loop

T = TypeVar("T")
_TIMEOUT = 10.0


@dataclass
class SftpServer:
    """A running SFTP server on loopback; ``stop()`` it when done.

    ``reads_completed`` counts files opened for reading whose whole content was served before
    the client closed them (bumped before the client sees the close reply).
    """

    host: str
    port: int
    root: Path
    user: str
    password: str
    host_key_path: Path
    fingerprint: str
    known_hosts_line: str
    client_key_path: Path | None
    reads_completed: int = 0
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _acceptor: Any = field(default=None, repr=False)
    _connections: set[asyncssh.SSHServerConnection] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _drop_after: int | None = field(default=None, repr=False)
    _drop_upload_after: int | None = field(default=None, repr=False)
    _rename_gate: asyncio.Event | None = field(default=None, repr=False)
    #: renames waiting at the gate (``hold_renames``)
    renames_held: int = 0

    def stop(self) -> None:
        """Close the listener and every connection, then the event loop and its thread."""
        if self._loop is None or self._thread is None:
            return
        try:
            self._call(self._shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=_TIMEOUT)
            self._loop = self._thread = None

    def drop_next_transfer(self, after_bytes: int) -> None:
        """The next file opened for reading serves at most `after_bytes` bytes in total, then
        the whole SSH connection is closed abruptly (no SFTP reply, no SSH disconnect)."""
        with self._lock:
            self._drop_after = after_bytes

    def _take_drop(self) -> int | None:
        with self._lock:
            after, self._drop_after = self._drop_after, None
        return after

    def drop_next_upload(self, after_bytes: int) -> None:
        """The next file opened for writing keeps at most `after_bytes` bytes, then the whole
        SSH connection is closed abruptly: an upload lost mid-file."""
        with self._lock:
            self._drop_upload_after = after_bytes

    def _take_upload_drop(self) -> int | None:
        with self._lock:
            after, self._drop_upload_after = self._drop_upload_after, None
        return after

    def hold_renames(self) -> None:
        """Renames wait (the upload stays under its temporary name, complete) until
        ``release_renames()``: the moment between writing a file and renaming it."""

        async def hold() -> None:
            self._rename_gate = asyncio.Event()

        self._call(hold())

    def release_renames(self) -> None:
        """Let the held renames (and the next ones) go through."""

        async def release() -> None:
            gate, self._rename_gate = self._rename_gate, None
            if gate is not None:
                gate.set()

        self._call(release())

    async def _pass_rename_gate(self) -> None:
        gate = self._rename_gate
        if gate is not None:
            self.renames_held += 1
            try:
                await gate.wait()
            finally:
                self.renames_held -= 1

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_TIMEOUT)

    async def _shutdown(self) -> None:
        self._acceptor.close()
        await self._acceptor.wait_closed()
        for conn in list(self._connections):
            conn.abort()
            await conn.wait_closed()


class _SSHServer(asyncssh.SSHServer):
    """Password auth for the one user, or public-key auth with the generated client key."""

    def __init__(self, peer: SftpServer, client_key: asyncssh.SSHKey) -> None:
        self._peer = peer
        self._client_key = client_key
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._peer._connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._peer._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == self._peer.user and hmac.compare_digest(password, self._peer.password)

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self._peer.user and key.public_data == self._client_key.public_data


@dataclass
class _Download:
    size: int
    served_to: int = 0  # highest offset served
    budget: int | None = None  # bytes left before the drop, when armed


class _SFTPServer(asyncssh.SFTPServer):
    """Chrooted SFTP that counts complete downloads and can cut one short."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], peer: SftpServer) -> None:
        super().__init__(chan, chroot=bytes(peer.root))
        self._peer = peer
        self._conn = chan.get_connection()  # the channel forgets it once the connection is gone
        self._downloads: dict[object, _Download] = {}
        self._uploads: dict[object, int] = {}  # file -> bytes it may still take

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        file_obj = super().open(path, pflags, attrs)
        if pflags & asyncssh.FXF_READ and not pflags & asyncssh.FXF_WRITE:
            size = os.fstat(file_obj.fileno()).st_size  # type: ignore[attr-defined]
            self._downloads[file_obj] = _Download(size, budget=self._peer._take_drop())
        elif pflags & asyncssh.FXF_WRITE:
            budget = self._peer._take_upload_drop()
            if budget is not None:
                self._uploads[file_obj] = budget
        return file_obj

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        budget = self._uploads.get(file_obj)
        if budget is None:
            return int(super().write(file_obj, offset, data))  # type: ignore[arg-type]
        keep = data[:budget]
        if keep:
            super().write(file_obj, offset, keep)  # type: ignore[arg-type]
        self._uploads[file_obj] = budget - len(keep)
        if len(keep) < len(data) or budget - len(keep) == 0:
            self._conn.abort()
            raise asyncssh.SFTPConnectionLost("connection dropped by the test peer")
        return len(data)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:  # type: ignore[override]
        await self._peer._pass_rename_gate()
        super().rename(oldpath, newpath)

    async def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:  # type: ignore[override]
        await self._peer._pass_rename_gate()
        super().posix_rename(oldpath, newpath)

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        download = self._downloads.get(file_obj)
        if download is not None and download.budget is not None:
            if download.budget == 0:
                self._conn.abort()  # idempotent
                raise asyncssh.SFTPConnectionLost("connection dropped by the test peer")
            size = min(size, download.budget)
        data = bytes(super().read(file_obj, offset, size))  # type: ignore[arg-type]
        if download is not None:
            download.served_to = max(download.served_to, offset + len(data))
            if download.budget is not None:
                download.budget -= len(data)
                if download.budget == 0:
                    # Let this reply go out first; the client's next read finds the line dead.
                    asyncio.get_running_loop().call_soon(self._conn.abort)
        return data

    def close(self, file_obj: object) -> None:
        download = self._downloads.pop(file_obj, None)
        if download is not None and download.budget is None and download.served_to >= download.size:
            self._peer.reads_completed += 1
        super().close(file_obj)


def _known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    algorithm, blob = key.export_public_key("openssh").decode().split()[:2]
    where = host if port == 22 else f"[{host}]:{port}"
    return f"{where} {algorithm} {blob}"


def _keys_dir() -> Path:
    """Keys must outlive a stopped server (a test may restart it with the same host key)."""
    path = Path(tempfile.mkdtemp(prefix="disparo-sftp-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def start_sftp_server(
    root: Path,
    *,
    user: str = "disparo",
    password: str = "s3cret-sftp",
    host_key_path: Path | None = None,
    key_type: str = "ssh-ed25519",
) -> SftpServer:
    """Serve `root` over SFTP on 127.0.0.1 (random port) from a daemon thread.

    An existing `host_key_path` is reused as the host key (OpenSSH private key); otherwise a
    new `key_type` key is generated and written there (or to a temporary file), so omitting
    it "changes the host key". A client key authorised for `user` is generated too.
    """
    root.mkdir(parents=True, exist_ok=True)
    keys = _keys_dir()
    if host_key_path is not None and host_key_path.exists():
        host_key = asyncssh.read_private_key(host_key_path)
    else:
        host_key = asyncssh.generate_private_key(key_type)
        host_key_path = host_key_path or keys / "host_key"
        host_key.write_private_key(host_key_path)
        host_key_path.chmod(0o600)
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key_path = keys / "client_key"
    client_key.write_private_key(client_key_path)
    client_key_path.chmod(0o600)

    peer = SftpServer(
        host="127.0.0.1",
        port=0,
        root=root,
        user=user,
        password=password,
        host_key_path=host_key_path,
        fingerprint=host_key.get_fingerprint("sha256"),
        known_hosts_line="",
        client_key_path=client_key_path,
    )
    peer._loop = asyncio.new_event_loop()
    peer._thread = threading.Thread(
        target=run_loop, args=(peer._loop,), name="sftp-peer", daemon=True
    )
    peer._thread.start()

    async def listen() -> Any:
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[host_key],
            server_factory=lambda: _SSHServer(peer, client_key),
            sftp_factory=lambda chan: _SFTPServer(chan, peer),
            allow_scp=False,
            agent_forwarding=False,
            x11_forwarding=False,
        )

    try:
        peer._acceptor = peer._call(listen())
    except BaseException:
        peer._loop.call_soon_threadsafe(peer._loop.stop)
        peer._thread.join(timeout=_TIMEOUT)
        raise
    peer.port = int(peer._acceptor.get_port())
    peer.known_hosts_line = _known_hosts_line(peer.host, peer.port, host_key)
    return peer

"""The asyncssh server: public-key logins against the key ring, one ``TuiSession`` each.

Passwords, keyboard-interactive, host-based and certificate logins and every kind of
forwarding are refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import asyncssh

from tui.ssh.keys import KeyRing, Login, role_of
from tui.ssh.session import ArgvFactory, TuiSession

#: one logger for the whole server, named as before it was split in modules (log lines and
#: logging configuration that name ``tui.ssh`` keep working)
log = logging.getLogger("tui.ssh")

#: how long a hung-up session's processes get after SIGTERM before SIGKILL
GRACE_SECONDS = 2.0


def _no_forwarding() -> asyncssh.ChannelOpenError:
    return asyncssh.ChannelOpenError(
        asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "forwarding is disabled on this server"
    )


class TuiConnection(asyncssh.SSHServer):
    """One client connection: public-key authentication against the key ring, no forwarding."""

    def __init__(self, server: TuiServer) -> None:
        self.server = server
        self.conn: asyncssh.SSHServerConnection | None = None
        self.peer = ""
        self.login: Login | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        peer = conn.get_extra_info("peername")
        self.peer = str(peer[0]) if peer else ""

    def begin_auth(self, username: str) -> bool:
        self.server.keys.refresh()
        return True  # always authenticate

    def public_key_auth_supported(self) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        self.login = None  # the last key validated is the one that signs in
        try:
            entry, options = self.server.keys.match(key, self.peer)
        except LookupError:
            log.info(
                "refused unknown key %s for %s from %s", key.get_fingerprint(), username, self.peer
            )
            return False
        try:
            role = role_of(options)
        except ValueError as exc:
            log.warning(
                "refused key %s (authorized_keys line %d) for %s from %s: %s",
                entry.name,
                entry.line,
                username,
                self.peer,
                exc,
            )
            return False
        self.login = Login(username, entry, role, self.peer, options)
        return True

    def validate_ca_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return False  # certificates are not supported: list the user's own key

    def auth_completed(self) -> None:
        assert self.login is not None
        log.info(
            "%s logged in as %s from %s with key %s (role %s)",
            self.login.actor,
            self.login.username,
            self.peer,
            self.login.key.key.get_fingerprint(),
            self.login.role,
        )

    def session_requested(self) -> TuiSession | bool:
        if self.login is None:
            return False
        return TuiSession(self.server, self.login)

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> bool:
        log.info("%s: port forwarding to %s:%d refused", self._who(), dest_host, dest_port)
        raise _no_forwarding()

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        log.info("%s: remote forwarding of %s:%d refused", self._who(), listen_host, listen_port)
        return False

    def unix_connection_requested(self, dest_path: str) -> bool:
        log.info("%s: forwarding to socket %s refused", self._who(), dest_path)
        raise _no_forwarding()

    def unix_server_requested(self, listen_path: str) -> bool:
        log.info("%s: remote forwarding of socket %s refused", self._who(), listen_path)
        return False

    def tun_requested(self, unit: int | None) -> bool:
        raise _no_forwarding()

    def tap_requested(self, unit: int | None) -> bool:
        raise _no_forwarding()

    def _who(self) -> str:
        return self.login.actor if self.login else self.peer


def load_host_key(path: Path) -> tuple[asyncssh.SSHKey, bool]:
    """The server's private host key from ``path``, made (ed25519, mode 0600, with a ``.pub``
    beside it) when the file does not exist. Returns the key and whether it was made now."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("host key %s is readable by others (mode %o): chmod 600 it", path, mode)
        return asyncssh.read_private_key(path), False
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = asyncssh.generate_private_key("ssh-ed25519", comment="disparo ssh-serve host key")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key())
    path.with_name(path.name + ".pub").write_bytes(key.export_public_key())
    return key, True


class TuiServer:
    """The SSH server: one ``TuiSession`` (PTY + process) per session of an authorised key."""

    def __init__(
        self,
        *,
        keys: KeyRing,
        host_key: asyncssh.SSHKey,
        argv: ArgvFactory,
        max_sessions: int = 20,
        grace: float = GRACE_SECONDS,
    ) -> None:
        self.keys = keys
        self.host_key = host_key
        self.argv = argv
        self.max_sessions = max_sessions
        self.grace = grace
        self.sessions: set[TuiSession] = set()
        self.port = 0
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def fingerprint(self) -> str:
        """The host key's SHA256 fingerprint, as ``ssh`` shows it on first connection."""
        return self.host_key.get_fingerprint("sha256")

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port); return the port."""
        self._acceptor = await asyncssh.create_server(
            lambda: TuiConnection(self),
            host,
            port,
            server_host_keys=[self.host_key],
            public_key_auth=True,
            password_auth=False,
            kbdint_auth=False,
            host_based_auth=False,
            gss_host=None,
            allow_pty=True,
            line_editor=False,
            agent_forwarding=False,
            x11_forwarding=False,
            allow_scp=False,
            encoding=None,
            login_timeout=60,
            keepalive_interval=60,
        )
        self.port = self._acceptor.get_port()
        return self.port

    async def close(self) -> None:
        """Stop listening, stop every session's processes (SIGTERM, then SIGKILL) and wait."""
        if self._acceptor is not None:
            self._acceptor.close()
        sessions = list(self.sessions)
        for session in sessions:
            session._hang_up()
        tasks = [s.task for s in sessions if s.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._acceptor is not None:
            await self._acceptor.wait_closed()
            self._acceptor = None

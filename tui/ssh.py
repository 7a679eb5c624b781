"""``disparo ssh-serve``: the TUI over SSH, one PTY and one ``disparo tui`` process per session.

Textual has no SSH driver, so each session gets what a terminal would give it: a pseudo-
terminal whose slave is the controlling terminal of a new session (its own process group)
running ``disparo tui``. A crash or a blocking call in one user's TUI touches nobody else.
Only public keys listed in the authorized_keys file get in; each key's role (viewer,
operator, admin) is the standard ``environment="DISPARO_ROLE=…"`` option of its line, parsed
by asyncssh's own authorized_keys parser. Passwords, keyboard-interactive, commands other than
the TUI, subsystems and every kind of forwarding are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import pty
import signal
import stat
import struct
import sys
import termios
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import click

from engine.actions import ROLES
from engine.cli.context import app, fail

log = logging.getLogger(__name__)

#: the authorized_keys ``environment`` variable that carries a key's role
ROLE_VARIABLE = "DISPARO_ROLE"
#: the role of a key whose line names none (least privilege)
DEFAULT_ROLE = "viewer"
#: exec requests that mean "the TUI" (``ssh -t host tui``); anything else is refused
TUI_COMMANDS = frozenset({"tui", "disparo tui"})
#: how long a hung-up session's processes get after SIGTERM before SIGKILL
GRACE_SECONDS = 2.0
#: at most this much is read from a PTY per wake-up (Textual writes a full frame at once)
READ_SIZE = 65536
#: what a killed TUI leaves undone: leave the alternate screen, show the cursor, stop mouse
#: reporting, focus events and bracketed paste
RESET_TERMINAL = (
    b"\x1b[?1049l\x1b[?25h\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1015l"
    b"\x1b[?1004l\x1b[?2004l\x1b[0m"
)
#: the environment the server never hands to a session's process: COLUMNS/LINES would pin
#: Textual's size (shutil.get_terminal_size reads them before asking the terminal) and
#: break resizes
STRIPPED_VARIABLES = ("COLUMNS", "LINES", ROLE_VARIABLE, "DISPARO_ACTOR")


class KeyFileError(Exception):
    """The authorized_keys file is missing, unreadable or lists no usable key."""


@dataclass(frozen=True)
class AuthorizedKey:
    """One key line of the authorized_keys file: the key and who it is."""

    line: int
    key: asyncssh.SSHKey
    #: the key's comment (``ana@laptop``), empty when the line has none
    comment: str
    #: the line as asyncssh parsed it: its options (from=, no-pty, environment=…)
    entry: asyncssh.SSHAuthorizedKeys

    @property
    def name(self) -> str:
        """How logs name the key: its comment, else its fingerprint."""
        return self.comment or self.key.get_fingerprint()

    def options(self, peer: str) -> Mapping[str, object] | None:
        """The line's options when a client at address ``peer`` may use it (``from=``)."""
        try:
            return self.entry.validate(self.key, peer, peer)
        except ValueError:  # a from= line and a peer that is not an IP address
            return None


def role_of(options: Mapping[str, object]) -> str:
    """The role a key line's options give: ``environment="DISPARO_ROLE=…"``, else viewer.

    Raises ``ValueError`` saying why when the role is not one of viewer, operator, admin.
    """
    environment = options.get("environment") or {}
    assert isinstance(environment, dict)
    role = str(environment.get(ROLE_VARIABLE, DEFAULT_ROLE)).strip()
    if role not in ROLES:
        raise ValueError(
            f"invalid role {role!r} in {ROLE_VARIABLE} (roles: {', '.join(ROLES)})"
            if role
            else f"empty {ROLE_VARIABLE} (roles: {', '.join(ROLES)})"
        )
    return role


def _key_of(line: str) -> asyncssh.SSHKey:
    """The public key at the end of an authorized_keys line (after any options).

    asyncssh parses the options but does not hand back the key's comment, which names the
    person; the key is the first whitespace-separated suffix that imports as a public key.
    """
    words = line.split()
    for start in range(len(words)):
        try:
            return asyncssh.import_public_key(" ".join(words[start:]))
        except (asyncssh.KeyImportError, ValueError):
            continue
    raise asyncssh.KeyImportError("no public key on the line")


def parse_authorized_keys(text: str) -> list[AuthorizedKey]:
    """Every key line of an authorized_keys text, parsed by asyncssh; a line it cannot parse
    is logged and skipped. Roles are checked at login (a ``from=`` line's options depend on
    the client's address); ``describe`` reports them ahead."""
    found: list[AuthorizedKey] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = asyncssh.import_authorized_keys(line)
            key = _key_of(line)
        except (asyncssh.KeyImportError, ValueError) as exc:
            log.warning("authorized_keys line %d ignored: %s", number, exc)
            continue
        found.append(AuthorizedKey(number, key, key.get_comment() or "", entry))
    return found


def _options_here(key: AuthorizedKey) -> Mapping[str, object] | None:
    """The line's options for a client on this machine (None: from= leaves it out)."""
    for peer in ("127.0.0.1", "::1"):
        options = key.options(peer)
        if options is not None:
            return options
    return None


def describe(key: AuthorizedKey) -> str:
    """``ana@laptop: operator``, or why the key will be refused (as seen from this machine)."""
    options = _options_here(key)
    if options is None:
        return f"{key.name}: role checked at login (from= restricts it)"
    try:
        return f"{key.name}: {role_of(options)}"
    except ValueError as exc:
        return f"{key.name}: REFUSED, {exc}"


class KeyRing:
    """The authorized_keys file, read again whenever it changes (no restart to add a key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._keys: list[AuthorizedKey] = []
        self.reload()

    def reload(self) -> None:
        """Read the file now; raise ``KeyFileError`` when it is missing or lists no key."""
        try:
            info = self.path.stat()
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyFileError(
                f"{self.path} does not exist: put one public key per line in it, with its "
                f'role, e.g. environment="{ROLE_VARIABLE}=operator" ssh-ed25519 AAAA… '
                "ana@laptop (see docs/ssh.md)"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyFileError(f"cannot read {self.path}: {exc}") from None
        keys = parse_authorized_keys(text)
        if not keys:
            raise KeyFileError(
                f"{self.path} lists no public key: add lines like "
                f'environment="{ROLE_VARIABLE}=operator" ssh-ed25519 AAAA… ana@laptop'
            )
        self._keys = keys
        self._stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        for key in keys:
            options = _options_here(key)
            try:
                role_of(options or {})
            except ValueError as exc:
                log.warning(
                    "authorized_keys line %d (%s) will be refused: %s", key.line, key.name, exc
                )

    def refresh(self) -> None:
        """Reload when the file changed; when it is gone or empty, nobody gets in."""
        try:
            info = self.path.stat()
            stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        except OSError:
            stamp = None
        if stamp == self._stamp and stamp is not None:
            return
        try:
            self.reload()
        except KeyFileError as exc:
            log.error("%s; refusing every key until it is fixed", exc)
            self._keys = []
            self._stamp = stamp

    @property
    def keys(self) -> list[AuthorizedKey]:
        """The key lines read last."""
        return list(self._keys)

    def match(self, key: asyncssh.SSHKey, peer: str) -> tuple[AuthorizedKey, Mapping[str, object]]:
        """The line for ``key`` offered from address ``peer`` and its options; ``LookupError``
        when no line allows it."""
        for entry in self._keys:
            if entry.key == key:
                options = entry.options(peer)
                if options is not None:
                    return entry, options
        raise LookupError(key.get_fingerprint())


@dataclass(frozen=True)
class Login:
    """Who a connection authenticated as."""

    username: str
    key: AuthorizedKey
    role: str
    peer: str
    #: the line's options (no-pty is honoured)
    options: Mapping[str, object]

    @property
    def actor(self) -> str:
        """The audit log's name for this user: ``ssh:`` and the key's comment, else the user."""
        return f"ssh:{self.key.comment or self.username}"


#: what a session runs: argv for a login (tests swap in a small stand-in program)
ArgvFactory = Callable[[Login], Sequence[str]]


def tui_argv(config: Path) -> ArgvFactory:
    """The real thing: ``disparo --config CONFIG tui --role ROLE`` with this interpreter."""

    def argv(login: Login) -> list[str]:
        return [
            sys.executable,
            "-m",
            "engine.cli",
            "--config",
            str(config),
            "tui",
            "--role",
            login.role,
        ]

    return argv


def session_environment(
    login: Login, term: str, client: Mapping[str, str], base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a session's process: the server's own (secrets referenced by the
    configuration live there), with TERM from the client's PTY request, who acts and with
    what role. Of what the client sent only COLORTERM is kept (it tells Textual the terminal
    does true colour); a client cannot set DISPARO_ROLE or DISPARO_ACTOR."""
    env = dict(os.environ if base is None else base)
    for name in STRIPPED_VARIABLES:
        env.pop(name, None)
    env["TERM"] = term
    env["DISPARO_ACTOR"] = login.actor
    env[ROLE_VARIABLE] = login.role
    colorterm = client.get("COLORTERM", "")
    if colorterm in ("truecolor", "24bit"):
        env["COLORTERM"] = colorterm
    else:
        env.pop("COLORTERM", None)
    return env


def _take_terminal() -> None:  # pragma: no cover - runs in the child between fork and exec
    # start_new_session made the child a session leader; this makes its stdin (the PTY
    # slave) the session's controlling terminal, so the kernel delivers SIGWINCH and SIGHUP
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _set_size(fd: int, columns: int, rows: int, width: int = 0, height: int = 0) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, width, height))


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class TuiSession(asyncssh.SSHServerSession[bytes]):
    """One SSH session: a PTY and the process running in it, bytes pumped both ways."""

    def __init__(self, server: TuiServer, login: Login) -> None:
        self.server = server
        self.login = login
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.term: str | None = None
        self.size = (80, 24, 0, 0)
        self.command: str | None = None
        self.pid: int | None = None
        self.task: asyncio.Task[None] | None = None
        self._master: int | None = None
        self._to_child = bytearray()
        self._reading = False
        self._paused = False
        self._writer = False
        self._hung_up = asyncio.Event()
        self._lost = False

    # -- asyncssh callbacks ----------------------------------------------------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        if self.login.options.get("no-pty"):
            log.info("%s: PTY refused (no-pty in authorized_keys)", self.login.actor)
            return False
        self.term = term_type or "xterm"
        self.size = term_size
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.command = command  # refused with a message once the session starts
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        log.info("%s: subsystem %r refused", self.login.actor, subsystem)
        return False

    def session_started(self) -> None:
        refusal = self._refusal()
        if refusal is not None:
            self._refuse(refusal)
            return
        self.server.sessions.add(self)
        self.task = asyncio.ensure_future(self._run())

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self.size = (width, height, pixwidth, pixheight)
        if self._master is not None and width and height:
            # the kernel sends SIGWINCH to the terminal's foreground process group itself
            _set_size(self._master, width, height, pixwidth, pixheight)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self._to_child.extend(data)
        self._flush()

    def eof_received(self) -> bool:
        self._hang_up()
        return True  # keep the channel to report the exit status

    def break_received(self, msec: int) -> bool:
        return False

    def pause_writing(self) -> None:
        self._paused = True
        self._stop_reading()

    def resume_writing(self) -> None:
        self._paused = False
        self._start_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._hang_up()

    # -- refusals --------------------------------------------------------------------------

    def _refusal(self) -> str | None:
        if self.command is not None and self.command.strip() not in TUI_COMMANDS:
            log.info("%s: command %r refused", self.login.actor, self.command)
            return (
                "disparo: this server only serves the terminal UI; connect without a command: "
                f"ssh -t -p {self.server.port} {self.login.username}@HOST"
            )
        if self.term is None:
            log.info("%s: session without a PTY refused", self.login.actor)
            if self.login.options.get("no-pty"):
                return "disparo: this key may not open a terminal (no-pty in authorized_keys)"
            return (
                "disparo: the terminal UI needs a terminal; connect with ssh -t "
                f"(ssh -t -p {self.server.port} {self.login.username}@HOST)"
            )
        if len(self.server.sessions) >= self.server.max_sessions:
            log.warning(
                "%s: refused, %d sessions already open", self.login.actor, self.server.max_sessions
            )
            return (
                f"disparo: sorry, all {self.server.max_sessions} sessions are in use; "
                "please try again in a little while"
            )
        return None

    def _refuse(self, message: str) -> None:
        assert self.chan is not None
        newline = "\r\n" if self.term else "\n"
        self.chan.write_stderr((message + newline).encode())
        self.chan.exit(1)

    # -- the process -----------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            status = await self._serve()
        except Exception:
            log.exception("%s: session failed", self.login.actor)
            status = 1
        finally:
            self.server.sessions.discard(self)
        if self._lost or self.chan is None:
            return
        with contextlib.suppress(OSError):
            if status < 0:  # killed: it could not give the terminal back, so do it for it
                name = signal.Signals(-status).name.removeprefix("SIG")
                self.chan.write(
                    RESET_TERMINAL + f"\r\ndisparo: session ended ({name})\r\n".encode()
                )
                self.chan.exit_with_signal(name)
            else:
                self.chan.exit(status)

    async def _serve(self) -> int:
        assert self.chan is not None and self.term is not None
        master, slave = pty.openpty()
        columns, rows, width, height = self.size
        _set_size(slave, columns or 80, rows or 24, width, height)
        argv = list(self.server.argv(self.login))
        env = session_environment(self.login, self.term, self.chan.get_environment())
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=env,
                start_new_session=True,
                preexec_fn=_take_terminal,  # one ioctl between fork and exec: no locks taken
            )
        except OSError as exc:
            os.close(master)
            os.close(slave)
            self.chan.write(f"disparo: cannot start {argv[0]}: {exc}\r\n".encode())
            return 1
        os.close(slave)  # the child holds it; a read on the master fails with EIO once it exits
        self.pid = process.pid
        self._master = master
        exited = asyncio.ensure_future(process.wait())
        hung_up = asyncio.ensure_future(self._hung_up.wait())
        try:
            os.set_blocking(master, False)
            log.info(
                "%s (role %s, key line %d) from %s: session started, pid %d",
                self.login.actor,
                self.login.role,
                self.login.key.line,
                self.login.peer,
                process.pid,
            )
            if self.size != (columns, rows, width, height):  # resized while starting
                self.terminal_size_changed(*self.size)
            self._start_reading()
            self._flush()
            await asyncio.wait({exited, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                log.info("%s: client gone, stopping pid %d", self.login.actor, process.pid)
                await self._terminate(process.pid, exited)
            status = exited.result()
        finally:
            hung_up.cancel()
            # the whole group, whatever the TUI started and left behind (or everything, when
            # this task is cancelled); asyncio's child watcher still reaps the process
            _killpg(process.pid, signal.SIGKILL)
            exited.cancel()
            self._read(drain=True)
            self._close_master()
        log.info("%s: session ended, status %d", self.login.actor, status)
        return status

    async def _terminate(self, pgid: int, exited: asyncio.Future[int]) -> None:
        """SIGTERM the session's process group, SIGKILL it after the grace period."""
        _killpg(pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.server.grace)
        except TimeoutError:
            log.warning("%s: pid %d ignored SIGTERM, killing it", self.login.actor, pgid)
            _killpg(pgid, signal.SIGKILL)
            await exited

    def _hang_up(self) -> None:
        self._hung_up.set()

    # -- pumping bytes ---------------------------------------------------------------------

    def _start_reading(self) -> None:
        if self._master is not None and not self._reading and not self._paused:
            asyncio.get_running_loop().add_reader(self._master, self._read)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._master is not None and self._reading:
            asyncio.get_running_loop().remove_reader(self._master)
            self._reading = False

    def _read(self, drain: bool = False) -> None:
        """Forward what the process wrote (``drain``: everything left, after it exited)."""
        if self._master is None:
            return
        while True:
            try:
                data = os.read(self._master, READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:  # EIO: every process holding the slave has exited
                if exc.errno != errno.EIO:
                    log.warning("%s: reading the PTY: %s", self.login.actor, exc)
                self._stop_reading()
                return
            if not data:
                self._stop_reading()
                return
            if not self._lost and self.chan is not None:
                self.chan.write(data)
            if not drain:
                return

    def _flush(self) -> None:
        """Write the client's keystrokes to the PTY without blocking; when the PTY is full,
        stop reading from the client until it drains."""
        if self._master is None or self.chan is None:
            return
        loop = asyncio.get_running_loop()
        while self._to_child:
            try:
                written = os.write(self._master, self._to_child)
            except BlockingIOError:
                if not self._writer:
                    loop.add_writer(self._master, self._flush)
                    self._writer = True
                    self.chan.pause_reading()
                return
            except OSError:  # the process is gone: drop the input
                self._to_child.clear()
                break
            del self._to_child[:written]
        if self._writer:
            loop.remove_writer(self._master)
            self._writer = False
            self.chan.resume_reading()

    def _close_master(self) -> None:
        if self._master is None:
            return
        self._stop_reading()
        if self._writer:
            asyncio.get_running_loop().remove_writer(self._master)
            self._writer = False
        os.close(self._master)
        self._master = None


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


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:2222`` for IPv6) → (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise click.BadParameter(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:2222)")
    host = host.removeprefix("[").removesuffix("]")
    number = int(port)
    if not 0 <= number <= 65535:
        raise click.BadParameter(f"port {number} is out of range")
    return host, number


def is_loopback(host: str) -> bool:
    """Is ``host`` reachable only from this machine?"""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _any_address(host: str) -> bool:
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@click.command("ssh-serve")
@click.option(
    "--listen",
    default="127.0.0.1:2222",
    show_default=True,
    help="HOST:PORT to listen on ([::1]:2222 for IPv6).",
)
@click.option(
    "--host-key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The server's private key; made (ed25519) on first start. "
    "Default: <config folder>/secrets/ssh_host_ed25519_key.",
)
@click.option(
    "--authorized-keys",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Public keys allowed in, one per line, each with its role "
    '(environment="DISPARO_ROLE=operator"). Default: <config folder>/secrets/ssh_authorized_keys.',
)
@click.option(
    "--max-sessions",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Sessions open at once; more are turned away politely.",
)
@click.pass_context
def ssh_serve(
    ctx: click.Context,
    listen: str,
    host_key: Path | None,
    authorized_keys: Path | None,
    max_sessions: int,
) -> None:
    """Serve the terminal UI over SSH to the public keys in the authorized_keys file.

    Each session runs its own `disparo tui` in its own terminal, with the role its key's line
    names: environment="DISPARO_ROLE=viewer|operator|admin" (no role: viewer). Passwords,
    commands, sessions without a terminal and forwarding are refused. The audit log names the
    key's comment: ssh:ana@laptop.
    """
    from engine.service import configure_logging

    a = app(ctx)
    config = a.require_config()
    assert a.found_config is not None  # require_config exits when there is none
    config_path = a.found_config.resolve()
    secrets = config_path.parent / "secrets"
    host, port = parse_listen(listen)
    keys_path = authorized_keys or secrets / "ssh_authorized_keys"
    configure_logging(config)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        keys = KeyRing(keys_path)
    except KeyFileError as exc:
        fail(str(exc), code=2)
    key_path = host_key or secrets / "ssh_host_ed25519_key"
    try:
        key, made = load_host_key(key_path)
    except (OSError, ValueError) as exc:  # unreadable, or not a private key
        fail(f"host key {key_path}: {exc}", code=2)

    def say(text: str) -> None:
        a.console.print(text, markup=False, soft_wrap=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = TuiServer(
            keys=keys, host_key=key, argv=tui_argv(config_path), max_sessions=max_sessions
        )
        try:
            bound = await server.start(host, port)
        except OSError as exc:
            fail(f"cannot listen on {listen}: {exc}")
        shown = f"[{host}]" if ":" in host else host
        reach = "HOST" if _any_address(host) else shown
        made_now = " (made now)" if made else ""
        say(f"host key {key_path}{made_now}: {key.get_algorithm()} {server.fingerprint}")
        say(f"authorized keys {keys_path}:")
        for k in keys.keys:
            say(f"  line {k.line}: {describe(k)}")
        if not is_loopback(host):
            say(
                f"note: {host} is not a loopback address: anyone who can reach it may try to "
                "log in (only the authorised keys get in)"
            )
        say(f"serving the TUI on {shown}:{bound}: ssh -t -p {bound} disparo@{reach}; Ctrl-C stops")
        try:
            await stop.wait()
        finally:
            await server.close()

    asyncio.run(main())


__all__ = [
    "AuthorizedKey",
    "KeyFileError",
    "KeyRing",
    "Login",
    "TuiServer",
    "TuiSession",
    "load_host_key",
    "parse_authorized_keys",
    "session_environment",
    "ssh_serve",
    "tui_argv",
]

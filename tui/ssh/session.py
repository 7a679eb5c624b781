"""One SSH session: a PTY whose process runs ``disparo tui``, bytes pumped both ways.

Textual has no SSH driver, so each session gets what a terminal would give it: a pseudo-
terminal whose slave is the controlling terminal of a new session (its own process group)
running ``disparo tui``. A crash or a blocking call in one user's TUI touches nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import pty
import signal
import struct
import sys
import termios
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh

from tui.ssh.keys import ROLE_VARIABLE, Login

if TYPE_CHECKING:
    from tui.ssh.server import TuiServer

#: one logger for the whole server, named as before it was split in modules (log lines and
#: logging configuration that name ``tui.ssh`` keep working)
log = logging.getLogger("tui.ssh")

#: exec requests that mean "the TUI" (``ssh -t host tui``); anything else is refused
TUI_COMMANDS = frozenset({"tui", "disparo tui"})
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

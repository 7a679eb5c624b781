"""`disparo ssh-serve`: real asyncssh clients against the server on loopback.

Most tests run a small stand-in program in each session's PTY (it prints what it was given:
environment, role, terminal size on SIGWINCH, its pid); one runs the real `disparo tui` and
reads the screen it draws through `pyte`, a terminal emulator.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import re
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import pyte
import pytest
from click.testing import CliRunner

from engine.cli.context import AppContext
from engine.testing.eventually import TIMEOUT, GiveUp, eventually
from tests.helpers import load, name
from tui.ssh import (
    KeyFileError,
    KeyRing,
    Login,
    TuiServer,
    is_loopback,
    load_host_key,
    parse_authorized_keys,
    parse_listen,
    role_of,
    ssh_serve,
    tui_argv,
)

#: a stand-in for `disparo tui`: says what it got, its size on SIGWINCH, exits on "exit N"
STAND_IN = r"""
import os, signal, subprocess, sys
if "ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
def size(*_):
    columns, rows = os.get_terminal_size(0)
    print(f"SIZE {columns}x{rows}", flush=True)
signal.signal(signal.SIGWINCH, size)
# a process of the session that would outlive it: it ignores the hang-up and SIGTERM
nohup = ["sh", "-c", "trap '' HUP TERM; exec sleep 60"]
child = subprocess.Popen(nohup) if "grandchild" in sys.argv else None
print(f"PID {os.getpid()} GRANDCHILD {child.pid if child else 0}", flush=True)
print(f"CTTY {os.tcgetpgrp(0) == os.getpgrp()} LEADER {os.getsid(0) == os.getpid()}")
names = ("TERM", "COLORTERM", "DISPARO_ACTOR", "DISPARO_ROLE", "COLUMNS", "LINES", "SMUGGLED")
print("ENV " + " ".join(f"{n}={os.environ.get(n, '-')}" for n in names))
print("ARGV " + " ".join(sys.argv[1:]), flush=True)
size()
for line in sys.stdin:
    words = line.split()
    if words[:1] == ["exit"]:
        sys.exit(int(words[1]))
"""

T = TypeVar("T")
Keys = dict[str, asyncssh.SSHKey]
ROOT = Path(__file__).resolve().parent.parent


def read_lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def write(path: Path, text: str | None) -> None:
    """Rewrite (or, with None, delete) a file the server reads."""
    if text is None:
        path.unlink()
    else:
        path.write_text(text)


def stand_in(*flags: str) -> Callable[[Login], list[str]]:
    def argv(login: Login) -> list[str]:
        return [sys.executable, "-c", STAND_IN, f"role={login.role}", *flags]

    return argv


def alive(pid: int) -> bool:
    """Is ``pid`` a live process (a zombie waiting for its parent counts as dead)?"""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


async def gone(pid: int, what: str) -> None:
    """Wait until ``pid`` has ended (``what`` says whose process it is)."""
    await eventually(lambda: not alive(pid), what=f"{what} (pid {pid}) to end")


class Terminal:
    """A client session with a PTY; collects what the server sends, as text and as a screen."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes], columns: int, rows: int):
        self.process = process
        self.text = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.screen = pyte.Screen(columns, rows)
        self._stream = pyte.ByteStream(self.screen)

    async def _read(self) -> None:
        data = await self.process.stdout.read(65536)
        if not data:
            raise GiveUp("the session ended")
        self.text += self._decoder.decode(data)
        self._stream.feed(data)

    async def _until(
        self, found: Callable[[], T | None], what: str, detail: Callable[[], str]
    ) -> T:
        """Read what the server sends until ``found()`` gives something."""

        async def check() -> T:
            while (value := found()) is None:
                await self._read()
            return value

        try:
            return await eventually(check, what=what, detail=detail)
        except GiveUp as ended:
            raise AssertionError(f"{ended} before {what}:\n{detail()}") from None

    async def expect(self, pattern: str) -> re.Match[str]:
        """Wait until ``pattern`` appears in everything received so far."""
        return await self._until(
            lambda: re.search(pattern, self.text),
            f"{pattern!r} in the output",
            lambda: f"got:\n{self.text[-2000:]}",
        )

    def display(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    async def until_screen(self, check: Callable[[str], bool], what: str) -> str:
        """Wait until the emulated screen satisfies ``check``."""
        return await self._until(
            lambda: screen if check(screen := self.display()) else None,
            f"the screen to show {what}",
            lambda: f"the screen:\n{self.display()}",
        )

    def send(self, text: str) -> None:
        self.process.stdin.write(text.encode())

    async def exit_status(self) -> int | None:
        async with asyncio.timeout(TIMEOUT):
            await self.process.wait_closed()
        return self.process.exit_status


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> Keys:
    return {
        who: asyncssh.generate_private_key("ssh-ed25519", comment=comment)
        for who, comment in (
            ("ana", "ana@laptop"),
            ("bob", ""),
            ("eve", "eve@box"),
            ("carol", "carol@far"),
            ("mallory", "mallory@nowhere"),
            ("dave", "dave@ci"),
        )
    }


def public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


@pytest.fixture
def authorized(tmp_path: Path, keys: Keys) -> Path:
    path = tmp_path / "secrets" / "ssh_authorized_keys"
    path.parent.mkdir()
    path.write_text(
        "# who may use the TUI over SSH\n"
        f'environment="DISPARO_ROLE=operator" {public(keys["ana"])}\n'
        f"{public(keys['bob'])}\n"  # no role: viewer; no comment: the user name acts
        f'environment="DISPARO_ROLE=root" {public(keys["eve"])}\n'
        f'from="10.0.0.0/8",environment="DISPARO_ROLE=admin" {public(keys["carol"])}\n'
        f"no-pty {public(keys['dave'])}\n"
    )
    return path


Serve = Callable[..., Awaitable[TuiServer]]


@pytest.fixture
async def serve(authorized: Path, tmp_path: Path) -> AsyncIterator[Serve]:
    servers: list[TuiServer] = []
    host_key, _ = load_host_key(tmp_path / "secrets" / "ssh_host_ed25519_key")

    async def start(
        argv: Callable[[Login], Sequence[str]] | None = None,
        max_sessions: int = 20,
        grace: float = 2.0,
    ) -> TuiServer:
        server = TuiServer(
            keys=KeyRing(authorized),
            host_key=host_key,
            argv=argv or stand_in(),
            max_sessions=max_sessions,
            grace=grace,
        )
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close()


async def connect(server: TuiServer, key: asyncssh.SSHKey | None, **options: Any) -> Any:
    return await asyncssh.connect(
        "127.0.0.1",
        server.port,
        username="disparo",
        client_keys=[key] if key is not None else [],
        known_hosts=None,
        agent_path=None,
        config=None,
        **options,
    )


async def terminal(
    conn: asyncssh.SSHClientConnection, columns: int = 100, rows: int = 30, **options: Any
) -> Terminal:
    process = await conn.create_process(
        term_type="xterm-256color", term_size=(columns, rows), encoding=None, **options
    )
    return Terminal(process, columns, rows)


# -- sessions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "actor", "role"),
    [("ana", "ssh:ana@laptop", "operator"), ("bob", "ssh:disparo", "viewer")],
)
async def test_each_session_gets_its_terminal_role_and_actor(
    serve: Serve, keys: Keys, who: str, actor: str, role: str
) -> None:
    server = await serve()
    async with await connect(server, keys[who]) as conn:
        # what the client sends cannot raise its role or pin the terminal size
        env = {"DISPARO_ROLE": "admin", "SMUGGLED": "1", "COLORTERM": "truecolor", "LINES": "9"}
        t = await terminal(conn, env=env)
        await t.expect(r"SIZE 100x30")
        assert f"role={role}" in t.text
        assert (
            f"ENV TERM=xterm-256color COLORTERM=truecolor DISPARO_ACTOR={actor} "
            f"DISPARO_ROLE={role} COLUMNS=- LINES=- SMUGGLED=-"
        ) in t.text
        # the PTY is the controlling terminal of a new session (so SIGWINCH and SIGHUP work)
        assert "CTTY True LEADER True" in t.text
        t.send("exit 3\r")
        assert await t.exit_status() == 3


async def test_window_changes_reach_the_process(serve: Serve, keys: Keys) -> None:
    server = await serve()
    async with await connect(server, keys["ana"]) as conn:
        t = await terminal(conn)
        await t.expect(r"SIZE 100x30")
        t.process.change_terminal_size(132, 43)
        await t.expect(r"SIZE 132x43")
        t.process.change_terminal_size(80, 24)
        await t.expect(r"SIZE 80x24")
        t.send("exit 0\r")
        assert await t.exit_status() == 0


async def test_disconnect_kills_the_process_group(serve: Serve, keys: Keys) -> None:
    # the stand-in ignores SIGTERM (so SIGKILL must follow) and leaves a `sleep` behind
    server = await serve(stand_in("ignore-term", "grandchild"), grace=0.3)
    conn = await connect(server, keys["ana"])
    t = await terminal(conn)
    found = await t.expect(r"PID (\d+) GRANDCHILD (\d+)")
    pid, grandchild = int(found[1]), int(found[2])
    assert alive(pid) and alive(grandchild)
    conn.abort()  # the client vanishes without a word
    await gone(pid, "the session's process, after its client vanished")
    await gone(grandchild, "a process the session started, after its client vanished")
    await eventually(lambda: not server.sessions, what="the server to forget the session")


async def test_a_session_that_ends_leaves_no_process_behind(serve: Serve, keys: Keys) -> None:
    server = await serve(stand_in("grandchild"))
    async with await connect(server, keys["ana"]) as conn:
        t = await terminal(conn)
        grandchild = int((await t.expect(r"GRANDCHILD (\d+)"))[1])
        await t.expect(r"SIZE 100x30")
        assert alive(grandchild)
        t.send("exit 0\r")
        assert await t.exit_status() == 0
        await gone(grandchild, "a process the session started, after the session ended")


async def test_closing_the_server_stops_its_sessions(serve: Serve, keys: Keys) -> None:
    server = await serve()
    async with await connect(server, keys["ana"]) as conn:
        t = await terminal(conn)
        pid = int((await t.expect(r"PID (\d+)"))[1])
        await server.close()
        assert not alive(pid)
        # the client hears how its process ended (SIGTERM)
        await asyncio.wait_for(t.process.wait_closed(), TIMEOUT)
        assert t.process.exit_signal is not None and t.process.exit_signal[0] == "TERM"
        # the process could not restore the terminal: the server did (alternate screen off…)
        await t.expect(r"session ended \(TERM\)")
        assert "\x1b[?1049l\x1b[?25h" in t.text


async def test_sessions_beyond_the_limit_are_turned_away(serve: Serve, keys: Keys) -> None:
    server = await serve(max_sessions=1)
    async with await connect(server, keys["ana"]) as conn:
        first = await terminal(conn)
        await first.expect(r"SIZE 100x30")
        second = await terminal(conn)
        assert await second.exit_status() == 1
        message = (await second.process.stderr.read()).decode()
        assert "all 1 sessions are in use" in message and "try again" in message
        first.send("exit 0\r")
        assert await first.exit_status() == 0
        third = await terminal(conn)  # the slot is free again
        await third.expect(r"SIZE 100x30")
        third.send("exit 0\r")
        assert await third.exit_status() == 0


# -- refusals --------------------------------------------------------------------------------


async def test_a_session_without_a_terminal_is_refused(serve: Serve, keys: Keys) -> None:
    server = await serve()
    async with await connect(server, keys["ana"]) as conn:
        result = await conn.run(encoding="utf-8")
        assert result.exit_status == 1
        assert "needs a terminal" in str(result.stderr) and "ssh -t" in str(result.stderr)
        assert not server.sessions
    async with await connect(server, keys["dave"]) as conn:  # no-pty in authorized_keys
        with pytest.raises(asyncssh.ChannelOpenError):
            await terminal(conn)
        result = await conn.run(encoding="utf-8")
        assert result.exit_status == 1 and "may not open a terminal" in str(result.stderr)


async def test_commands_other_than_the_tui_and_subsystems_are_refused(
    serve: Serve, keys: Keys
) -> None:
    server = await serve()
    async with await connect(server, keys["ana"]) as conn:
        result = await conn.run("cat /etc/passwd", term_type="xterm", encoding="utf-8")
        assert result.exit_status == 1 and "only serves the terminal UI" in str(result.stderr)
        assert "root:" not in str(result.stdout)
        with pytest.raises(asyncssh.ChannelOpenError):
            await conn.start_sftp_client()
        # `ssh -t host tui` is the TUI
        t = await terminal(conn, command="tui")
        await t.expect(r"SIZE 100x30")
        t.send("exit 0\r")
        assert await t.exit_status() == 0


async def test_unknown_keys_and_bad_roles_are_refused(
    serve: Serve, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    server = await serve()
    caplog.set_level(logging.INFO, logger="tui.ssh")
    for who in ("mallory", "eve", "carol"):  # unknown; role "root"; from= another network
        with pytest.raises(asyncssh.PermissionDenied):
            await connect(server, keys[who])
    assert "refused unknown key" in caplog.text
    assert "eve@box" in caplog.text and "invalid role 'root'" in caplog.text


class PasswordClient(asyncssh.SSHClient):
    """A client that would type a password or answer challenges if the server asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def password_auth_requested(self) -> str:
        self.asked.append("password")
        return "disparo"

    def kbdint_auth_requested(self) -> str:
        self.asked.append("keyboard-interactive")
        return ""


async def test_passwords_and_keyboard_interactive_are_refused(serve: Serve) -> None:
    server = await serve()
    client = PasswordClient()
    with pytest.raises(asyncssh.PermissionDenied):
        await asyncssh.create_connection(
            lambda: client,
            "127.0.0.1",
            server.port,
            username="disparo",
            password="disparo",
            client_keys=[],
            known_hosts=None,
            agent_path=None,
            config=None,
        )
    assert client.asked == []  # the server offered public keys only


async def test_forwarding_is_refused(serve: Serve, keys: Keys, tmp_path: Path) -> None:
    server = await serve()
    async with await connect(server, keys["ana"]) as conn:
        with pytest.raises(asyncssh.ChannelOpenError, match="forwarding is disabled"):
            await conn.open_connection("127.0.0.1", server.port)
        with pytest.raises(asyncssh.ChannelOpenError, match="forwarding is disabled"):
            await conn.open_unix_connection(str(tmp_path / "socket"))
        with pytest.raises(asyncssh.ChannelListenError):
            await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 9)
        # the connection still works for what it is for
        t = await terminal(conn)
        await t.expect(r"SIZE 100x30")
        t.send("exit 0\r")
        assert await t.exit_status() == 0


async def test_the_keys_file_is_read_again_when_it_changes(
    serve: Serve, keys: Keys, authorized: Path
) -> None:
    server = await serve()
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(server, keys["mallory"])
    lines = read_lines(authorized)
    added = f'environment="DISPARO_ROLE=admin" {public(keys["mallory"])}\n'
    write(authorized, "".join(lines) + added)
    async with await connect(server, keys["mallory"]) as conn:
        t = await terminal(conn)
        await t.expect(r"DISPARO_ROLE=admin")
        t.send("exit 0\r")
        assert await t.exit_status() == 0
    write(authorized, "".join(line for line in lines if "ana@laptop" not in line) + added)
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(server, keys["ana"])
    write(authorized, None)  # gone: nobody gets in
    with pytest.raises(asyncssh.PermissionDenied):
        await connect(server, keys["bob"])


# -- keys, host key, options -----------------------------------------------------------------


def test_roles_come_from_the_environment_option(keys: Keys) -> None:
    lines = parse_authorized_keys(
        f'environment="DISPARO_ROLE=admin",no-pty {public(keys["ana"])}\n'
        f"not a key\n"
        f'environment="DISPARO_ROLE=" {public(keys["eve"])}\n'
        f'environment="OTHER=x y" {public(keys["bob"])}\n'
    )
    assert [(k.line, k.comment) for k in lines] == [(1, "ana@laptop"), (3, "eve@box"), (4, "")]
    ana, eve, bob = (k.options("127.0.0.1") or {} for k in lines)
    assert role_of(ana) == "admin" and ana.get("no-pty") is True
    with pytest.raises(ValueError, match="empty DISPARO_ROLE"):
        role_of(eve)
    assert role_of(bob) == "viewer"


def test_a_missing_keys_file_says_what_to_put_in_it(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match=r"ssh_authorized_keys does not exist.*DISPARO_ROLE"):
        KeyRing(tmp_path / "ssh_authorized_keys")
    (tmp_path / "ssh_authorized_keys").write_text("# nobody yet\n")
    with pytest.raises(KeyFileError, match="lists no public key"):
        KeyRing(tmp_path / "ssh_authorized_keys")


def test_the_command_refuses_to_start_without_a_keys_file(tmp_path: Path) -> None:
    config = tmp_path / "disparo.toml"
    config.write_text('[engine]\nspool_dir = "spool"\n')
    result = CliRunner().invoke(ssh_serve, [], obj=AppContext(config))
    assert result.exit_code == 2
    assert str(tmp_path / "secrets" / "ssh_authorized_keys") in result.output
    assert "DISPARO_ROLE=operator" in result.output


def test_the_host_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "ssh_host_ed25519_key"
    key, made = load_host_key(path)
    assert made and key.get_algorithm() == "ssh-ed25519"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert asyncssh.read_public_key(path.with_name(path.name + ".pub")) == key.convert_to_public()
    again, made = load_host_key(path)
    assert not made and again.get_fingerprint() == key.get_fingerprint()


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:2222") == ("127.0.0.1", 2222)
    assert parse_listen("[::1]:22") == ("::1", 22)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.0.10")


async def test_the_command_prints_the_fingerprint_clients_see(
    tmp_path: Path, authorized: Path, keys: Keys
) -> None:
    config = tmp_path / "disparo.toml"
    config.write_text('[engine]\nspool_dir = "spool"\n')
    # the command as the lead will register it; its AppContext comes from the root group
    code = (
        "import sys; from pathlib import Path; from engine.cli.context import AppContext; "
        "from tui.ssh import ssh_serve; "
        "ssh_serve.main(sys.argv[2:], obj=AppContext(Path(sys.argv[1])))"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        str(config),
        "--listen",
        "127.0.0.1:0",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    assert process.stdout is not None
    printed = ""
    try:
        while "Ctrl-C stops" not in printed:
            line = await asyncio.wait_for(process.stdout.readline(), TIMEOUT)
            assert line, printed
            printed += line.decode()
        fingerprint = re.search(r"ssh-ed25519 (SHA256:\S+)", printed)
        port = re.search(r"serving the TUI on 127\.0\.0\.1:(\d+): ssh -t -p \d+", printed)
        assert fingerprint and port, printed
        assert "(made now): ssh-ed25519 SHA256:" in printed
        assert "line 2: ana@laptop: operator" in printed and "eve@box: REFUSED" in printed
        key_file = tmp_path / "secrets" / "ssh_host_ed25519_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        async with asyncssh.connect(
            "127.0.0.1",
            int(port[1]),
            username="disparo",
            client_keys=[keys["ana"]],
            known_hosts=([asyncssh.read_public_key(f"{key_file}.pub")], [], []),
            agent_path=None,
            config=None,
        ) as conn:
            seen = conn.get_server_host_key()
            assert seen is not None and seen.get_fingerprint() == fingerprint[1]
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), TIMEOUT) == 0


# -- the real TUI ----------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path, run_cli: Any) -> Path:
    """`disparo init` and one imported mailing: one campaign on the Campaigns screen."""
    result = run_cli("init", str(tmp_path / "ws"))
    assert result.exit_code == 0, result.output
    config = tmp_path / "ws" / "disparo.toml"
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    mailing = tmp_path / "ws" / name(1, "cBRAD_smslong", day=today)
    mailing.write_text("nome;telefone\nAna;11999887766\nBia;11999887755\n")
    result = run_cli("--config", str(config), "import", str(mailing))
    assert result.exit_code == 0, result.output
    return config


def audit(config: Path, target: str) -> list[Any]:
    store = AppContext(config).store
    try:
        return list(store.audit.entries(target=target))
    finally:
        store.close()


def palette_column(screen: str) -> int:
    """Where the footer's "^p palette" hint starts (-1: not on the bottom line)."""
    return screen.splitlines()[-1].find("^p palette")


def assert_tui_command_registered() -> None:
    """`disparo tui` comes from the `tui` entry point: missing or broken, the test fails."""
    from engine.cli import build_cli

    commands = build_cli().commands  # a broken entry point raises PluginError here
    assert "tui" in commands, (
        '`disparo tui` is not registered: the `tui` entry point (tui = "tui.plugin" under '
        "[project.entry-points.disparo] in pyproject.toml, installed with `pip install -e .`) "
        f"is missing or registers no command; the commands are {sorted(commands)}"
    )


async def test_the_real_tui_over_ssh(serve: Serve, keys: Keys, workspace: Path) -> None:
    assert_tui_command_registered()
    server = await serve(tui_argv(workspace))
    async with await connect(server, keys["ana"]) as conn:
        started = time.monotonic()
        t = await terminal(conn)
        screen = await t.until_screen(
            lambda s: (
                "disparo — Campaigns" in s
                and re.search(r"^ *1 .*BRAD", s, re.M) is not None
                and palette_column(s) >= 0  # the footer is drawn too
            ),
            "the Campaigns screen with the imported campaign and its footer",
        )
        first_frame = time.monotonic() - started
        assert "sms-lon" in screen  # the campaign's channel, maybe cut to fit
        # laid out for 100 columns: the footer's last hint (Textual's "^p palette") sits at the
        # right edge (a size from anywhere else, such as $COLUMNS, would push it off screen)
        assert 88 <= palette_column(screen) < 100
        # a wider window: Textual lays the screen out again for it
        t.screen.resize(40, 132)
        t.process.change_terminal_size(132, 40)
        await t.until_screen(
            lambda s: palette_column(s) > 120, "the footer redrawn for 132 columns"
        )
        # an operator's pause, typed over SSH, lands in the audit log under the key's name
        t.send("p")
        await t.until_screen(lambda s: "Pause campaign 1?" in s, "the pause dialog")
        t.send("over ssh\r")
        await t.until_screen(lambda s: re.search(r"^ *1 .*paused", s, re.M) is not None, "paused")
        t.send("q")
        assert await t.exit_status() == 0
    [entry] = [e for e in audit(workspace, "campaign:1") if e.action == "campaign.status"]
    assert entry.actor == "ssh:ana@laptop"
    assert entry.detail == {"from": "scheduled", "to": "paused", "reason": "over ssh"}
    print(f"first frame over SSH {first_frame:.2f} s")


async def test_an_export_over_ssh_writes_only_into_the_export_folder(
    serve: Serve, keys: Keys, workspace: Path
) -> None:
    """Issue 12 (2): the export dialog over SSH refuses a path (here one that would land in
    the keys file's folder) and writes a plain name only into `[tui] export_folder`."""
    server = await serve(tui_argv(workspace))
    folder = workspace.parent / "exports"
    async with await connect(server, keys["ana"]) as conn:
        t = await terminal(conn, 132, 40)
        await t.until_screen(lambda s: re.search(r"^ *1 .*BRAD", s, re.M) is not None, "list")
        t.send("\r")
        await t.until_screen(lambda s: "Recipients 1–2 of 2" in s, "the campaign screen")
        t.send("e")
        await t.until_screen(lambda s: "File name" in s, "the export dialog")
        t.send("../secrets/authorized_keys")  # replaces the name offered (selected)
        await t.until_screen(lambda s: "../secrets/authorized_keys" in s, "the path typed")
        t.send("\r")
        await t.until_screen(lambda s: "names a folder" in s, "the refusal")
        t.send("\x1b")  # Escape: no export
        await t.until_screen(lambda s: "File name" not in s, "the dialog closed")
        t.send("e")
        await t.until_screen(lambda s: "File name" in s, "the export dialog again")
        t.send("from-ssh")
        await t.until_screen(lambda s: "from-ssh" in s, "the name typed")
        t.send("\r")
        await t.until_screen(lambda s: "2 recipients written to" in s, "the export done")
        t.send("\x1b")  # back to the list (alone: Escape then q would read as alt+q)
        await t.until_screen(lambda s: "disparo — Campaigns" in s, "the list again")
        t.send("q")
        assert await t.exit_status() == 0
    assert sorted(p.name for p in folder.iterdir()) == ["from-ssh.csv"]
    assert not (workspace.parent / "secrets" / "authorized_keys").exists()
    [entry] = [e for e in audit(workspace, "campaign:1") if e.action == "campaign.export"]
    assert entry.actor == "ssh:ana@laptop" and entry.detail["file"] == str(folder / "from-ssh.csv")

"""``disparo ssh-serve``: the command that starts the SSH server and says how to reach it."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import signal
from pathlib import Path

import click

from engine.cli.context import app, fail
from tui.ssh.keys import KeyFileError, KeyRing, describe
from tui.ssh.server import TuiServer, load_host_key
from tui.ssh.session import tui_argv


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

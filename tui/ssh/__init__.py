"""The TUI over SSH (``disparo ssh-serve``): one PTY and one ``disparo tui`` process per session.

Only public keys listed in the authorized_keys file get in, each with its role; passwords,
keyboard-interactive, commands other than the TUI, subsystems and every kind of forwarding are
refused. ``keys`` is the key ring (who gets in, with which role), ``session`` one session's PTY
and process, ``server`` the asyncssh server, ``command`` the ``disparo ssh-serve`` command.
"""

from __future__ import annotations

from tui.ssh.command import is_loopback, parse_listen, ssh_serve
from tui.ssh.keys import AuthorizedKey, KeyFileError, KeyRing, Login, parse_authorized_keys, role_of
from tui.ssh.server import TuiServer, load_host_key
from tui.ssh.session import TuiSession, session_environment, tui_argv

__all__ = [
    "AuthorizedKey",
    "KeyFileError",
    "KeyRing",
    "Login",
    "TuiServer",
    "TuiSession",
    "is_loopback",
    "load_host_key",
    "parse_authorized_keys",
    "parse_listen",
    "role_of",
    "session_environment",
    "ssh_serve",
    "tui_argv",
]

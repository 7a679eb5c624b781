"""The authorized_keys file as a key ring: who may log in over SSH, and with which role.

Only public keys listed in the file get in; each key's role (viewer, operator, admin) is the
standard ``environment="DISPARO_ROLE=…"`` option of its line, parsed by asyncssh's own
authorized_keys parser.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from engine.actions import ROLES

#: one logger for the whole server, named as before it was split in modules (log lines and
#: logging configuration that name ``tui.ssh`` keep working)
log = logging.getLogger("tui.ssh")

#: the authorized_keys ``environment`` variable that carries a key's role
ROLE_VARIABLE = "DISPARO_ROLE"
#: the role of a key whose line names none (least privilege)
DEFAULT_ROLE = "viewer"


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

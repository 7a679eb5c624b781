"""What a source kind provides (a folder, an FTP/FTPS or SFTP server), and its failures.

Source methods block (ftplib, paramiko, the file system): the collector runs them in a
worker thread, one session at a time per source. Paths are relative to the source's root,
POSIX style, and never trusted as local paths (F13).
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, BinaryIO, ClassVar

from engine.config import Configurable, Key, SourceSettings
from engine.hosts import HostError, Target, resolve

#: kinds of failure, each with the plain words ``sources test`` prints (F6)
CATEGORIES = {
    "dns": "the host name could not be resolved (DNS)",
    "refused": "the server refused the connection (nothing listening on that port?)",
    "timeout": "the server did not answer in time (firewall, wrong port?)",
    "tls": "the TLS handshake failed (certificate or host name not trusted)",
    "hostkey": "the server's SSH host key is unknown or changed",
    "auth": "the user name or password/key was refused",
    "permission": "the server refused access to the folder or file (permissions)",
    "not-found": "the folder or file does not exist",
    "private-host": "the host is a private or loopback address (F3)",
    "protocol": "the server answered something unexpected",
    "lost": "the connection was lost in the middle of the work",
    "config": "the source's settings cannot be used",
    "unsafe-name": "a remote name is not a safe relative path (F13)",
    "symlink": "a symbolic link is in the way, and disparo never follows one (F13)",
    "io": "the file system refused the operation",
}

#: the longest file name (one path component, in UTF-8 bytes) the usual file systems take:
#: ext4, XFS, btrfs, NTFS (in UTF-16 units), and the servers in front of them
NAME_MAX = 255
#: F8: how long a file must have looked the same before it is taken, unless the kind says
#: otherwise (``default_min_age``) or the source sets ``min_age``
DEFAULT_MIN_AGE = timedelta(seconds=30)


class SourceError(Exception):
    """A source operation failed; ``category`` is one of ``CATEGORIES``.

    The message never carries a secret (F5).
    """

    def __init__(self, category: str, message: str) -> None:
        assert category in CATEGORIES, category
        self.category = category
        super().__init__(message)

    def describe(self) -> str:
        return f"{CATEGORIES[self.category]}: {self}"


def network_error(exc: BaseException, where: str) -> SourceError | None:
    """Plain-words category for the socket-level failures every network source shares."""
    import socket
    import ssl

    if isinstance(exc, SourceError):
        return exc
    if isinstance(exc, HostError):
        return SourceError("private-host", str(exc))
    if isinstance(exc, socket.gaierror):
        return SourceError("dns", f"{where}: {exc.strerror or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return SourceError("refused", f"{where}: connection refused")
    if isinstance(exc, TimeoutError):
        return SourceError("timeout", f"{where}: no answer (timed out)")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return SourceError("tls", f"{where}: {exc.verify_message or exc.reason}")
    if isinstance(exc, ssl.SSLError):
        return SourceError("tls", f"{where}: {exc.reason or exc}")
    if isinstance(exc, (EOFError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return SourceError("lost", f"{where}: the server closed the connection")
    return None


@dataclass(frozen=True)
class RemoteFile:
    """One file of a listing: its path relative to the source root, size and modification time."""

    path: str
    size: int
    mtime: datetime | None
    #: the entry is a symbolic link (to a file or a folder): listed so that the collector
    #: reports it, never downloaded, walked into or written through
    symlink: bool = False
    #: why the entry cannot be read (a folder the server refuses to list): reported, so that
    #: one such entry never hides the rest of the listing
    unreadable: str | None = None


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unsafe_reason(path: str) -> str | None:
    """F13: why ``path`` is not a safe relative path, or None when it is."""
    if not path:
        return "empty name"
    if _CONTROL.search(path):
        return "the name contains NUL or control characters"
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return "the name is an absolute path"
    if "\\" in path:
        return "the name contains a backslash"
    if any(part in ("..", ".", "") for part in path.split("/")):
        return "the name contains `..`, `.` or an empty folder"
    return None


def join(*parts: str) -> str:
    """Join relative POSIX path pieces (no leading slash)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def temporary_name(path: str) -> str:
    """The name an upload to ``path`` is written under before it is renamed: in the same
    folder, hidden (listings leave it out) and short whatever the final name's length, so a
    name that fits the file system never fails for its temporary twin."""
    folder = path.rpartition("/")[0]
    return join(folder, f".disparo-{uuid.uuid4().hex[:16]}.part")


def _min_age_key(default: timedelta) -> Key:
    return Key(
        "duration",
        default,
        help="F8: a file is taken only once it has looked the same for at least this long "
        "(measured on this engine's clock, from the first listing that showed it as it is).",
    )


class Source(Configurable, ABC):
    """A place files are collected from and results published to.

    Subclasses set ``name`` (the ``kind`` in ``disparo.toml``) and ``config_keys``. A kind
    that reaches a server has a ``host`` key (and ``default_port``): the engine applies the
    host rules to it for every kind, built-in or not — a bare name (F2) at load, no private
    address (F3) as written and as resolved before each session; ``self.target`` is then the
    vetted address to connect to (connecting to it, not to the name again, closes the door
    to DNS rebinding). A read-only kind sets ``writable = False`` and leaves ``move``,
    ``upload`` and ``exists`` out: its files stay where they are after import (the ledger
    keeps them from being imported twice, F10) and nothing is published to it.

    Every kind has the key ``min_age`` (F8, added to its ``config_keys``), whose default is
    the kind's ``default_min_age``. Names written to a source (reports, numbered twins) fit
    in ``name_max`` bytes; a kind that knows its file system's limit sets it in ``open()``.
    Moves and uploads never follow a symbolic link out of the source's folder (they raise
    ``SourceError("symlink")``), and listings give links as ``RemoteFile(symlink=True)``.
    """

    name: ClassVar[str]
    #: files can be moved and written (processed/rejected folders, reports, publications)
    writable: ClassVar[bool] = True
    #: the port of ``host`` when the source does not set ``port``
    default_port: ClassVar[int | None] = None
    #: F8: the default of the source's ``min_age`` key for this kind
    default_min_age: ClassVar[timedelta] = DEFAULT_MIN_AGE

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # the stability rule (F8) is the engine's, for every kind: each gets the key, with
        # its own default, unless it declares the key itself
        if "min_age" not in cls.__dict__.get("config_keys", {}):
            cls.config_keys = {**cls.config_keys, "min_age": _min_age_key(cls.default_min_age)}

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings
        self.skip_folders = {settings.processed_dir.strip("/"), settings.rejected_dir.strip("/")}
        #: the vetted address of ``host`` for this session (None: the kind has no host)
        self.target: Target | None = None
        #: the longest name (UTF-8 bytes) this source's file system takes
        self.name_max = NAME_MAX

    @property
    def min_age(self) -> timedelta:
        """F8: how long a file must look the same before it is taken."""
        value = self.settings.options.get("min_age")
        return value if isinstance(value, timedelta) else self.default_min_age

    @property
    def host(self) -> str | None:
        """The server this source reaches (its ``host`` key), or None."""
        host = self.settings.options.get("host")
        return str(host).strip() if host else None

    @property
    def port(self) -> int | None:
        return self.settings.options.get("port") or self.default_port

    def vet(self) -> None:
        """F3 before connecting: resolve ``host`` and refuse a private address unless the
        source allows it (``SourceError("private-host")``, or ``"dns"``); keep the address."""
        host = self.host
        if host is None:
            return
        try:
            self.target = resolve(host, self.port or 0, allow_private=self.settings.allow_private)
        except (HostError, OSError) as exc:
            raise network_error(exc, host) or SourceError("dns", f"{host}: {exc}") from None

    @classmethod
    def validate_settings(cls, settings: SourceSettings) -> list[tuple[str, str]]:
        """Checks across keys, at config load: (key, message) pairs."""
        return []

    @abstractmethod
    def describe(self) -> str:
        """Where the source points, without secrets (``sftp://user@host:22/in``)."""

    @abstractmethod
    def open(self) -> None:
        """Connect and log in (raise ``SourceError``)."""

    @abstractmethod
    def close(self) -> None:
        """Disconnect; never raises."""

    @abstractmethod
    def list_files(self) -> list[RemoteFile]:
        """Every file under the root, recursively, except the processed/rejected folders and
        hidden files; folders are wallets (N13)."""

    @abstractmethod
    def download(self, path: str, dest: BinaryIO) -> int:
        """Copy the file's bytes into ``dest``; return how many were written."""

    def move(self, path: str, new_path: str) -> None:
        """Rename ``path`` to ``new_path``, creating its folders; ``FileExistsError`` if taken.
        A writable kind must implement it."""
        raise SourceError("permission", f"{self.describe()} is read-only: cannot move {path}")

    def upload(self, data: BinaryIO, path: str) -> None:
        """Write ``data`` to ``path`` (creating folders) under a temporary name, then rename.
        A writable kind must implement it."""
        raise SourceError("permission", f"{self.describe()} is read-only: cannot write {path}")

    def exists(self, path: str) -> bool:
        """Whether a file exists at ``path``. A writable kind must implement it."""
        raise SourceError("permission", f"{self.describe()} is read-only")

    @contextmanager
    def session(self) -> Iterator[Source]:
        """The host rules (``vet``), then ``open()`` … ``close()``. Kinds do not override it."""
        self.vet()
        self.open()
        try:
            yield self
        finally:
            self.close()

    def skipped(self, relative: str) -> bool:
        """Folders and files a listing leaves out: processed/rejected at the root, hidden names,
        and the temporary names upload tools use while a transfer is running."""
        top = relative.split("/", 1)[0]
        if top in self.skip_folders:
            return True
        leaf = relative.rsplit("/", 1)[-1]
        return leaf.startswith(".") or leaf.endswith((".part", ".filepart", ".tmp", ".partial"))

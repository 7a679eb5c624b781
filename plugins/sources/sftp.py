"""The ``sftp`` source kind (F1, F4): SSH file transfer with paramiko.

The server's host key is checked against a known_hosts file or a pinned fingerprint
(``SHA256:…`` as ``ssh-keygen -lf`` prints it); an unknown or changed key refuses the
connection. There is no "accept new keys" mode.

Symbolic links: SFTP listings (READDIR) carry ``lstat`` attributes on OpenSSH's server and
asyncssh's, so a link shows as a link: it is listed as ``RemoteFile(symlink=True)`` and never
walked into. Before a file is moved or a report written, each folder on the way is checked
with LSTAT, and a link among them refuses the write (``SourceError("symlink")``); downloads
LSTAT the file first. The server resolves paths itself, so a link swapped in between the
check and the write is outside what a client can prevent: the server's own chroot is the
last line there.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from engine import hookimpl
from engine.config import Key, SourceSettings
from engine.hosts import connect, resolve
from engine.plugins.source import (
    RemoteFile,
    Source,
    SourceError,
    join,
    network_error,
    temporary_name,
    unsafe_reason,
)

if TYPE_CHECKING:
    # paramiko is imported when a source connects: loading the plugins, which every
    # `disparo` process does, stays light
    import paramiko


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's ``SHA256:<base64>`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _check_fingerprint(value: object) -> str | None:
    text = str(value)
    if not text.startswith("SHA256:") or len(text) < 20:
        return (
            'expected an OpenSSH fingerprint such as "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxd'
            'CARLviKw6E5SY8" (see `ssh-keygen -lf`)'
        )
    return None


class SftpSource(Source):
    """SFTP (SSH, port 22) with password or key authentication."""

    name = "sftp"
    default_port = 22
    config_keys: ClassVar[dict[str, Key]] = {
        "host": Key("str", help="The server's bare host name (F2, F3)."),
        "port": Key("int", 22, "The server's SSH port.", minimum=1, maximum=65535),
        "user": Key("str", help="The login."),
        "password": Key("secret", None, "The login's password (or `key_file`)."),
        "key_file": Key(
            "path",
            None,
            help="Private key for key authentication (only its owner may read it: mode 600).",
            target="private",
        ),
        "key_passphrase": Key("secret", None, "The passphrase of `key_file`, when it has one."),
        "known_hosts": Key(
            "path",
            None,
            help="The known_hosts file holding the server's host key; default: "
            "~/.ssh/known_hosts. An unknown or changed host key is refused.",
            target="file",
        ),
        "host_key_fingerprint": Key(
            "str",
            None,
            'The server\'s host key pinned by fingerprint ("SHA256:…"), instead of known_hosts.',
            check=_check_fingerprint,
        ),
        "remote_dir": Key("str", ".", "The folder on the server files are dropped into."),
        "timeout": Key(
            "duration", None, "How long connecting and each transfer step may take; default 30 s."
        ),
    }

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        o = settings.options
        self.user: str = o["user"]
        self.password = o.get("password")
        self.key_file: Path | None = o.get("key_file")
        self.key_passphrase = o.get("key_passphrase")
        self.known_hosts: Path | None = o.get("known_hosts")
        self.pinned: str | None = o.get("host_key_fingerprint")
        self.remote_dir: str = o.get("remote_dir") or "."
        timeout = o.get("timeout")
        self.timeout = timeout.total_seconds() if timeout else 30.0
        self.client: paramiko.SSHClient | None = None
        self.sftp: paramiko.SFTPClient | None = None
        #: folders found real (not links) in this session
        self._checked: set[str] = set()

    @classmethod
    def validate_settings(cls, settings: SourceSettings) -> list[tuple[str, str]]:
        o = settings.options
        found = []
        if o.get("password") is None and o.get("key_file") is None:
            found.append(("password", "give `password_env`/`password_file` or `key_file`"))
        return found

    def describe(self) -> str:
        return f"sftp://{self.user}@{self.host}:{self.port}/{self.remote_dir.lstrip('/')}"

    def open(self) -> None:
        import paramiko

        from plugins.sources._sftp_keys import PinnedKey

        where = f"{self.host}:{self.port}"
        client = paramiko.SSHClient()
        sock = None
        try:
            known = self.known_hosts
            if known is None and self.pinned is None:
                known = Path.home() / ".ssh" / "known_hosts"
            if known is not None:
                if not known.is_file():
                    raise SourceError(
                        "hostkey",
                        f"the known_hosts file {known} does not exist; add the server's key "
                        "to it (ssh-keyscan, checked by hand) or set `host_key_fingerprint`",
                    )
                client.load_host_keys(str(known))
            client.set_missing_host_key_policy(
                PinnedKey(self.pinned) if self.pinned else paramiko.RejectPolicy()
            )
            target = self.target or resolve(
                self.host or "", self.port or 0, allow_private=self.settings.allow_private
            )
            sock = connect(target, self.timeout)
            pkey = None
            if self.key_file is not None:
                passphrase = self.key_passphrase.reveal() if self.key_passphrase else None
                pkey = paramiko.PKey.from_path(self.key_file, passphrase)
            client.connect(
                hostname=self.host,
                port=self.port,
                username=self.user,
                password=self.password.reveal() if self.password is not None else None,
                pkey=pkey,
                sock=sock,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
            sftp.get_channel().settimeout(self.timeout)  # type: ignore[union-attr]
            if self.remote_dir not in ("", "."):
                sftp.chdir(self.remote_dir)
        except Exception as exc:
            client.close()
            if sock is not None:
                sock.close()
            raise self._error(exc, where) from None
        self.client, self.sftp = client, sftp

    def close(self) -> None:
        sftp, client = self.sftp, self.client
        self.sftp = self.client = None
        self._checked.clear()
        for thing in (sftp, client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: S110 - closing a broken connection
                    pass

    def _error(self, exc: BaseException, where: str) -> SourceError:
        import paramiko

        if isinstance(exc, paramiko.BadHostKeyException):
            return SourceError(
                "hostkey",
                f"{where}: the host key CHANGED (now {fingerprint(exc.key)}, expected "
                f"{fingerprint(exc.expected_key)}): refused. If the server was really "
                "reinstalled, update known_hosts after checking the new key out of band",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            return SourceError("auth", f"{where}: authentication refused for user {self.user}")
        if isinstance(exc, paramiko.SSHException):
            text = str(exc)
            if "known_hosts" in text or "fingerprint" in text:
                return SourceError("hostkey", f"{where}: {text}")
            if any(word in text.lower() for word in ("dropped", "closed", "eof", "reset")):
                return SourceError("lost", f"{where}: the server closed the connection")
            return SourceError("protocol", f"{where}: {text}")
        if isinstance(exc, (PermissionError,)) or getattr(exc, "errno", None) == errno.EACCES:
            return SourceError("permission", f"{where}: permission denied")
        if isinstance(exc, FileNotFoundError) or getattr(exc, "errno", None) == errno.ENOENT:
            return SourceError("not-found", f"{where}: no such file or folder")
        found = network_error(exc, where)
        if found is not None:
            return found
        if type(exc) is OSError and exc.errno is None and "socket is closed" in str(exc).lower():
            # paramiko's word for a transport that died under a request: the connection is gone
            return SourceError("lost", f"{where}: the server closed the connection")
        if type(exc) is OSError and exc.errno is None:
            # paramiko raises a bare IOError(text) for an SFTP status other than "no such
            # file" and "permission denied" (a failure the server reports: a name too long,
            # a full disk): the request failed, the connection is fine
            return SourceError("io", f"{where}: {exc}")
        if isinstance(exc, OSError):
            return SourceError("lost", f"{where}: {exc.strerror or exc}")
        raise exc

    def _conn(self) -> paramiko.SFTPClient:
        if self.sftp is None:
            raise SourceError("config", "not connected: use the source inside session()")
        return self.sftp

    def _safe(self, path: str) -> None:
        reason = unsafe_reason(path)
        if reason:
            raise SourceError("unsafe-name", f"{path!r}: {reason}")

    def list_files(self) -> list[RemoteFile]:
        found: list[RemoteFile] = []
        self._walk("", found)
        return sorted(found, key=lambda f: f.path)

    def _walk(self, folder: str, found: list[RemoteFile]) -> None:
        try:
            entries = self._conn().listdir_attr(folder or ".")
        except Exception as exc:
            raise self._error(exc, f"listing {folder or self.remote_dir}") from None
        for entry in entries:
            relative = f"{folder}/{entry.filename}" if folder else entry.filename
            mode = entry.st_mode or 0
            mtime = (
                datetime.fromtimestamp(entry.st_mtime, UTC) if entry.st_mtime is not None else None
            )
            if unsafe_reason(relative):
                found.append(RemoteFile(relative, entry.st_size or 0, mtime))
                continue
            if stat.S_ISLNK(mode):
                top = relative.split("/", 1)[0]
                if top in self.skip_folders or not self.skipped(relative):
                    found.append(RemoteFile(relative, entry.st_size or 0, mtime, symlink=True))
                continue
            if self.skipped(relative):
                continue
            if stat.S_ISDIR(mode):
                self._walk(relative, found)
            elif stat.S_ISREG(mode):
                found.append(RemoteFile(relative, entry.st_size or 0, mtime))

    def download(self, path: str, dest: BinaryIO) -> int:
        self._safe(path)
        folder = path.rpartition("/")[0]
        if folder:
            self._real_folders(folder, create=False)
        try:
            if stat.S_ISLNK(self._conn().lstat(path).st_mode or 0):
                raise SourceError("symlink", f"{path} is a symbolic link: not followed")
            return int(self._conn().getfo(path, dest))
        except Exception as exc:
            raise self._error(exc, f"downloading {path}") from None

    def exists(self, path: str) -> bool:
        self._safe(path)
        try:
            self._conn().lstat(path)
            return True
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise self._error(exc, f"checking {path}") from None

    def _mkdirs(self, folder: str) -> None:
        self._real_folders(folder, create=True)

    def _real_folders(self, folder: str, *, create: bool) -> None:
        """Check (LSTAT) that each folder on the way to ``folder`` is a real folder, not a
        link; create the missing ones when ``create``."""
        sftp = self._conn()
        current = ""
        for part in folder.split("/"):
            current = join(current, part)
            if current in self._checked:
                continue
            try:
                mode = sftp.lstat(current).st_mode or 0
            except FileNotFoundError:
                if not create:
                    return
                try:
                    sftp.mkdir(current)
                except Exception as exc:
                    raise self._error(exc, f"creating {current}") from None
                self._checked.add(current)
                continue
            except Exception as exc:
                raise self._error(exc, f"checking {current}") from None
            if stat.S_ISLNK(mode):
                raise SourceError(
                    "symlink",
                    f"{current} is a symbolic link on the server, never followed: make it a "
                    "real folder",
                )
            if not stat.S_ISDIR(mode):
                raise SourceError("io", f"{current} is not a folder")
            self._checked.add(current)

    def move(self, path: str, new_path: str) -> None:
        self._safe(path)
        self._safe(new_path)
        if "/" in new_path:
            self._mkdirs(new_path.rsplit("/", 1)[0])
        if self.exists(new_path):
            raise FileExistsError(new_path)
        try:
            self._conn().rename(path, new_path)
        except Exception as exc:
            raise self._error(exc, f"moving {path}") from None

    def upload(self, data: BinaryIO, path: str) -> None:
        self._safe(path)
        folder = path.rpartition("/")[0]
        if folder:
            self._mkdirs(folder)
        temp = temporary_name(path)
        sftp = self._conn()
        try:
            sftp.putfo(data, temp, confirm=True)
            try:
                sftp.posix_rename(temp, path)
            except OSError:
                if self.exists(path):
                    sftp.remove(path)
                sftp.rename(temp, path)
        except Exception as exc:
            raise self._error(exc, f"uploading {path}") from None


@hookimpl
def register_source_kinds(register: Any) -> None:
    register(SftpSource)

"""The ``ftp`` and ``ftps`` source kinds (F1–F5): plain FTP and explicit FTPS (AUTH TLS).

FTPS protects the data channel (PROT P) before any listing or transfer, verifies the
certificate and the host name with a real SSL context, and resumes the control connection's
TLS session on every data connection: servers such as vsftpd (``require_ssl_reuse``),
FileZilla Server and ProFTPD refuse data connections that do not (522), and the standard
library's ``FTP_TLS`` does not do it by itself (CPython issue 63699).

Symbolic links: what FTP can tell is up to the server. ``LIST`` (``ls -l`` lines) shows a
link as ``l…`` on pyftpdlib, vsftpd and ProFTPD; ``MLSD`` usually describes the link's
target instead (pyftpdlib, vsftpd has no MLSD), except servers that give
``type=OS.unix=slink:…`` (ProFTPD with ``ShowSymlinks``). So: a link seen in a listing is
reported (``RemoteFile(symlink=True)``), and before a move or an upload each folder on the
way is looked up in its parent's ``LIST`` and refused when it shows as a link. A server that
presents a link as a plain file or folder in both cannot be told apart; there the server's
own confinement (chroot, pyftpdlib's check that a path stays under the home folder) is what
keeps a write inside.
"""

from __future__ import annotations

import ftplib
import socket
import ssl
from datetime import UTC, datetime
from typing import Any, BinaryIO, ClassVar

from engine import hookimpl
from engine.config import Key, SourceSettings
from engine.hosts import Target, resolve
from engine.plugins.source import (
    RemoteFile,
    Source,
    SourceError,
    join,
    network_error,
    temporary_name,
    unsafe_reason,
)

FTP_KEYS: dict[str, Key] = {
    "host": Key("str", help="The server's bare host name (F2, F3)."),
    "port": Key("int", None, "The server's port; default 21.", minimum=1, maximum=65535),
    "user": Key("str", "anonymous", "The login."),
    "password": Key("secret", None, "The login's password."),
    "remote_dir": Key("str", "/", "The folder on the server files are dropped into."),
    "timeout": Key(
        "duration", None, "How long connecting and each transfer step may take; default 30 s."
    ),
}


def connect_vetted(ftp: ftplib.FTP, target: Target, timeout: float) -> str:
    """ftplib's connect(), to the checked address (F3), keeping the host name for TLS.

    Passive data connections then go to the same peer address: ftplib ignores the address
    in the server's PASV reply unless told to trust it.
    """
    ftp.host, ftp.port, ftp.timeout = target.host, target.port, timeout
    ftp.sock = socket.create_connection((target.address, target.port), timeout)
    ftp.af = ftp.sock.family
    ftp.file = ftp.sock.makefile("r", encoding=ftp.encoding)
    ftp.welcome = ftp.getresp()
    return ftp.welcome


class SessionReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            control = self.sock
            assert isinstance(control, ssl.SSLSocket)
            conn = self.context.wrap_socket(  # type: ignore[attr-defined]
                conn, server_hostname=self.host, session=control.session
            )
        return conn, size


def _parse_mlsd_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None


class FtpSource(Source):
    """Plain FTP (port 21). Passwords travel in clear: prefer ``ftps`` or ``sftp``."""

    name = "ftp"
    default_port = 21
    tls = False
    config_keys: ClassVar[dict[str, Key]] = FTP_KEYS

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        options = settings.options
        self.user: str = options.get("user") or "anonymous"
        self.password = options.get("password")
        self.remote_dir: str = options.get("remote_dir") or "/"
        timeout = options.get("timeout")
        self.timeout = timeout.total_seconds() if timeout else 30.0
        self.ftp: ftplib.FTP | None = None
        #: folders found real (not links) in this session
        self._checked: set[str] = set()

    def describe(self) -> str:
        scheme = "ftps" if self.tls else "ftp"
        return f"{scheme}://{self.user}@{self.host}:{self.port}{self.remote_dir}"

    # -- connection ------------------------------------------------------------------------

    def _client(self) -> ftplib.FTP:
        return ftplib.FTP(timeout=self.timeout)

    def _secure(self, ftp: ftplib.FTP) -> None:
        """Hook for FTPS: AUTH TLS before login."""

    def _after_login(self, ftp: ftplib.FTP) -> None:
        """Hook for FTPS: PROT P before any listing or transfer."""

    def open(self) -> None:
        where = f"{self.host}:{self.port}"
        ftp = self._client()
        try:
            target = self.target or resolve(
                self.host or "", self.port or 0, allow_private=self.settings.allow_private
            )
            connect_vetted(ftp, target, self.timeout)
            self._secure(ftp)
            password = self.password.reveal() if self.password is not None else ""
            ftp.login(self.user, password)
            self._after_login(ftp)
            ftp.voidcmd("TYPE I")
            if self.remote_dir not in ("", "/"):
                ftp.cwd(self.remote_dir)
            elif self.remote_dir == "/":
                ftp.cwd("/")
        except Exception as exc:
            self._abort(ftp)
            raise self._error(exc, where) from None
        self.ftp = ftp

    def _abort(self, ftp: ftplib.FTP) -> None:
        try:
            ftp.close()
        except Exception:  # noqa: S110 - closing a broken connection
            pass

    def close(self) -> None:
        self._checked.clear()
        if self.ftp is None:
            return
        ftp, self.ftp = self.ftp, None
        try:
            ftp.quit()
        except Exception:
            self._abort(ftp)

    def _error(self, exc: BaseException, where: str) -> SourceError:
        found = network_error(exc, where)
        if found is not None:
            return found
        if isinstance(exc, ftplib.error_perm):
            code = str(exc)[:3]
            if code in ("530", "532"):
                return SourceError("auth", f"{where}: login refused for user {self.user} ({exc})")
            if code in ("522", "534", "533"):
                return SourceError("tls", f"{where}: {exc}")
            if code == "550":
                return SourceError("permission", f"{where}: {exc}")
            return SourceError("protocol", f"{where}: {exc}")
        if isinstance(exc, (ftplib.error_temp, ftplib.error_reply, ftplib.error_proto)):
            return SourceError("protocol", f"{where}: {exc}")
        if isinstance(exc, OSError):
            return SourceError("lost", f"{where}: {exc.strerror or exc}")
        raise exc

    def _conn(self) -> ftplib.FTP:
        if self.ftp is None:
            raise SourceError("config", "not connected: use the source inside session()")
        return self.ftp

    def _do(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except SourceError:
            raise
        except Exception as exc:
            raise self._error(exc, what) from None

    # -- listing ---------------------------------------------------------------------------

    def list_files(self) -> list[RemoteFile]:
        found: list[RemoteFile] = []
        self._walk("", found)
        return sorted(found, key=lambda f: f.path)

    def _walk(self, folder: str, found: list[RemoteFile]) -> None:
        ftp = self._conn()
        try:
            entries = list(ftp.mlsd(folder or ".", facts=["type", "size", "modify"]))
        except ftplib.error_perm as exc:
            if folder and str(exc)[:3] == "550":
                # a folder the server will not list (often a link leading outside the home
                # folder): reported, and the rest of the listing goes on
                found.append(RemoteFile(folder, -1, None, unreadable=str(exc)))
                return
            if str(exc)[:3] not in ("500", "501", "502", "504"):
                raise self._error(exc, f"listing {folder or '/'}") from None
            entries = self._list_fallback(folder)
        except Exception as exc:
            raise self._error(exc, f"listing {folder or '/'}") from None
        for name, facts in entries:
            kind = facts.get("type", "").lower()
            if kind in ("cdir", "pdir") or name in (".", ".."):
                continue
            relative = f"{folder}/{name}" if folder else name
            size = int(facts.get("size", "-1") or -1)
            mtime = _parse_mlsd_time(facts.get("modify"))
            if unsafe_reason(relative):
                # F13: listed as given, so the collector can refuse it; never used as a path
                found.append(RemoteFile(relative, size, mtime))
                continue
            if kind.startswith(("os.unix=slink", "os.unix=symlink", "link")):
                top = relative.split("/", 1)[0]
                if top in self.skip_folders or not self.skipped(relative):
                    found.append(RemoteFile(relative, size, mtime, symlink=True))
                continue
            if self.skipped(relative):
                continue
            if kind == "dir":
                self._walk(relative, found)
            elif kind in ("file", ""):
                found.append(RemoteFile(relative, size, mtime))

    def _list_fallback(self, folder: str) -> list[tuple[str, dict[str, str]]]:
        """Servers without MLSD (vsftpd): LIST for names, types and sizes, MDTM for times."""
        ftp = self._conn()
        lines: list[str] = []
        ftp.retrlines(f"LIST {folder}" if folder else "LIST", lines.append)
        ftp.voidcmd("TYPE I")  # retrlines switched to ASCII, where servers refuse SIZE
        entries: list[tuple[str, dict[str, str]]] = []
        for line in lines:
            parts = line.split(None, 8)
            if len(parts) < 9 or parts[0][0] not in "-dl":
                continue
            name = parts[8]
            if parts[0][0] == "l":  # never followed; listed so that it is reported
                entries.append((name.split(" -> ", 1)[0], {"type": "link", "size": parts[4]}))
                continue
            facts = {"type": "dir" if parts[0][0] == "d" else "file", "size": parts[4]}
            if facts["type"] == "file":
                try:
                    reply = ftp.sendcmd(f"MDTM {join(folder, name)}")
                    facts["modify"] = reply.split()[-1]
                except ftplib.all_errors:
                    pass
            entries.append((name, facts))
        return entries

    # -- files -----------------------------------------------------------------------------

    def download(self, path: str, dest: BinaryIO) -> int:
        self._safe(path)
        total = 0

        def write(chunk: bytes) -> None:
            nonlocal total
            dest.write(chunk)
            total += len(chunk)

        self._do(f"downloading {path}", self._conn().retrbinary, f"RETR {path}", write, 1 << 16)
        return total

    def _mkdirs(self, folder: str) -> None:
        ftp = self._conn()
        current = ""
        for part in folder.split("/"):
            if not part:
                continue
            parent, current = current, join(current, part)
            if current in self._checked:
                continue
            self._refuse_link(parent, part)
            try:
                ftp.mkd(current)
            except ftplib.error_perm as exc:
                if str(exc)[:3] != "550":  # 550: already exists (or no permission: rename says)
                    raise self._error(exc, f"creating {current}") from None
            self._checked.add(current)

    def _refuse_link(self, parent: str, name: str) -> None:
        """Refuse to write through ``parent/name`` when the parent's LIST shows it as a link."""
        lines: list[str] = []
        where = f"listing {parent or '/'}"
        command = f"LIST {parent}" if parent else "LIST"
        self._do(where, self._conn().retrlines, command, lines.append)
        # retrlines switched to ASCII, where servers refuse SIZE (``exists``): back to binary
        self._do(where, self._conn().voidcmd, "TYPE I")
        for line in lines:
            parts = line.split(None, 8)
            if len(parts) == 9 and parts[0][:1] == "l" and parts[8].split(" -> ")[0] == name:
                raise SourceError(
                    "symlink",
                    f"{join(parent, name)} is a symbolic link on the server, never followed: "
                    "make it a real folder",
                )

    def exists(self, path: str) -> bool:
        self._safe(path)
        try:
            self._conn().size(path)
            return True
        except ftplib.error_perm:
            return False
        except Exception as exc:
            raise self._error(exc, f"checking {path}") from None

    def move(self, path: str, new_path: str) -> None:
        self._safe(path)
        self._safe(new_path)
        if "/" in new_path:
            self._mkdirs(new_path.rsplit("/", 1)[0])
        if self.exists(new_path):
            raise FileExistsError(new_path)
        self._do(f"moving {path}", self._conn().rename, path, new_path)

    def upload(self, data: BinaryIO, path: str) -> None:
        self._safe(path)
        folder = path.rpartition("/")[0]
        if folder:
            self._mkdirs(folder)
        temp = temporary_name(path)
        self._do(f"uploading {path}", self._conn().storbinary, f"STOR {temp}", data, 1 << 16)
        if self.exists(path):
            self._do(f"replacing {path}", self._conn().delete, path)
        self._do(f"renaming {temp}", self._conn().rename, temp, path)

    def _safe(self, path: str) -> None:
        reason = unsafe_reason(path)
        if reason:
            raise SourceError("unsafe-name", f"{path!r}: {reason}")


class FtpsSource(FtpSource):
    """Explicit FTPS: AUTH TLS on port 21, certificate and host name verified, PROT P."""

    name = "ftps"
    tls = True
    config_keys: ClassVar[dict[str, Key]] = {
        **FTP_KEYS,
        "ca_file": Key(
            "path", None, help="CA bundle (PEM) to trust instead of the system's.", target="file"
        ),
    }

    def __init__(self, settings: SourceSettings) -> None:
        super().__init__(settings)
        ca_file = settings.options.get("ca_file")
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.context.check_hostname = True
        self.context.verify_mode = ssl.CERT_REQUIRED

    def _client(self) -> ftplib.FTP:
        return SessionReusingFTP_TLS(context=self.context, timeout=self.timeout)

    def _secure(self, ftp: ftplib.FTP) -> None:
        assert isinstance(ftp, ftplib.FTP_TLS)
        ftp.auth()

    def _after_login(self, ftp: ftplib.FTP) -> None:
        assert isinstance(ftp, ftplib.FTP_TLS)
        ftp.prot_p()


@hookimpl
def register_source_kinds(register: Any) -> None:
    register(FtpSource)
    register(FtpsSource)

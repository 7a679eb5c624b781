"""A read-only source kind: files a web server publishes, listed in its ``index.json``
(the source-kind example of docs/plugins.md)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from datetime import datetime, timedelta
from typing import Any, BinaryIO, ClassVar
from urllib.parse import quote

from engine import hookimpl
from engine.config import Key
from engine.hosts import Target
from engine.plugins.source import RemoteFile, Source, SourceError, network_error, unsafe_reason


class VettedHTTPS(http.client.HTTPSConnection):
    """HTTPS to the address the host rules vetted (F3), the certificate checked for the
    host's name: reconnecting never resolves the name again."""

    def __init__(self, target: Target, tls: ssl.SSLContext, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=tls)
        self.target = target
        self.tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self.target.address, self.target.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.target.host)


class HttpsIndexSource(Source):
    """Files on a web server, listed in ``<path>/index.json`` as ``[{"path", "size",
    "modified"}]``. Read-only: disparo imports them and leaves them where they are."""

    name = "https-index"  # [sources.NAME] says kind = "https-index"
    writable = False  # no move, upload or exists: nothing is written back
    default_port = 443  # the port of `host` when the source sets no `port`
    config_keys: ClassVar[dict[str, Key]] = {
        "host": Key("str", help="The web server: a bare name, no https:// and no path."),
        "port": Key("int", None, minimum=1, maximum=65535),
        "path": Key("str", "/", help="The folder on the server that holds index.json."),
        "token": Key("secret", None, help="A bearer token, when the server asks for one."),
        "ca_file": Key("path", None, help="A CA bundle to trust instead of the system's."),
        "timeout": Key("duration", timedelta(seconds=30)),
    }

    def describe(self) -> str:
        return f"https://{self.host}:{self.port}{self.folder}"  # never the token

    @property
    def folder(self) -> str:
        return "/" + "".join(f"{p}/" for p in str(self.settings.options["path"]).split("/") if p)

    def open(self) -> None:
        # session() has vetted the host by now: self.target is the address to connect to
        assert self.target is not None
        options = self.settings.options
        ca_file = options.get("ca_file")
        tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.http = VettedHTTPS(self.target, tls, options["timeout"].total_seconds())
        try:
            self.http.connect()
        except OSError as exc:
            raise network_error(exc, self.describe()) or SourceError(
                "protocol", f"{self.describe()}: {exc}"
            ) from None

    def close(self) -> None:
        self.http.close()

    def _get(self, name: str) -> http.client.HTTPResponse:
        """GET a file of the folder; a failure is a ``SourceError`` in plain words (F6)."""
        token = self.settings.options.get("token")
        headers = {"Authorization": f"Bearer {token.reveal()}"} if token is not None else {}
        where = f"{self.describe()}{name}"
        try:
            self.http.request("GET", self.folder + quote(name), headers=headers)
            response = self.http.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            raise network_error(exc, where) or SourceError("lost", f"{where}: {exc}") from None
        if response.status != 200:
            response.read()
            category = {401: "auth", 403: "permission", 404: "not-found"}.get(
                response.status, "protocol"
            )
            raise SourceError(category, f"{where}: HTTP {response.status} {response.reason}")
        return response

    def list_files(self) -> list[RemoteFile]:
        try:
            entries: list[dict[str, Any]] = json.loads(self._get("index.json").read())
            found = [
                RemoteFile(
                    str(e["path"]),
                    int(e["size"]),
                    datetime.fromisoformat(e["modified"]) if e.get("modified") else None,
                )
                for e in entries
            ]
        except (ValueError, TypeError, KeyError) as exc:
            raise SourceError("protocol", f"{self.describe()}index.json: {exc}") from None
        # an unsafe name is listed as given (the collector refuses it, F13); the processed
        # and rejected folders, hidden and temporary names are left out
        return [f for f in found if unsafe_reason(f.path) or not self.skipped(f.path)]

    def download(self, path: str, dest: BinaryIO) -> int:
        reason = unsafe_reason(path)
        if reason:  # F13: never used as a path
            raise SourceError("unsafe-name", f"{path!r}: {reason}")
        response = self._get(path)
        total = 0
        while chunk := response.read(1 << 20):
            dest.write(chunk)
            total += len(chunk)
        return total


@hookimpl
def register_source_kinds(register: Any) -> None:
    register(HttpsIndexSource)

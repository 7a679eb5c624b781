"""A local HTTP server emulating seed 002's group API (G1): ``GET /grupos?token=T&pagina=N``
answers ``{"tamanhoPagina", "pagina", "totalRegistros", "registros": [{"nome", "email"}]}``.

``mode`` makes it misbehave the ways G2 lists: ``wrong-page`` (answers another page),
``not-json``, ``short`` (announces more records than it has), ``hang`` (page 2 never
answers), ``flaky`` (each page answers 503 once, then right), ``down`` (always 503).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class GroupFeed:
    """The server's state; change ``records`` and ``mode`` between syncs."""

    token: str
    records: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    mode: str = "ok"
    requests: list[str] = field(default_factory=list)
    port: int = 0
    #: serve https with this context (else plain http)
    tls: ssl.SSLContext | None = None
    _failed: set[int] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None
    _release: asyncio.Event | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/grupos?token={self.token}"

    async def _page(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if request.query.get("token") != self.token:
            return web.json_response({"erro": "token"}, status=401)
        page = int(request.query.get("pagina", "0"))
        if self.mode == "down":
            return web.Response(status=503)
        if self.mode == "flaky" and page not in self._failed:
            self._failed.add(page)
            return web.Response(status=503)
        if self.mode == "not-json":
            return web.Response(text="<html>erro</html>", content_type="text/html")
        if self.mode == "hang" and page == 2:
            assert self._release is not None
            await self._release.wait()
        size = self.page_size
        chunk = self.records[(page - 1) * size : page * size]
        total = len(self.records) + (5 if self.mode == "short" else 0)
        return web.json_response(
            {
                "tamanhoPagina": size,
                "pagina": page + 1 if self.mode == "wrong-page" and page == 2 else page,
                "totalRegistros": total,
                "registros": chunk,
            }
        )

    def start(self) -> GroupFeed:
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._release = asyncio.Event()
            app = web.Application()
            app.router.add_get("/grupos", self._page)
            self._runner = web.AppRunner(app, access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        if self._release is not None:
            loop.call_soon_threadsafe(self._release.set)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join()

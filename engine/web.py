"""Serving an aiohttp application on a ``host:port`` (the tracking endpoint, the send API)."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, listen: str) -> tuple[web.AppRunner, str]:
    """Bind ``app`` on ``listen`` (``host:port``; ``[::1]:8080`` for IPv6, port 0 for any
    free port) without an access log; return its runner (``cleanup()`` stops it) and the
    bound ``host:port``."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port))
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname() if sockets else (host, port)
    return runner, f"{bound[0]}:{bound[1]}"

"""Serving an aiohttp application on a ``host:port`` (the tracking endpoint, the send API)."""

from __future__ import annotations

from aiohttp import web


class ListenError(OSError):
    """``listen`` cannot be bound (the port is taken, the address is not this host's): the
    message says which setting names it and how to fix it."""


async def serve(
    app: web.Application, listen: str, key: str = "listen"
) -> tuple[web.AppRunner, str]:
    """Bind ``app`` on ``listen`` (``host:port``; ``[::1]:8080`` for IPv6, port 0 for any
    free port) without an access log; return its runner (``cleanup()`` stops it) and the
    bound ``host:port``. Raise ``ListenError`` naming ``key`` (the setting ``listen`` comes
    from) when it cannot be bound."""
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]") or "127.0.0.1", int(port))
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ListenError(
            exc.errno,
            f"cannot listen on {listen} ({key}): {exc.strerror or exc}; another process may "
            f"be using the port (another disparo?): stop it, or set {key} to a free "
            '"host:port"',
        ) from exc
    sockets = getattr(site._server, "sockets", None) or []
    bound = sockets[0].getsockname() if sockets else (host, port)
    return runner, f"{bound[0]}:{bound[1]}"

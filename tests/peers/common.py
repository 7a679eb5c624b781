"""What the loopback peers share: their own event loop in a thread, and a TLS server context."""

from __future__ import annotations

import asyncio
import ssl

import trustme


def run_loop(loop: asyncio.AbstractEventLoop) -> None:
    """A peer's thread: run ``loop`` until stopped, then cancel what is left and close it."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
        leftovers = asyncio.all_tasks(loop)
        for task in leftovers:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def server_context(ca: trustme.CA, hostnames: tuple[str, ...]) -> ssl.SSLContext:
    """A TLS 1.2+ server context with a certificate from ``ca`` for ``hostnames``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # no client certificates
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    ca.issue_cert(*hostnames).configure_cert(context)
    return context

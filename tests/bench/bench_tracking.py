"""Tracking benchmark (issue: tracking and feedback): how many opens and clicks per second the
endpoint takes on this machine, each one verified (HMAC), recorded as an event and counted on
its delivery and campaign; against a bare aiohttp server answering the same pixel without
any work, driven by the same client in the same run.

The endpoint runs as `disparo tracking serve` in its own process, on the SQLite store of a
20,000-recipient e-mail campaign marked sent; the client is aiohttp with 32 connections.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp

from engine.tokens import Signer
from tests.bench.bench_dispatch import free_port, wait_port, workspace
from tests.bench.conftest import rows

CONNECTIONS = 32


async def _hammer(urls: list[str], *, expect: int) -> float:
    """GET every URL with CONNECTIONS in flight; return requests per second."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    failures = 0
    async with aiohttp.ClientSession(connector=connector) as http:
        queue = iter(urls)

        async def worker() -> None:
            nonlocal failures
            for url in queue:
                async with http.get(url, allow_redirects=False) as response:
                    await response.read()
                    if response.status != expect:
                        failures += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"{failures} requests did not answer {expect}")
    return len(urls) / elapsed


REFERENCE = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    from engine.feedback.tracking import PIXEL

    async def pixel(request):
        return web.Response(body=PIXEL, content_type="image/gif")

    app = web.Application()
    app.add_routes([web.get("/o/{token}", pixel)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def _serve(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def bench_opens_and_clicks_per_second(tmp_path: Path) -> None:
    n = rows(20_000)
    config = workspace(tmp_path, free_port(), n)
    db = tmp_path / "disparo.db"
    with sqlite3.connect(db) as c:
        (campaign,) = c.execute("SELECT id FROM campaigns").fetchone()
        c.execute(
            "UPDATE deliveries SET status = 'sent', sent_at = CURRENT_TIMESTAMP "
            "WHERE campaign_id = ?",
            (campaign,),
        )
        c.execute(
            "UPDATE campaigns SET status = 'completed', sent = recipients WHERE id = ?",
            (campaign,),
        )
        c.execute(
            "INSERT INTO links (campaign_id, position, url) VALUES (?, 1, ?)",
            (campaign, "https://loja.example/oferta"),
        )
        ids = [i for (i,) in c.execute("SELECT id FROM deliveries ORDER BY id")]
    signer = Signer("k" * 32)

    port = free_port()
    server = _serve(
        ["-m", "engine.cli", "--config", str(config), "tracking", "serve", "--listen",
         f"127.0.0.1:{port}"]
    )  # fmt: skip
    try:
        wait_port(port)
        base = f"http://127.0.0.1:{port}"
        opens = [f"{base}/o/{signer.sign('o', d)}.gif" for d in ids]
        clicks = [f"{base}/c/{signer.sign('c', campaign, d, 1)}" for d in ids]
        open_rate = asyncio.run(_hammer(opens, expect=200))
        click_rate = asyncio.run(_hammer(clicks, expect=302))
        repeat_rate = asyncio.run(_hammer(opens, expect=200))  # every open a second time
    finally:
        server.terminate()
        server.wait(timeout=60)

    ref_port = free_port()
    reference = _serve(["-c", REFERENCE, str(ref_port)])
    try:
        wait_port(ref_port)
        ref = f"http://127.0.0.1:{ref_port}"
        ref_rate = asyncio.run(
            _hammer([f"{ref}/o/{signer.sign('o', d)}.gif" for d in ids], expect=200)
        )
    finally:
        reference.terminate()
        reference.wait(timeout=60)

    with sqlite3.connect(db) as c:
        events = dict(c.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
        opened, clicked, total_clicks = c.execute(
            "SELECT opened, clicked, clicks FROM campaigns WHERE id = ?", (campaign,)
        ).fetchone()
    assert events.get("open") == 2 * n and events.get("click") == n, events
    assert (opened, clicked, total_clicks) == (n, n, n)
    print(
        f"\ntracking endpoint, {n:,} deliveries, {CONNECTIONS} connections (SQLite):\n"
        f"  opens (first)      {open_rate:8,.0f} req/s\n"
        f"  clicks (302)       {click_rate:8,.0f} req/s\n"
        f"  opens (repeated)   {repeat_rate:8,.0f} req/s\n"
        f"  bare aiohttp pixel {ref_rate:8,.0f} req/s (reference)\n"
        f"  ratio opens/reference {open_rate / ref_rate:.2f}, clicks/reference "
        f"{click_rate / ref_rate:.2f}\n"
        f"  stored: {events.get('open', 0):,} open and {events.get('click', 0):,} click events; "
        f"campaign opened {opened:,}, clicked {clicked:,}, clicks {total_clicks:,}"
    )

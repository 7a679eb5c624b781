"""Tracking benchmark (issue 16, goal 3): opens and clicks per second through the tracking
endpoint, each one verified (HMAC), recorded as an event and counted on its delivery and
campaign, against a bare aiohttp server answering the same pixel and the same redirect
without any work, in the same run.

The endpoint runs as `disparo tracking serve` in its own process on the SQLite store of an
e-mail campaign marked sent, and as `disparo run`'s endpoint (the whole engine, with nothing
to send) in another, each on its own deliveries; the reference in a third. The load comes
from ``wrk`` (a C HTTP load generator; ``apt-get install wrk``) with ``wrk_paths.lua``: 32
keep-alive connections, every request a distinct signed open or click read from a file, each
sent once (a fixed request count). Without wrk the bench says how to install it and falls
back to ``tests.bench.loadgen`` (raw asyncio, pipelined). The load generator's ceiling
against a canned-answer server is printed too. After a tenth of a round through each server
to warm up, a round drives a fresh slice of deliveries (first opens, then a click each)
through each disparo server and through the reference, which one goes first turning from
round to round; disparo's time runs until its store holds every event (answers come before
the write: a rate that the writer cannot keep up with would not count). The ratio is the
median of 3 paired rounds' ratios; goal ≥ 0.5× for opens and for clicks, for both disparo
servers.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import tomli_w

from engine.tokens import Signer
from tests.bench.bench_dispatch import free_port, workspace
from tests.bench.conftest import rows

CONNECTIONS = 32
#: wrk threads (one core's worth: the server under test has the other)
THREADS = 1
#: requests pipelined per connection by the fallback load generator (wrk: none)
DEPTH = 4
ROUNDS = 3
LOADGEN = str(Path(__file__).with_name("loadgen.py"))
WRK_SCRIPT = str(Path(__file__).with_name("wrk_paths.lua"))
WRK = shutil.which("wrk")

REFERENCE = textwrap.dedent(
    """
    import sys
    from aiohttp import web
    from engine.feedback.tracking import NO_STORE, PIXEL

    async def pixel(request):
        return web.Response(body=PIXEL, content_type="image/gif", headers=NO_STORE)

    async def click(request):
        raise web.HTTPFound("https://loja.example/oferta", headers=NO_STORE)

    app = web.Application()
    app.add_routes([web.get("/o/{token}", pixel), web.get("/c/{token}", click)])
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def wait_port(port: int, seconds: float = 120.0) -> None:
    """Wait until something listens on ``port`` (a server starting on a busy machine)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {seconds:.0f} s")


def _serve(args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _load(port: int, paths: list[str], expect: int, folder: Path) -> tuple[float, float]:
    """Drive ``paths`` at the server on ``port``, each once; when the load began and when the
    last answer came (``time.time()``), as the load generator measured them."""
    listing = folder / "paths.txt"
    listing.write_text("\n".join(paths) + "\n")
    if WRK is None:
        return _loadgen(port, paths, expect, listing)
    marker = folder / "wrk-done"
    markers = [Path(f"{marker}.{k}") for k in range(THREADS)]
    for m in markers:
        m.unlink(missing_ok=True)
    out = folder / "wrk.out"
    with out.open("w") as sink:
        wrk = subprocess.Popen(
            [WRK, "-t", str(THREADS), "-c", str(CONNECTIONS), "-d", "600s", "--timeout", "60s",
             "-s", WRK_SCRIPT, f"http://127.0.0.1:{port}",
             "--", str(listing), str(THREADS), str(marker), str(expect)],
            stdout=sink, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            # wrk sleeps for its whole -d: each thread marks when its share is answered, and
            # SIGINT ends the sleep (wrk then prints its summary and our line)
            while not all(m.exists() for m in markers) and wrk.poll() is None:
                time.sleep(0.005)
            if wrk.poll() is None:
                wrk.send_signal(signal.SIGINT)
            wrk.wait(timeout=120)
        finally:
            if wrk.poll() is None:
                wrk.kill()
                wrk.wait()
    text = out.read_text()
    line = next((x for x in text.splitlines() if x.startswith("BENCH ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed (status {wrk.returncode}): {text[-2000:]}")
    found = json.loads(line.removeprefix("BENCH "))
    if found["ok"] != len(paths):
        raise RuntimeError(f"{len(paths) - found['ok']} requests did not answer {expect}")
    return float(found["began"]), float(found["ended"])


def _loadgen(port: int, paths: list[str], expect: int, listing: Path) -> tuple[float, float]:
    """The fallback without wrk: ``tests.bench.loadgen`` (raw asyncio, pipelined)."""
    out = subprocess.run(
        [sys.executable, LOADGEN, "127.0.0.1", str(port), str(listing),
         str(CONNECTIONS), str(DEPTH), str(expect)],
        capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"the load generator failed: {out.stderr[-2000:]}")
    found = json.loads(out.stdout)
    if found["ok"] != len(paths):
        raise RuntimeError(f"{len(paths) - found['ok']} requests did not answer {expect}")
    return float(found["began"]), float(found["began"]) + float(found["seconds"])


def _stored(db: Path, expected: int, began: float) -> float:
    """Wait until the store holds ``expected`` events in all (the endpoint only adds them,
    so the newest id counts them: an index lookup, not a scan that would load the machine);
    seconds since ``began``."""
    with sqlite3.connect(db, timeout=30) as c:
        while True:
            (n,) = c.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
            if n >= expected:
                return time.time() - began
            time.sleep(0.01)


def _ceiling(paths: list[str], folder: Path) -> float:
    port = free_port()
    canned = _serve([LOADGEN, "--canned", str(port)])
    try:
        wait_port(port)
        began, ended = _load(port, paths, 200, folder)
        return len(paths) / (ended - began)
    finally:
        canned.terminate()
        canned.wait(timeout=60)


#: the servers measured: ``disparo tracking serve``, ``disparo run``'s endpoint, bare aiohttp
SERVERS = ("serve", "run", "ref")
LABELS = {
    "serve": "`disparo tracking serve`",
    "run": "`disparo run`'s endpoint",
    "ref": "bare aiohttp",
}


def bench_opens_and_clicks_per_second(tmp_path: Path) -> None:
    if WRK is None:
        print("\nwrk not found: `apt-get install wrk` for the C load generator; using loadgen.py")
    n = rows(20_000)
    warm = max(1, n // 10)  # a first slice through every server, not counted
    ours = ("serve", "run")
    config = workspace(tmp_path, free_port(), (warm + n * ROUNDS) * len(ours))
    ports = {k: free_port() for k in SERVERS}
    # `disparo run` serves the endpoint on [tracking] listen (nothing else to do: the
    # campaign is sent)
    settings = tomllib.loads(config.read_text())
    settings["tracking"]["listen"] = f"127.0.0.1:{ports['run']}"
    config.write_text(tomli_w.dumps(settings))
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
    opens = [f"/o/{signer.sign('o', d)}.gif" for d in ids]
    clicks = [f"/c/{signer.sign('c', campaign, d, 1)}" for d in ids]
    # each disparo server its own deliveries (a first open and a first click each)
    share = warm + n * ROUNDS
    base = {k: i * share for i, k in enumerate(ours)} | {"ref": 0}

    def part(server: str, begin: int, count: int) -> slice:
        return slice(base[server] + begin, base[server] + begin + count)

    servers = {
        "serve": _serve(
            ["-m", "engine.cli", "--config", str(config), "tracking", "serve", "--listen",
             f"127.0.0.1:{ports['serve']}"]
        ),
        "run": _serve(["-m", "engine.cli", "--config", str(config), "run"]),
        "ref": _serve(["-c", REFERENCE, str(ports["ref"])]),
    }  # fmt: skip
    rates: dict[str, list[float]] = {
        f"{what}{server} {kind}": []
        for server in SERVERS
        for kind in ("open", "click")
        for what in ("", "answered ")
    }
    try:
        for k in SERVERS:
            wait_port(ports[k])
        with sqlite3.connect(db) as c:  # events stored so far
            (done,) = c.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
        for _, paths, expect in (("open", opens, 200), ("click", clicks, 302)):
            for k in SERVERS:  # warm-up: caches, first batches
                _load(ports[k], paths[part(k, 0, warm)], expect, tmp_path)
                if k != "ref":
                    done += warm
                    _stored(db, done, 0)
        for r in range(ROUNDS):
            # interleaved: which server goes first turns from round to round
            order = SERVERS[r % 3 :] + SERVERS[: r % 3]
            for kind, paths, expect in (("open", opens, 200), ("click", clicks, 302)):
                for k in order:
                    began, ended = _load(
                        ports[k], paths[part(k, warm + r * n, n)], expect, tmp_path
                    )
                    if k == "ref":
                        rates[f"ref {kind}"].append(n / (ended - began))
                    else:
                        done += n
                        rates[f"{k} {kind}"].append(n / _stored(db, done, began))
                        rates[f"answered {k} {kind}"].append(n / (ended - began))
    finally:
        for process in servers.values():
            process.terminate()
        for name, process in servers.items():
            code = process.wait(timeout=120)
            assert code in (0, -signal.SIGTERM), f"{name} exited with {code}"
    ceiling = _ceiling(opens, tmp_path)

    total = share * len(ours)
    with sqlite3.connect(db) as c:
        events = dict(c.execute("SELECT kind, count(*) FROM events GROUP BY kind").fetchall())
        opened, clicked, total_clicks = c.execute(
            "SELECT opened, clicked, clicks FROM campaigns WHERE id = ?", (campaign,)
        ).fetchone()
        (marked,) = c.execute(
            "SELECT count(*) FROM deliveries WHERE opened_at IS NOT NULL AND clicked_at IS NOT NULL"
        ).fetchone()
    assert events.get("open") == total and events.get("click") == total, events
    assert (opened, clicked, total_clicks, marked) == (total, total, total, total)
    median = {k: statistics.median(v) for k, v in rates.items() if v}
    load = (
        f"wrk, {THREADS} thread, {CONNECTIONS} keep-alive connections, each path once"
        if WRK is not None
        else f"loadgen.py, {CONNECTIONS} keep-alive connections × {DEPTH} pipelined requests"
    )
    print(
        f"\ntracking endpoint, {n:,} deliveries a round after {warm:,} to warm up, {ROUNDS} "
        "rounds (median, the first server turning), SQLite; "
        f"load: {load}, ceiling {ceiling:,.0f} req/s (its own against canned answers)"
    )
    for kind in ("open", "click"):
        ref = median[f"ref {kind}"]
        refs = ", ".join(f"{x:,.0f}" for x in rates[f"ref {kind}"])
        print(f"  {kind + 's':<7} bare aiohttp {ref:8,.0f} req/s (runs {refs})")
        for k in ours:
            mine = median[f"{k} {kind}"]
            paired = [
                a / b for a, b in zip(rates[f"{k} {kind}"], rates[f"ref {kind}"], strict=True)
            ]
            runs = ", ".join(f"{x:,.0f}" for x in rates[f"{k} {kind}"])
            print(
                f"    {LABELS[k]:<26} {mine:8,.0f} req/s until stored (runs {runs}; answered "
                f"at {median[f'answered {k} {kind}']:,.0f}); ratio "
                f"{statistics.median(paired):.2f}× (the rounds' ratios "
                f"{', '.join(f'{x:.2f}' for x in paired)}; goal ≥ 0.5×)"
            )
    print(
        f"  stored: {events.get('open', 0):,} open and {events.get('click', 0):,} click "
        f"events; campaign opened {opened:,}, clicked {clicked:,}, clicks {total_clicks:,}"
    )

"""Dispatch benchmarks (issue: dispatch):

- one engine process sending 100,000 e-mails to Postfix's ``smtp-sink`` (a C sink, so the
  client is what is measured; without Postfix, a minimal asyncio sink in its own process)
  with the rate limit off, against a plain reference client
  (aiosmtplib, the same number of reused connections, one pre-built message) blasting the
  same sink in the same run; peak RSS of the engine;
- peak RSS of an engine sending a 1,000,000-recipient campaign;
- SMS and WhatsApp requests per second through the twilio client against the fake of
  Twilio's API (run in its own process), against plain aiohttp posts;
- token-bucket accuracy: at 10/s for 60 s, starts in every 1-second window.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tomli_w

from engine.testing import write_secret
from tests.bench.conftest import rows

CONCURRENCY = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=True,
    )


def workspace(tmp: Path, port: int, recipients: int) -> Path:
    write_secret(tmp / "key", "k" * 32)
    (tmp / "body.html").write_text(
        "<html><body><p>Olá {{ nome }},</p><p>Temos uma oferta para você em {{ cidade }}."
        "</p><p><a href='https://loja.example/oferta'>Ver a oferta</a></p></body></html>"
    )
    config = tmp / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"log_level": "warning"},
                "tracking": {"public_url": "https://t.example.com", "secret_file": "key"},
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "host": "127.0.0.1",
                        "port": port,
                        "tls": "none",
                        "from_address": "aviso@empresa.com.br",
                        "rate": 1_000_000,
                        "burst": 1000,
                        "concurrency": CONCURRENCY,
                    }
                },
                "wallets": {
                    "BRAD": {
                        "email_subject": "Olá {{ nome }}, uma oferta",
                        "email_template": "body.html",
                    }
                },
            }
        )
    )
    today = (
        datetime.now(UTC)
        .astimezone(__import__("zoneinfo").ZoneInfo("America/Sao_Paulo"))
        .strftime("%d%m%y")
    )
    contacts = tmp / f"mailing_{today}_001_cBRAD_email.csv"
    with contacts.open("w") as out:
        out.write("nome;email;cidade\n")
        for i in range(recipients):
            out.write(f"Pessoa {i};p{i}@example.com;Cidade {i % 100}\n")
    cli(config, "import", str(contacts))
    return config


def engine_run(config: Path, *, stop_after: float | None = None) -> tuple[float, float]:
    """Run the engine (until idle, or for ``stop_after`` seconds then SIGTERM); return
    (wall seconds, peak RSS MB)."""
    args = ["run"] if stop_after else ["run", "--until-idle", "--settle", "0.1"]
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, peak_rss_mb(process.pid))
        if stop_after and time.perf_counter() - start > stop_after:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
            break
        time.sleep(0.05)
    return time.perf_counter() - start, peak


def sent_rate(config: Path) -> tuple[int, float]:
    with sqlite3.connect(config.parent / "disparo.db") as conn:
        first, last, n = conn.execute(
            "SELECT min(sent_at), max(sent_at), count(*) FROM deliveries WHERE status = 'sent'"
        ).fetchone()
    seconds = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    return int(n), n / seconds if seconds else 0.0


REFERENCE = textwrap.dedent(
    """
    import asyncio, sys, time
    import aiosmtplib
    port, total, pool = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    message = (b"From: aviso@empresa.com.br\\r\\nTo: p@example.com\\r\\nSubject: oferta\\r\\n"
               b"Message-ID: <x@empresa.com.br>\\r\\nMIME-Version: 1.0\\r\\n"
               b"Content-Type: text/plain; charset=utf-8\\r\\n\\r\\n" + b"x" * 900 + b"\\r\\n")

    async def worker(queue):
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, use_tls=False,
                               start_tls=False)
        await smtp.connect()
        while (i := await queue.get()) is not None:
            await smtp.sendmail("bounces@empresa.com.br", [f"p{i}@example.com"], message)
        await smtp.quit()

    async def main():
        queue = asyncio.Queue()
        for i in range(total):
            queue.put_nowait(i)
        for _ in range(pool):
            queue.put_nowait(None)
        start = time.perf_counter()
        await asyncio.gather(*(worker(queue) for _ in range(pool)))
        print(total / (time.perf_counter() - start))

    asyncio.run(main())
    """
)


RAW_SINK = textwrap.dedent(
    """
    import asyncio, sys

    class Sink(asyncio.Protocol):
        def connection_made(self, transport):
            self.t, self.buf, self.data = transport, b"", False
            transport.write(b"220 sink ESMTP\\r\\n")

        def data_received(self, chunk):
            self.buf += chunk
            out = []
            while True:
                if self.data:
                    end = self.buf.find(b"\\r\\n.\\r\\n")
                    if end < 0:
                        self.buf = self.buf[-4:]
                        break
                    self.buf, self.data = self.buf[end + 5:], False
                    out.append(b"250 2.0.0 queued\\r\\n")
                    continue
                end = self.buf.find(b"\\r\\n")
                if end < 0:
                    break
                line, self.buf = self.buf[:end].upper(), self.buf[end + 2:]
                if line.startswith(b"EHLO"):
                    out.append(b"250-sink\\r\\n250-PIPELINING\\r\\n250-8BITMIME\\r\\n"
                               b"250 SMTPUTF8\\r\\n")
                elif line.startswith(b"DATA"):
                    self.data = True
                    self.buf = b"\\r\\n" + self.buf
                    out.append(b"354 go\\r\\n")
                elif line.startswith(b"QUIT"):
                    out.append(b"221 bye\\r\\n")
                else:
                    out.append(b"250 ok\\r\\n")
            if out:
                self.t.write(b"".join(out))

    async def main():
        server = await asyncio.get_running_loop().create_server(
            Sink, "127.0.0.1", int(sys.argv[1]))
        await server.serve_forever()

    asyncio.run(main())
    """
)


def start_sink(port: int) -> tuple[subprocess.Popen[bytes], str]:
    """Postfix's C ``smtp-sink`` when installed (it hardly takes any CPU from the client being
    measured), else (or with ``BENCH_SINK=python``) a minimal asyncio sink in its own process
    (slower: it can cap the figures)."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    if Path(binary).exists() and os.environ.get("BENCH_SINK") != "python":
        args = [binary, "-u", "root", f"127.0.0.1:{port}", "1000"]
        what = "Postfix smtp-sink"
    else:
        args = [sys.executable, "-c", RAW_SINK, str(port)]
        what = "a minimal asyncio sink (install Postfix for its C smtp-sink)"
    sink = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return sink, what


def bench_email_100k_to_smtp_sink(tmp_path: Path) -> None:
    n = rows(100_000)
    port = free_port()
    sink, what = start_sink(port)
    try:
        config = workspace(tmp_path, port, n)
        wall, peak = engine_run(config)
        sent, rate = sent_rate(config)
        done = subprocess.run(
            [sys.executable, "-c", REFERENCE, str(port), str(n), str(CONCURRENCY)],
            capture_output=True,
            text=True,
            check=True,
        )
        reference = float(done.stdout.strip())
    finally:
        sink.terminate()
        sink.wait()
    assert sent == n
    print(
        f"\ne-mail: {n:,} messages (multipart/alternative, personalised, VERP, "
        f"List-Unsubscribe) to {what}, {CONCURRENCY} connections, rate limit off"
    )
    print(
        f"  disparo   {rate:8,.0f} messages/s while sending ({wall:.1f} s for the whole "
        f"`run --until-idle`), peak RSS {peak:.0f} MB"
    )
    print(f"  reference {reference:8,.0f} messages/s (aiosmtplib, one pre-built message)")
    print(f"  ratio     {rate / reference:.2f}")


def bench_rss_of_a_million_recipient_campaign(tmp_path: Path) -> None:
    n = rows(1_000_000)
    port = free_port()
    sink, _ = start_sink(port)
    try:
        config = workspace(tmp_path, port, n)
        _, peak = engine_run(config, stop_after=30)
        sent, rate = sent_rate(config)
    finally:
        sink.terminate()
        sink.wait()
    print(
        f"\na {n:,}-recipient e-mail campaign: {sent:,} sent in 30 s ({rate:,.0f}/s), "
        f"engine peak RSS {peak:.0f} MB (the audience stays in the store, not in memory)"
    )


TWILIO_FAKE = textwrap.dedent(
    """
    import signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from tests.peers.twilio import start_twilio_fake
    fake = start_twilio_fake()
    print(fake.base_url, fake.account_sid, fake.auth_token, flush=True)
    signal.sigwait([signal.SIGTERM])
    fake.stop()
    """
)


async def _twilio_rates(
    base_url: str, sid: str, token: str, n: int, root: Path
) -> dict[str, float]:
    import aiohttp

    from channels.twilio import SmsLongChannel, WhatsAppSharedChannel
    from engine.campaign import Campaign, Content
    from engine.clock import RealClock
    from engine.config import load_config
    from engine.plugins.channel import ChannelContext, DeliveryInfo
    from engine.render import variables

    os.environ["TWILIO_TOKEN"] = token
    config_path = root / "twilio.toml"
    config_path.write_text(
        tomli_w.dumps(
            {
                "accounts": {
                    "sms": {
                        "channel": "sms-long",
                        "account_sid": sid,
                        "auth_token_env": "TWILIO_TOKEN",
                        "api_base_url": base_url,
                        "from_number": "+5511900000000",
                    },
                    "wa": {
                        "channel": "whatsapp-shared",
                        "account_sid": sid,
                        "auth_token_env": "TWILIO_TOKEN",
                        "api_base_url": base_url,
                        "from_numbers": ["+5511900000001", "+5511900000002"],
                    },
                },
                "templates": {"PROMO": {"content_sid": "HX" + "a" * 32, "variables": ["nome"]}},
            }
        )
    )
    config = load_config(config_path)
    rates: dict[str, float] = {}
    for name, cls, channel in (
        ("SMS", SmsLongChannel, "sms-long"),
        ("WhatsApp", WhatsAppSharedChannel, "whatsapp-shared"),
    ):
        account = config.accounts["sms" if name == "SMS" else "wa"]
        ch = cls(account, ChannelContext(config, RealClock()))
        await ch.open()
        campaign = Campaign(
            id=1,
            name="x",
            channel=channel,
            account=account.name,
            start_at=RealClock().now(),
            content=Content(body="Olá {{ nome }}", template="PROMO"),
        )
        prepared = ch.prepare(campaign)
        slots = asyncio.Semaphore(CONCURRENCY)

        async def one(
            i: int, ch: Any = ch, prepared: Any = prepared, slots: asyncio.Semaphore = slots
        ) -> None:
            async with slots:
                phone = f"+55119{i:08d}"
                await ch.send(
                    prepared,
                    DeliveryInfo(
                        i,
                        1,
                        phone,
                        variables(
                            name="Ana", email=None, phone=phone, external_key=None, fields={}
                        ),
                    ),
                )

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        rates[name] = n / (time.perf_counter() - start)
        await ch.close()
    url = f"{base_url}/2010-04-01/Accounts/{sid}/Messages.json"
    import base64

    basic = base64.b64encode(f"{sid}:{token}".encode()).decode()
    async with aiohttp.ClientSession(headers={"Authorization": f"Basic {basic}"}) as session:
        slots = asyncio.Semaphore(CONCURRENCY)

        async def post(i: int) -> None:
            async with (
                slots,
                session.post(
                    url, data={"To": f"+55119{i:08d}", "From": "+5511900000000", "Body": "Olá Ana"}
                ) as r,
            ):
                await r.read()

        start = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(n)))
        rates["reference"] = n / (time.perf_counter() - start)
    return rates


def bench_sms_and_whatsapp_through_the_twilio_client(tmp_path: Path) -> None:
    n = rows(5_000) if os.environ.get("BENCH_ROWS") is None else max(100, rows(5_000) // 20)
    root = Path(__file__).resolve().parents[2]
    fake = subprocess.Popen(
        [sys.executable, "-c", TWILIO_FAKE, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert fake.stdout is not None
        base_url, sid, token = fake.stdout.readline().split()
        rates = asyncio.run(_twilio_rates(base_url, sid, token, n, tmp_path))
    finally:
        fake.send_signal(signal.SIGTERM)
        fake.wait(timeout=30)
        if fake.stdout is not None:
            fake.stdout.close()
    print(
        f"\nTwilio: {n:,} messages each through the real client (async HTTP, "
        f"{CONCURRENCY} in flight) to the fake API in its own process"
    )
    for name in ("SMS", "WhatsApp"):
        print(
            f"  {name:9} {rates[name]:7,.0f} requests/s "
            f"({rates[name] / rates['reference']:.2f}x plain aiohttp posts)"
        )
    print(f"  reference {rates['reference']:7,.0f} requests/s (aiohttp, the same form)")


def bench_token_bucket_accuracy() -> None:
    from engine.clock import RealClock
    from engine.sending.bucket import TokenBucket

    seconds = 60.0 if os.environ.get("BENCH_ROWS") is None else 10.0

    async def run() -> list[float]:
        clock = RealClock()
        bucket = TokenBucket(10, 10, clock)
        starts: list[float] = []
        end = clock.monotonic() + seconds
        while clock.monotonic() < end:
            await bucket.take()
            starts.append(clock.monotonic())
        return starts

    starts = asyncio.run(run())
    worst = 0
    j = 0
    for i, at in enumerate(starts):
        while j < len(starts) and starts[j] < at + 1.0:
            j += 1
        worst = max(worst, j - i)
    steady = [b - a for a, b in itertools.pairwise(starts[10:])]
    print(
        f"\ntoken bucket at 10/s, burst 10, for {seconds:.0f} s: {len(starts)} starts; "
        f"the busiest 1-second window had {worst} (limit rate + burst = 20); steady "
        f"spacing {sum(steady) / len(steady) * 1000:.1f} ms (ideal 100 ms)"
    )

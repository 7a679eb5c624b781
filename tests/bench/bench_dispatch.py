"""Dispatch benchmarks (issue 16, goals 1, 2 and 6):

- one engine process sending e-mails (``BENCH_MESSAGES``, default 20,000) to Postfix's
  ``smtp-sink`` (C, in its own process) with the rate limit off, against the plain reference
  client (aiosmtplib ``sendmail`` on the same number of reused connections, one pre-built
  message) in paired rounds, median of ``BENCH_ROUNDS`` (3): msg/s, CPU ms/msg, peak RSS,
  ratio; Postfix's ``smtp-source -d -s 16`` against the same sink is printed as the limit.
  Without Postfix (``apt-get install postfix``) a minimal asyncio sink stands in (its own
  ceiling printed, measured with a raw client pipelining 50 transactions a write);
- pacing at the sink: the busiest 1-second window of arrivals, the campaign's first second
  included, against rate + burst (D10);
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
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import tomli_w

from engine.testing import write_secret
from tests.bench import sinks
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


def workspace(
    tmp: Path,
    port: int,
    recipients: int,
    *,
    rate: float = 1_000_000,
    burst: int = 1000,
    concurrency: int = CONCURRENCY,
    accounts: int = 1,
    database_url: str | None = None,
) -> Path:
    """A workspace whose campaign(s) send ``recipients`` e-mails to the sink on ``port``: one
    account (``mail``), or ``accounts`` accounts (``mail00``…) each with its own wallet and
    file (the recipients split between them)."""
    tmp.mkdir(parents=True, exist_ok=True)
    write_secret(tmp / "key", "k" * 32)
    (tmp / "body.html").write_text(
        "<html><body><p>Olá {{ nome }},</p><p>Temos uma oferta para você em {{ cidade }}."
        "</p><p><a href='https://loja.example/oferta'>Ver a oferta</a></p></body></html>"
    )
    account = {
        "channel": "email",
        "host": "127.0.0.1",
        "port": port,
        "tls": "none",
        "from_address": "aviso@empresa.com.br",
        "rate": rate,
        "burst": burst,
        "concurrency": concurrency,
    }
    names = ["mail"] if accounts == 1 else [f"mail{k:02d}" for k in range(accounts)]
    wallets = ["BRAD"] if accounts == 1 else [f"W{k:02d}" for k in range(accounts)]
    engine: dict[str, Any] = {"log_level": "warning"}
    if database_url:
        engine["database_url"] = database_url
    config = tmp / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": engine,
                "tracking": {"public_url": "https://t.example.com", "secret_file": "key"},
                "accounts": {name: dict(account) for name in names},
                "wallets": {
                    wallet: {
                        "email_subject": "Olá {{ nome }}, uma oferta",
                        "email_template": "body.html",
                        **({"default_sender": name} if accounts > 1 else {}),
                    }
                    for wallet, name in zip(wallets, names, strict=True)
                },
            }
        )
    )
    today = (
        datetime.now(UTC)
        .astimezone(__import__("zoneinfo").ZoneInfo("America/Sao_Paulo"))
        .strftime("%d%m%y")
    )
    for k, wallet in enumerate(wallets):
        contacts = tmp / f"mailing_{today}_{k + 1:03d}_c{wallet}_email.csv"
        with contacts.open("w") as out:
            out.write("nome;email;cidade\n")
            for i in range(k, recipients, len(wallets)):
                out.write(f"Pessoa {i};p{i}@example.com;Cidade {i % 100}\n")
        cli(config, "import", str(contacts))
    return config


class Measured(NamedTuple):
    """A child process's wall time, CPU time (user + system) and peak RSS."""

    wall: float
    cpu: float
    rss_mb: float
    stdout: str


def measured(args: list[str], *, stop_after: float | None = None) -> Measured:
    """Run ``args`` to its end (or SIGTERM it after ``stop_after`` seconds) and measure it
    with wait4: its CPU and peak RSS (its children's included when it reaps them)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL)
        terminated = False
        peak = 0.0  # VmHWM from /proc (wait4's maxrss counts the forked parent's pages)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            peak = max(peak, peak_rss_mb(process.pid))
            if stop_after is not None and time.perf_counter() - start > stop_after:
                process.send_signal(signal.SIGTERM)
                stop_after, terminated = None, True
            time.sleep(0.02)
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read().decode()
    if process.returncode != 0 and not terminated:
        raise RuntimeError(f"{args[:4]} exited with {process.returncode}: {text[-2000:]}")
    return Measured(wall, usage.ru_utime + usage.ru_stime, peak, text)


def engine_run(config: Path, *, stop_after: float | None = None) -> tuple[float, float]:
    """Run the engine (until idle, or for ``stop_after`` seconds then SIGTERM); return
    (wall seconds, peak RSS MB)."""
    m = engine_measured(config, stop_after=stop_after)
    return m.wall, m.rss_mb


def engine_measured(
    config: Path, *, stop_after: float | None = None, extra: tuple[str, ...] = ()
) -> Measured:
    args = ["run"] if stop_after else ["run", "--until-idle", "--settle", "0.1"]
    return measured(
        [sys.executable, "-m", "engine.cli", "--config", str(config), *args, *extra],
        stop_after=stop_after,
    )


def sent_rate(config: Path, database: str | None = None) -> tuple[int, float]:
    """(messages sent, messages/s from the first to the last send) as the store has them."""
    if database is None:
        with sqlite3.connect(config.parent / "disparo.db") as conn:
            first, last, n = conn.execute(
                "SELECT min(sent_at), max(sent_at), count(*) FROM deliveries WHERE status = 'sent'"
            ).fetchone()
        first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    else:
        import psycopg

        with psycopg.connect(database) as conn:
            row = conn.execute(
                "SELECT min(sent_at), max(sent_at), count(*) FROM deliveries WHERE status = 'sent'"
            ).fetchone()
            assert row is not None
            first, last, n = row
    seconds = (last - first).total_seconds()
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

#: the sink's own ceiling: a raw client pipelining 50 whole transactions per write on each
#: of its connections, so that the sink, not this client, is what is measured
BLASTER = textwrap.dedent(
    """
    import asyncio, sys, time
    port, total, pool = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    one = (b"MAIL FROM:<b@empresa.com.br>\\r\\nRCPT TO:<p@example.com>\\r\\nDATA\\r\\n"
           b"Subject: x\\r\\n\\r\\n" + b"x" * 1500 + b"\\r\\n.\\r\\n")
    BATCH = 50

    async def worker(n):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await reader.readline()
        writer.write(b"EHLO blaster\\r\\n")
        while not (await reader.readline()).startswith(b"250 "):
            pass
        done = 0
        while done < n:
            k = min(BATCH, n - done)
            writer.write(one * k)
            replies = 0
            while replies < 4 * k:
                line = await reader.readline()
                if line[3:4] == b" ":
                    replies += 1
            done += k
        writer.close()

    async def main():
        start = time.perf_counter()
        await asyncio.gather(*(worker(total // pool) for _ in range(pool)))
        print(total // pool * pool / (time.perf_counter() - start))

    asyncio.run(main())
    """
)


class Sink(sinks.SinkProcess):
    """The SMTP sink in its own process; ``arrivals()`` stops it and returns the arrival time
    of each message it accepted."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.record = tmp / f"arrivals-{self.port}.txt"
        self.what = "a minimal asyncio SMTP sink in its own process"
        self.process = subprocess.Popen(
            sinks.command(self.port, self.record),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def arrivals(self) -> list[float]:
        self.stop()
        text = self.record.read_text() if self.record.exists() else ""
        return [sinks.arrival(line).at for line in text.splitlines()]


SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX_HINT = (
    "  (Postfix's smtp-sink / smtp-source are not installed: `apt-get install postfix` for the "
    "C sink and the limit; the asyncio sink is used instead)"
)


def postfix_tool(path: str) -> str | None:
    """Postfix's C test tool at ``path`` (or on PATH), when installed."""
    name = Path(path).name
    found = shutil.which(name) or (path if Path(path).exists() else None)
    return found


class PostfixSink(sinks.SinkProcess):
    """Postfix's ``smtp-sink`` (C, announces PIPELINING) in its own process: what the
    throughput is measured against, so that no Python sink takes CPU from the measured
    client."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.what = "Postfix's smtp-sink (C) in its own process"
        user = ["-u", "nobody"] if os.geteuid() == 0 else []  # required when run as root
        self.process = subprocess.Popen(
            [binary, *user, f"127.0.0.1:{self.port}", "256"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)


def throughput_sink(tmp: Path) -> Sink | PostfixSink:
    """Postfix's smtp-sink when installed, else the asyncio sink (with a one-line hint)."""
    binary = postfix_tool(SMTP_SINK)
    if binary is None:
        print(POSTFIX_HINT)
        return Sink(tmp)
    return PostfixSink(binary)


def smtp_source_rate(port: int, n: int, sessions: int = CONCURRENCY) -> float | None:
    """Postfix's ``smtp-source`` (C, no pipelining) sending ``n`` messages of 900 bytes on
    ``sessions`` parallel reused connections: the limit of this machine and sink; None when
    it is not installed."""
    binary = postfix_tool(SMTP_SOURCE)
    if binary is None:
        return None
    m = measured(
        [
            binary,
            "-d",
            "-s",
            str(sessions),
            "-m",
            str(n),
            "-l",
            "900",
            "-f",
            "bounces@empresa.com.br",
            "-t",
            "p@example.com",
            f"127.0.0.1:{port}",
        ]
    )
    return n / m.wall


def start_sink(port: int) -> tuple[subprocess.Popen[bytes], str]:
    """The minimal asyncio sink in its own process on ``port`` (what other benches use)."""
    sink = subprocess.Popen(
        sinks.command(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return sink, "a minimal asyncio SMTP sink in its own process"


def busiest_window(times: list[float], width: float = 1.0) -> int:
    """The most arrivals in any window [t, t + width) that starts at an arrival."""
    times = sorted(times)
    worst = j = 0
    for i, at in enumerate(times):
        while j < len(times) and times[j] - at < width:
            j += 1
        worst = max(worst, j - i)
    return worst


def reference_run(port: int, n: int, concurrency: int = CONCURRENCY) -> Measured:
    m = measured([sys.executable, "-c", REFERENCE, str(port), str(n), str(concurrency)])
    return m


def median(values: list[float]) -> float:
    return statistics.median(values)


def bench_email_to_the_sink_against_a_plain_client(tmp_path: Path) -> None:
    """Paired rounds (median of ROUNDS): the plain aiosmtplib client, then disparo's `run
    --until-idle`, sending the same count at the same concurrency to the same sink (Postfix's
    smtp-sink when installed); Postfix's smtp-source against the same sink is the limit."""
    n = int(os.environ.get("BENCH_MESSAGES", rows(20_000)))
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    disparo: list[tuple[float, float, float]] = []
    plain: list[tuple[float, float, float]] = []
    ratios: list[float] = []
    limits: list[float] = []
    sink_busy: list[float] = []
    with throughput_sink(tmp_path) as sink:
        ceiling: float | None = None
        if isinstance(sink, Sink):
            ceiling = float(
                measured([sys.executable, "-c", BLASTER, str(sink.port), str(n), "16"]).stdout
            )
        for r in range(rounds):
            config = workspace(tmp_path / f"round{r}", sink.port, n)
            # ABBA: the reference first in even rounds, second in odd ones (a machine whose
            # load drifts favours neither)
            ref = reference_run(sink.port, n) if r % 2 == 0 else None
            before = sink.cpu()
            run = engine_measured(config)
            sent, rate = sent_rate(config)
            assert sent == n
            sink_busy.append((sink.cpu() - before) / (n / rate))
            disparo.append((rate, run.cpu / n * 1000, run.rss_mb))
            ref = ref or reference_run(sink.port, n)
            ref_rate = float(ref.stdout.strip())
            plain.append((ref_rate, ref.cpu / n * 1000, ref.rss_mb))
            ratios.append(rate / ref_rate)
            limit = smtp_source_rate(sink.port, n)
            if limit is not None:
                limits.append(limit)
    print(
        f"\ne-mail: {n:,} messages (multipart/alternative, personalised, VERP, "
        f"List-Unsubscribe, tracked link and pixel) to {sink.what}, {CONCURRENCY} "
        f"connections, rate limit off; median of {rounds} paired rounds; load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    for name, values in (("disparo", disparo), ("plain", plain)):
        rate, cpu, rss = (median([v[k] for v in values]) for k in range(3))
        print(
            f"  {name:9} {rate:8,.0f} msg/s, {cpu:.2f} ms CPU/msg (the whole process), "
            f"peak RSS {rss:.0f} MB"
        )
    print(
        "  (plain = aiosmtplib sendmail on 16 reused connections, one pre-built message; "
        "disparo's CPU includes its start-up, import of the store and confirmation)"
    )
    print(
        f"  ratio     {median(ratios):.2f}x the plain client (rounds: "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + ")"
    )
    if limits:
        rate = median([v[0] for v in disparo])
        print(
            f"  limit     {median(limits):8,.0f} msg/s: Postfix smtp-source -d -s {CONCURRENCY} "
            f"(C, 900-byte messages) to the same sink; disparo {rate / median(limits):.2f}x it"
        )
    elif not isinstance(sink, Sink):
        print(POSTFIX_HINT)
    if ceiling is not None:
        print(
            f"  sink ceiling {ceiling:,.0f} msg/s (a raw client pipelining 50 transactions per "
            f"write)"
        )
    print(f"  while disparo sent, the sink was busy {median(sink_busy):.0%} of the time")


def bench_pacing_at_the_sink_from_the_first_second(tmp_path: Path) -> None:
    """D10 at the receiver: the busiest 1-s window of arrivals, the campaign's first second
    included, against rate + burst."""
    cases = [(20, 20, 16, 120), (100, 10, 16, 500)]
    print("\npacing at the SMTP sink (arrivals per sliding 1-s window), concurrency 16")
    for rate, burst, concurrency, n in cases:
        with Sink(tmp_path) as sink:
            config = workspace(
                tmp_path / f"pace{rate}",
                sink.port,
                n,
                rate=rate,
                burst=burst,
                concurrency=concurrency,
            )
            engine_measured(config)
            arrivals = sink.arrivals()
        first = [a for a in arrivals if a < min(arrivals) + 1.0]
        print(
            f"  rate {rate:3}, burst {burst:2}: busiest window {busiest_window(arrivals):3}, "
            f"first second {len(first):3} (limit rate + burst = {rate + burst}); "
            f"{len(arrivals)} messages"
        )


def bench_rss_of_a_million_recipient_campaign(tmp_path: Path) -> None:
    n = rows(1_000_000)
    with Sink(tmp_path) as sink:
        config = workspace(tmp_path, sink.port, n)
        _, peak = engine_run(config, stop_after=30)
        sent, rate = sent_rate(config)
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

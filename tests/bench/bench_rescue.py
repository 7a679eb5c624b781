"""Operations benchmarks (issue: operational truth), with the default lease (30 s) and
heartbeat (5 s):

- kill -9 of a `disparo run` sending 20,000 e-mails to the sandbox sink, a second `disparo
  run` started at once: how long until it rescues the dead engine's deliveries (the log line),
  until every recipient has the message, and how many went twice against the documented bound
  (two chunks of min(200, 4 × concurrency, rate × lease / 4));
- SIGTERM to `disparo run` and `disparo run --until-idle` while the relay accepts connections
  and never greets: how long until the process exits (the default stop timeout is 10 s).
"""

from __future__ import annotations

import mailbox
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from engine.testing import write_secret
from tests.bench.bench_dispatch import free_port, wait_port
from tests.bench.conftest import rows
from tests.helpers import load
from tests.peers.smtp import start_smtp_server

RATE = 1000
CONCURRENCY = 8


def disparo(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "--config", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def delivered(maildir: Path) -> int:
    new = maildir / "new"
    return sum(1 for _ in os.scandir(new)) if new.exists() else 0


def bench_rescue_after_kill_9(tmp_path: Path) -> None:
    recipients = rows(20_000)
    port = free_port()
    maildir = tmp_path / "mail"
    write_secret(tmp_path / "key", "s" * 32)
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    config = tmp_path / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"log_level": "info"},
                "tracking": {
                    "public_url": "https://t.example.com",
                    "secret_file": "key",
                    "listen": "127.0.0.1:0",
                },
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "sandbox": True,
                        "sink": f"127.0.0.1:{port}",
                        "from_address": "aviso@empresa.com.br",
                        "rate": RATE,
                        "burst": 100,
                        "concurrency": CONCURRENCY,
                    }
                },
                "wallets": {
                    "BRAD": {"email_subject": "Olá {{ nome }}", "email_template": "body.html"}
                },
            }
        )
    )
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    contacts = tmp_path / f"mailing_{today}_001_cBRAD_email.csv"
    contacts.write_text(
        "nome;email\n" + "".join(f"P{i};p{i}@example.com\n" for i in range(recipients))
    )
    listen = f"127.0.0.1:{port}"
    sink = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "sink", "--listen", listen, "--maildir", str(maildir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    engines: list[subprocess.Popen[bytes]] = []
    log = tmp_path / "second.log"
    try:
        wait_port(port)
        subprocess.run(
            [sys.executable, "-m", "engine.cli", "--config", str(config), "import", str(contacts)],
            check=True,
            capture_output=True,
        )
        first = disparo(config, tmp_path / "first.log", "run")
        engines.append(first)
        # in the middle of a chunk (chunks are 32 here: a round number is a chunk's end)
        while delivered(maildir) < recipients // 5 + 13:
            time.sleep(0.002)
        os.kill(first.pid, signal.SIGKILL)
        killed = time.monotonic()
        first.wait()
        at_kill = delivered(maildir)
        second = disparo(config, log, "run")
        engines.append(second)
        rescued = None
        while delivered(maildir) < recipients:
            if rescued is None and "rescuing" in log.read_text(errors="replace"):
                rescued = time.monotonic() - killed
            time.sleep(0.05)
        done = time.monotonic() - killed
        if rescued is None and "rescuing" in log.read_text(errors="replace"):
            rescued = done
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=120)
    finally:
        for process in engines:
            if process.poll() is None:
                process.kill()
                process.wait()
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=60)
    line = next(
        (x for x in log.read_text(errors="replace").splitlines() if "rescuing" in x), "(none)"
    )
    ids: dict[str, set[str]] = {}
    sends: Counter[str] = Counter()
    for message in mailbox.Maildir(maildir, create=False):
        to = str(message["To"])
        sends[to] += 1
        ids.setdefault(to, set()).add(str(message["Message-ID"]))
    twice = sum(n - 1 for n in sends.values())
    bound = 2 * min(200, 4 * CONCURRENCY, RATE * 30 // 4)
    print(
        f"\nkill -9 after {at_kill:,} of {recipients:,} e-mails (lease 30 s, heartbeat 5 s): "
        f"the next engine rescued the dead one's work {rescued or 0:.1f} s after the kill "
        f"({re.sub(r'^.*?: ', '', line)}); every recipient had the message {done:.1f} s after "
        f"the kill; {twice} sent twice (bound {bound}), each with one Message-ID: "
        f"{all(len(v) == 1 for v in ids.values())}; lost: {recipients - len(sends)}"
    )


def bench_stop_with_a_relay_that_never_greets(tmp_path: Path) -> None:
    relay = start_smtp_server(tls="none", auth=False)
    relay.never_greet()
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    config = tmp_path / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"log_level": "info"},
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "from_address": "aviso@empresa.com.br",
                        "host": relay.host,
                        "port": relay.port,
                        "tls": "none",
                    }
                },
                "wallets": {"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
            }
        )
    )
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    try:
        for seq, mode in enumerate((["run"], ["run", "--until-idle"]), start=1):
            contacts = tmp_path / f"mailing_{today}_{seq:03d}_cBRAD_email.csv"
            contacts.write_text("nome;email\n" + "".join(f"P{i};p{i}@x.com\n" for i in range(50)))
            command = ["-m", "engine.cli", "--config", str(config), "import", str(contacts)]
            subprocess.run(
                [sys.executable, *command],
                check=True,
                capture_output=True,
            )
            engine = disparo(config, tmp_path / f"stop-{seq}.log", *mode)
            try:
                while relay.open_connections < 1:
                    time.sleep(0.01)
                time.sleep(1)  # sends are hanging on the relay
                hung = relay.open_connections
                engine.send_signal(signal.SIGTERM)
                started = time.monotonic()
                status = engine.wait(timeout=120)
                took = time.monotonic() - started
            finally:
                if engine.poll() is None:
                    engine.kill()
                    engine.wait()
            print(
                f"\n`disparo {' '.join(mode)}` with {hung} connection(s) hung "
                f"on a relay that never greets: exited {status} {took:.1f} s after SIGTERM "
                "(engine.stop_timeout 10 s)"
            )
    finally:
        relay.stop()

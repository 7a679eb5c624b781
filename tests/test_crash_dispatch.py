"""kill -9 of a real ``disparo run`` in the middle of 10,000 e-mails to the sandbox sink: after a
restart every recipient got the message, none is lost, duplicates stay within the in-flight
window and each duplicate carries the same Message-ID (D12). The restarted engine waits for
the dead one's leases (3 s here; rescue times with the default lease are in
tests/bench/bench_rescue.py)."""

from __future__ import annotations

import mailbox
import os
import signal
import socket
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import tomli_w

from engine.testing import write_secret
from engine.testing.eventually import GiveUp, eventually_sync
from tests.helpers import load

RECIPIENTS = 10_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def disparo(*args: str, **kwargs: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **kwargs,
    )


def count(folder: Path) -> int:
    new = folder / "new"
    return sum(1 for _ in new.iterdir()) if new.exists() else 0


def test_kill_9_in_the_middle_of_10000_emails(tmp_path: Path) -> None:
    port = free_port()
    maildir = tmp_path / "mail"
    write_secret(tmp_path / "key", "s" * 32)
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    config = tmp_path / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"lease": "3s"},
                "tracking": {"public_url": "https://t.example.com", "secret_file": "key"},
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "sandbox": True,
                        "sink": f"127.0.0.1:{port}",
                        "from_address": "aviso@empresa.com.br",
                        "rate": 3000,
                        "burst": 100,
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
        "nome;email\n" + "".join(f"P{i};p{i}@example.com\n" for i in range(RECIPIENTS))
    )
    sink = disparo("sink", "--listen", f"127.0.0.1:{port}", "--maildir", str(maildir))
    engines: list[subprocess.Popen[bytes]] = []
    try:
        eventually_sync(lambda: listening(port), what=f"the sink to listen on port {port}")
        imported = subprocess.run(
            [sys.executable, "-m", "engine.cli", "--config", str(config), "import", str(contacts)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert imported.returncode == 0, imported.stdout + imported.stderr
        engine = disparo("--config", str(config), "run")
        engines.append(engine)

        def halfway() -> bool:
            if engine.poll() is not None:
                raise GiveUp("the engine stopped on its own")
            return count(maildir) >= 3000

        eventually_sync(
            halfway,
            what="3000 messages in the sink (sending under way)",
            timeout=120,  # the engine starts, claims and sends 3000 over SMTP on a busy machine
            detail=lambda: f"{count(maildir)} messages in the sink",
        )
        os.kill(engine.pid, signal.SIGKILL)
        engine.wait()
        killed_at = count(maildir)
        assert killed_at < RECIPIENTS  # killed in the middle
        restart = disparo("--config", str(config), "run", "--until-idle", "--settle", "0.1")
        engines.append(restart)
        assert restart.wait(timeout=240) == 0
    finally:
        for process in engines:  # a failed assertion must not leave an engine running
            if process.poll() is None:
                process.kill()
                process.wait()
        # The sink writes a message into the Maildir before it answers 250, so everything the
        # restart sent is there; it stops only after writes still going (messages the killed
        # engine had sent in full) are done: the Maildir is complete once it has exited.
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=30)
    ids: dict[str, list[str]] = defaultdict(list)
    for message in mailbox.Maildir(maildir, create=False):
        ids[str(message["To"])].append(str(message["Message-ID"]))
    assert len(ids) == RECIPIENTS  # nobody lost
    duplicates = {to: found for to, found in ids.items() if len(found) > 1}
    # at least once: what was in flight when the engine died may go twice, no more: two
    # chunks of min(200, 4 × concurrency, rate × lease / 4) (README, "Crash safety")
    assert sum(len(found) - 1 for found in duplicates.values()) <= 2 * min(
        200, 4 * 8, 3000 * 3 // 4
    )
    assert all(len(set(found)) == 1 for found in duplicates.values())  # the same Message-ID
    print(f"\nkilled after {killed_at} messages; {len(duplicates)} sent twice")

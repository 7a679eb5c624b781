"""Signals to a real ``disparo run`` process against loopback peers: SIGTERM and SIGINT stop it
cleanly (sends in flight get the stop timeout, every lease is released, exit status 0), even
when the relay accepts connections and never greets; a second signal stops at once; SIGHUP
reloads disparo.toml (new accounts and templates take effect; an invalid file is refused and
the running configuration kept); the bounce mailbox's lease is released on stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w

from engine.store import Store
from engine.store import schema as t
from engine.testing import write_secret
from engine.testing.eventually import GiveUp, eventually_sync
from tests.helpers import load
from tests.peers.imap import ImapServer, start_imap_server
from tests.peers.smtp import SmtpServer, start_smtp_server


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp_server(tls="none", auth=False)
    yield server
    server.stop()


class Engine:
    """A ``disparo`` process with its log in a file."""

    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self.log = config.parent / f"engine-{time.monotonic_ns()}.log"
        self.out = config.parent / f"engine-{time.monotonic_ns()}.out"
        with self.out.open("wb") as out, self.log.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine.cli", "--config", str(config), *args],
                stdout=out,
                stderr=err,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def alive(self) -> bool:
        if self.process.poll() is not None:
            raise GiveUp(f"the engine exited ({self.process.returncode}):\n{self.text()}")
        return True

    def wait_log(self, text: str) -> None:
        eventually_sync(
            lambda: self.alive() and text in self.text(),
            what=f"{text!r} in the engine's log",
            detail=self.text,
        )

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.process.pid, sig)

    def wait(self) -> tuple[int, float]:
        """The exit status and how long it took to exit (seconds)."""
        started = time.monotonic()
        eventually_sync(
            lambda: self.process.poll() is not None, what="the engine to exit", detail=self.text
        )
        return int(self.process.returncode), time.monotonic() - started

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def disparo(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
    )


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(tomli_w.dumps(doc))
    return path


def email_config(tmp_path: Path, smtp: SmtpServer, **engine: Any) -> Path:
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    return write(
        tmp_path / "disparo.toml",
        {
            "engine": {"log_level": "info", "stop_timeout": "2s", **engine},
            "accounts": {
                "mail": {
                    "channel": "email",
                    "from_address": "aviso@empresa.com.br",
                    "host": smtp.host,
                    "port": smtp.port,
                    "tls": "none",
                    "rate": 50,
                }
            },
            "wallets": {"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
        },
    )


def import_emails(config: Path, n: int, seq: int = 1) -> None:
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    contacts = config.parent / f"mailing_{today}_{seq:03d}_cBRAD_email.csv"
    contacts.write_text("nome;email\n" + "".join(f"P{i};p{i}@example.com\n" for i in range(n)))
    imported = disparo(config, "import", str(contacts))
    assert imported.returncode == 0, imported.stdout + imported.stderr


def leases(config: Path) -> dict[str, int]:
    """What is still leased in the store after the engine stopped."""
    store = Store.open(f"sqlite:///{config.parent / 'disparo.db'}")
    try:
        with store.read() as c:

            def count(table: Any, *where: Any) -> int:
                return int(
                    c.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()
                    or 0
                )

            return {
                "engines": count(t.engines),
                "claimed": count(t.deliveries, t.deliveries.c.status == "claimed"),
                "accounts": count(t.accounts, t.accounts.c.lease_owner.is_not(None)),
                "mailboxes": count(t.mailboxes, t.mailboxes.c.lease_owner.is_not(None)),
            }
    finally:
        store.close()


NOTHING = {"engines": 0, "claimed": 0, "accounts": 0, "mailboxes": 0}


@pytest.mark.parametrize("mode", ["run", "run --until-idle"])
def test_sigterm_stops_the_engine_while_the_relay_never_greets(
    tmp_path: Path, smtp: SmtpServer, mode: str
) -> None:
    smtp.never_greet()
    config = email_config(tmp_path, smtp)
    import_emails(config, 20)
    engine = Engine(config, *mode.split())
    try:
        eventually_sync(lambda: smtp.open_connections >= 1, what="sends hang on the relay")
        engine.wait_log("now sends campaign")
        engine.signal(signal.SIGTERM)
        status, took = engine.wait()
    finally:
        engine.kill()
    assert status == 0, engine.text()
    log = engine.text()
    assert "SIGTERM: stopping" in log
    assert "still running after" in log and "are abandoned" in log
    assert "stopped: released" in log
    assert leases(config) == NOTHING
    print(f"\n{mode}: stopped {took:.1f} s after SIGTERM (stop_timeout 2 s, hung relay)")


def test_a_second_sigint_stops_at_once(tmp_path: Path, smtp: SmtpServer) -> None:
    smtp.never_greet()
    config = email_config(tmp_path, smtp, stop_timeout="10m")
    import_emails(config, 20)
    engine = Engine(config, "run")
    try:
        eventually_sync(lambda: smtp.open_connections >= 1, what="sends hang on the relay")
        engine.signal(signal.SIGINT)
        engine.wait_log("SIGINT: stopping")
        engine.signal(signal.SIGINT)
        status, _ = engine.wait()
    finally:
        engine.kill()
    assert status == 0, engine.text()
    assert "SIGINT again: stopping at once" in engine.text()
    assert leases(config) == NOTHING


def test_sigterm_after_sending_exits_0_with_everything_released(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    config = email_config(tmp_path, smtp)
    import_emails(config, 30)
    engine = Engine(config, "run")
    try:
        eventually_sync(lambda: len(smtp.messages) == 30, what="the campaign is sent")
        engine.wait_log("-> completed")
        engine.signal(signal.SIGTERM)
        status, _ = engine.wait()
    finally:
        engine.kill()
    assert status == 0, engine.text()
    assert len({m.rcpt_tos for m in smtp.messages}) == 30
    assert leases(config) == NOTHING


def test_sighup_reloads_accounts_and_templates_and_refuses_a_broken_file(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    doc: dict[str, Any] = {
        "engine": {"log_level": "info"},
        "sources": {"drop": {"kind": "local", "path": "drop", "every": "1s"}},
        "accounts": {
            "zap": {"channel": "whatsapp-shared", "sandbox": True, "from_number": "+551140040000"}
        },
        "wallets": {"BRAD": {"sms_template": "Olá {{ nome }}"}},
    }
    config = write(tmp_path / "disparo.toml", doc)
    today = datetime.now(UTC).astimezone(load(config).tz).strftime("%d%m%y")
    rows = "nome;telefone\n" + "".join(f"P{i};1199988{i:04d}\n" for i in range(5))
    (drop / f"mailing_{today}_001_cBRAD_whatsappcompartilhado_ntPROMO.csv").write_text(rows)
    (drop / f"mailing_{today}_002_cBRAD_smslong.csv").write_text(rows)
    outbox = tmp_path / "outbox"
    engine = Engine(config, "run")
    try:
        engine.wait_log("is not configured: add [templates.PROMO]")
        engine.wait_log("no sender account for channel `sms-long`")
        doc["accounts"]["sms"] = {"channel": "sms-long", "sandbox": True}
        doc["templates"] = {"PROMO": {"content_sid": "HX0123", "variables": ["nome"]}}
        doc["sources"]["extra"] = {"kind": "local", "path": "extra", "every": "1s"}
        (tmp_path / "extra").mkdir()
        write(config, doc)
        engine.signal(signal.SIGHUP)
        engine.wait_log("configuration reloaded")
        # a new source is polled: its file is imported (and sent below)
        (tmp_path / "extra" / f"mailing_{today}_004_cBRAD_smslong.csv").write_text(
            "nome;telefone\nE;11999660001\n"
        )
        eventually_sync(
            lambda: all(
                (outbox / f"{a}.jsonl").exists()
                and len((outbox / f"{a}.jsonl").read_text().splitlines()) == n
                for a, n in (("zap", 5), ("sms", 6))
            ),
            what="the held campaigns and the new source's are sent after the reload",
        )
        sent = [json.loads(line) for line in (outbox / "zap.jsonl").read_text().splitlines()]
        assert {s["ContentSid"] for s in sent} == {"HX0123"}
        broken = tomli_w.dumps(doc).replace('channel = "sms-long"', 'channel = "pombo-correio"')
        config.write_text(broken)
        engine.signal(signal.SIGHUP)
        engine.wait_log("the running configuration stays")
        assert "accounts.sms.channel" in engine.text()
        # still running, on the configuration it had: a new file is imported and sent
        (drop / f"mailing_{today}_003_cBRAD_smslong.csv").write_text(
            "nome;telefone\nZ;11999770001\n"
        )
        eventually_sync(
            lambda: len((outbox / "sms.jsonl").read_text().splitlines()) == 7,
            what="a file dropped after the refused reload is sent",
        )
        engine.signal(signal.SIGTERM)
        status, _ = engine.wait()
    finally:
        engine.kill()
    assert status == 0, engine.text()
    assert engine.text().count("is not configured: add [templates.PROMO]") == 1  # logged once
    assert leases(config) == NOTHING


def test_the_mailbox_lease_is_released_on_stop(tmp_path: Path, smtp: SmtpServer) -> None:
    imap: ImapServer = start_imap_server(tls="implicit")
    try:
        assert imap.ca_pem is not None
        write_secret(tmp_path / "imap-password", imap.password)
        write_secret(tmp_path / "key", "k" * 32)
        config = email_config(tmp_path, smtp)
        doc = load(config).raw
        write(
            config,
            {
                **doc,
                "tracking": {
                    "public_url": "https://t.example.com",
                    "secret_file": "key",
                    "listen": "127.0.0.1:0",
                },
                "mailboxes": {
                    "retorno": {
                        "host": imap.host,
                        "port": imap.port,
                        "ca_file": str(imap.ca_pem),
                        "user": imap.user,
                        "password_file": "imap-password",
                        "allow_private": True,
                        "every": "1h",
                    }
                },
            },
        )
        engine = Engine(config, "run")
        try:
            eventually_sync(
                lambda: leases(config)["mailboxes"] == 1, what="the engine polls the mailbox"
            )
            engine.signal(signal.SIGTERM)
            status, _ = engine.wait()
        finally:
            engine.kill()
        assert status == 0, engine.text()
        assert leases(config) == NOTHING
        polled = disparo(config, "mailboxes", "poll")
        assert polled.returncode == 0, polled.stdout + polled.stderr
        assert "another engine is polling" not in polled.stdout
    finally:
        imap.stop()

"""The engine outlives an unavailable database: a SQLite writer lock held by another connection
for longer than the busy timeout, a real PostgreSQL stopped and restarted. Meanwhile it keeps
running, logs the outage, and ``/healthz`` answers 503; once the database is back, sending
resumes and every recipient gets the message once.

SQLite's busy timeout is lowered from 30 s to 1 s for the first test (the same error,
"database is locked", sooner)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import tomli_w

import engine.store.db
from engine.clock import RealClock, local_today
from engine.config import Config, load_config
from engine.intake.importer import file_digest, import_file
from engine.plugins import load_plugins
from engine.plugins.format import FormatContext
from engine.service import Engine
from engine.store import Store
from engine.testing import write_secret
from engine.testing.eventually import eventually
from tests.peers.postgres import PostgresServer
from tests.peers.smtp import SmtpServer, start_smtp_server

RECIPIENTS = 300


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp_server(tls="none", auth=False)
    yield server
    server.stop()


def configure(tmp_path: Path, smtp: SmtpServer, database_url: str) -> Config:
    write_secret(tmp_path / "key", "k" * 32)
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    path = tmp_path / "disparo.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "engine": {"database_url": database_url},
                "tracking": {
                    "public_url": "https://t.example.com",
                    "secret_file": "key",
                    "listen": "127.0.0.1:0",
                },
                "accounts": {
                    "mail": {
                        "channel": "email",
                        "from_address": "aviso@empresa.com.br",
                        "host": smtp.host,
                        "port": smtp.port,
                        "tls": "none",
                        "rate": 30,
                    }
                },
                "wallets": {"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
            }
        )
    )
    return load_config(path)


def import_campaign(store: Store, config: Config, tmp_path: Path) -> int:
    clock = RealClock()
    spool = tmp_path / "in.csv"
    spool.write_text(
        "nome;email\n" + "".join(f"P{i};p{i}@example.com\n" for i in range(RECIPIENTS))
    )
    today = local_today(clock, config.tz)
    fmt = load_plugins().formats()["mailing"](FormatContext(config, "drop", today, clock.now()))
    report = import_file(
        store,
        fmt,
        source="drop",
        path=f"mailing_{today:%d%m%y}_001_cBRAD_email.csv",
        spool=spool,
        size=spool.stat().st_size,
        mtime=None,
        sha256=file_digest(spool),
    )
    assert report.campaign_id is not None, report.problems
    return report.campaign_id


async def health(engine: Engine) -> int:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{engine.listening}/healthz") as r,
    ):
        return r.status


async def through_an_outage(
    store: Store,
    config: Config,
    smtp: SmtpServer,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    *,
    fail: Callable[[], Awaitable[None]],
    recover: Callable[[], Awaitable[None]],
) -> None:
    caplog.set_level(logging.WARNING)
    cid = import_campaign(store, config, tmp_path)
    engine = Engine(store, load_plugins(), config, RealClock())
    running = asyncio.create_task(engine.run())
    statuses: list[int] = []

    async def healthz(expected: int) -> bool:
        statuses.append(await health(engine))
        return statuses[-1] == expected

    try:
        await eventually(
            lambda: len(smtp.messages) >= 50 and engine.listening, what="sending started"
        )
        await fail()
        await eventually(lambda: healthz(503), what="/healthz to say 503")
        await eventually(
            lambda: (
                "cannot renew its leases, the database is unavailable" in caplog.text
                and "account mail: the database is unavailable" in caplog.text
            ),
            what="the heartbeat and the sender both waiting (the outage lasts)",
        )
        assert not running.done()  # the engine did not exit
        await recover()
        await eventually(
            lambda: (
                len(smtp.messages) >= RECIPIENTS
                and (found := store.campaigns.get(cid)) is not None
                and found.status == "completed"
            ),
            what="every message sent once the database is back",
            timeout=120,
            detail=lambda: f"{len(smtp.messages)} received",
        )
        await eventually(lambda: healthz(200), what="/healthz to say 200 again")
        assert "the database answers again" in caplog.text
        assert not running.done()
    finally:
        engine.stop.set()
        await running
    sent = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert set(sent) == {f"p{i}@example.com" for i in range(RECIPIENTS)}
    # one engine: what it had in flight is confirmed after the outage, never sent twice
    assert max(sent.values()) == 1
    assert store.engines.listing() == []


async def test_a_sqlite_writer_lock_held_longer_than_the_busy_timeout(
    tmp_path: Path,
    smtp: SmtpServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(engine.store.db, "SQLITE_BUSY_TIMEOUT_MS", 1_000)
    path = tmp_path / "disparo.db"
    config = configure(tmp_path, smtp, f"sqlite:///{path}")
    store = Store.open(config.engine.database_url)
    locker = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)

    async def lock() -> None:  # another process holds the write lock
        await asyncio.to_thread(locker.execute, "BEGIN IMMEDIATE")

    async def unlock() -> None:
        await asyncio.to_thread(locker.execute, "ROLLBACK")

    try:
        await through_an_outage(store, config, smtp, caplog, tmp_path, fail=lock, recover=unlock)
    finally:
        locker.close()
        store.close()


@pytest.mark.postgres
async def test_postgresql_stopped_and_restarted(
    tmp_path: Path,
    smtp: SmtpServer,
    postgres: PostgresServer,
    pg_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = configure(tmp_path, smtp, pg_url)
    store = Store.open(pg_url)
    stopped = False

    async def stop() -> None:
        nonlocal stopped
        await asyncio.to_thread(postgres.halt)
        stopped = True

    async def start() -> None:
        nonlocal stopped
        await asyncio.to_thread(postgres.resume)
        stopped = False

    try:
        await through_an_outage(store, config, smtp, caplog, tmp_path, fail=stop, recover=start)
    finally:
        if stopped:  # the session's server must be up for the next tests
            postgres.resume()
        store.close()

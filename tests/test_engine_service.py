"""`disparo run` as a whole: with [tracking] the engine serves the endpoint beside sending,
and the Prometheus metrics count what it sent (issue: tracking and feedback, item 5)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
import tomli_w

from engine.clock import RealClock, local_today
from engine.config import load_config
from engine.intake.importer import file_digest, import_file
from engine.plugins import load_plugins
from engine.plugins.format import FormatContext
from engine.service import Engine
from engine.store import Store
from engine.testing import write_secret
from engine.testing.eventually import TIMEOUT, GiveUp, eventually
from tests.peers.smtp import start_smtp_server


async def test_run_serves_tracking_and_counts_messages(tmp_path: Path, db_url: str) -> None:
    smtp = start_smtp_server(tls="none", auth=False)
    store = Store.open(db_url)
    try:
        write_secret(tmp_path / "key", "k" * 32)
        (tmp_path / "body.html").write_text('<p>Oi <a href="https://loja.example/">loja</a></p>')
        path = tmp_path / "disparo.toml"
        path.write_text(
            tomli_w.dumps(
                {
                    "engine": {"log_level": "warning"},
                    "tracking": {
                        "public_url": "https://t.empresa.com.br",
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
                            "rate": 100,
                        }
                    },
                    "wallets": {"BRAD": {"email_subject": "Oi", "email_template": "body.html"}},
                }
            )
        )
        plugins = load_plugins()
        config = load_config(path, plugins=plugins)
        clock = RealClock()
        day = local_today(clock, config.tz)
        spool = tmp_path / "in.csv"
        spool.write_text("email\na@cliente.example\nb@cliente.example\nc@cliente.example\n")
        fmt = plugins.formats()["mailing"](FormatContext(config, "drop", day, clock.now()))
        report = import_file(
            store,
            fmt,
            source="drop",
            path=f"mailing_{day:%d%m%y}_001_cBRAD_email.csv",
            spool=spool,
            size=spool.stat().st_size,
            mtime=None,
            sha256=file_digest(spool),
        )
        assert report.campaign_id is not None, report.problems
        engine = Engine(store, plugins, config, clock)
        task = asyncio.create_task(engine.run())
        try:
            await eventually(
                lambda: len(smtp.messages) >= 3 and engine.listening,
                what="three messages at the relay and the tracking endpoint listening",
            )
            assert engine.listening and len(smtp.messages) == 3
            base = f"http://{engine.listening}"
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{base}/healthz") as r:
                    assert r.status == 200 and (await r.json())["status"] == "ok"
                sent = 'disparo_messages_total{account="mail",channel="email",outcome="sent"}'
                text = ""

                async def counted() -> bool:
                    nonlocal text
                    async with http.get(f"{base}/metrics") as r:
                        if r.status != 200:
                            raise GiveUp(f"/metrics answered {r.status}")
                        text = await r.text()
                    return f"{sent} 3.0" in text

                # the confirmation lands just after the SMTP answer
                await eventually(
                    counted, what="the three sends counted in /metrics", detail=lambda: text
                )
                assert re.search(r'disparo_campaigns\{status="(sending|completed)"\} 1\.0', text)
                assert 'disparo_guard_paused{account="mail"} 0.0' in text
        finally:
            engine.stop.set()
            await asyncio.wait_for(task, TIMEOUT)
        async with aiohttp.ClientSession() as http:  # stopped with the engine
            try:
                async with http.get(f"{base}/healthz") as r:
                    raise AssertionError(f"still serving: {r.status}")
            except aiohttp.ClientConnectionError:
                pass
    finally:
        store.close()
        smtp.stop()

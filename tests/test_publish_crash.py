"""kill -9 of a real ``disparo publish`` while it writes a send's six return files (T8): a
file on the source is whole or absent, the ledger never records what is not there, the
killed run's temporary file is cleaned by the next, and the next publishes the rest exactly
once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from engine.events import Signal
from engine.testing import World, hermetic_plugins
from engine.testing.eventually import GiveUp, eventually_sync
from plugins.formats.triplet import CONF_HEADER

RECIPIENTS = 30_000
RESULTS = ("ABERTURA", "ABERTURAUNICA", "CLIQUE", "CLIQUEUNICO", "RETORNADO", "CANCELADO")


def publish(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "publish"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_when(condition: Callable[[], bool], process: subprocess.Popen[bytes]) -> bool:
    """Kill the run at the moment ``condition`` holds; False when it finished first."""

    def moment() -> bool:
        if condition():
            return True
        if process.poll() is not None:
            raise GiveUp("finished")
        return False

    try:
        eventually_sync(moment, what=condition.__name__, interval=0.002)
    except AssertionError:
        process.wait()
        return False
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return True


def ledger(db: Path) -> set[str]:
    """What the ledger records as published (a planned one, pending, is not yet)."""
    with sqlite3.connect(db) as conn:
        return {
            row[0]
            for row in conn.execute("SELECT path FROM publications WHERE status = 'published'")
        }


def results(drop: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in drop.iterdir() if p.is_file() and "_" in p.name}


async def test_kill_9_mid_publication_leaves_whole_files_and_publishes_the_rest_once(
    tmp_path: Path,
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    world = World.open(
        tmp_path,
        hermetic_plugins(),
        sources={
            "mediapost": {
                "kind": "local",
                "path": "drop",
                "format": "triplet",
                "results_after": "0s",
            }
        },
        accounts={"mail": {"channel": "email", "from_address": "a@loja.example", "sandbox": True}},
    )
    try:
        mail = "EMAIL;NOME\n" + "".join(f"c{i}@cliente.example;C{i}\n" for i in range(RECIPIENTS))
        conf = ";".join(CONF_HEADER) + "\nNatal;Oi;Loja;a@loja.example;;\n"
        report = world.import_file(
            "GRANDE_MAIL_20261123",
            mail,
            format="triplet",
            source="mediapost",
            beside={"GRANDE_CONF_20261123": conf, "GRANDE_HTML_20261123": "<p>Oi</p>"},
        )
        assert report.outcome == "imported" and report.campaign_id, report.problems
        store, now = world.store, world.clock.now()
        with store.read() as conn:
            ids = [d for (d,) in conn.exec_driver_sql("SELECT id FROM deliveries ORDER BY id")]
        for start in range(0, len(ids), 5000):  # every recipient opened and clicked
            store.feedback.apply(
                [
                    Signal(kind, now, "tracking", delivery_id=d, detail={"link": 1})
                    for d in ids[start : start + 5000]
                    for kind in ("open", "click")
                ]
            )
        store.campaigns.set_status(
            report.campaign_id, "completed", actor="test", values={"finished_at": now}
        )
    finally:
        await world.close()
    config, db = tmp_path / "disparo.toml", tmp_path / "disparo.db"
    spool = tmp_path / "spool" / "mediapost"

    def writing() -> bool:  # a return file is being written into the spool
        return spool.is_dir() and any(p.name.startswith(".publish-") for p in spool.iterdir())

    def halfway() -> bool:  # some of the six are recorded, not all
        try:
            return 0 < len(ledger(db)) < len(RESULTS)
        except sqlite3.OperationalError:  # the database is busy: not yet
            return False

    seen: list[tuple[dict[str, bytes], set[str]]] = []
    for moment in (writing, halfway):
        if kill_when(moment, publish(config)):
            seen.append((results(drop), ledger(db)))
    finish = publish(config)
    assert finish.wait(timeout=120) == 0
    final = results(drop)
    assert sorted(final) == sorted(f"GRANDE_{kind}_20261123" for kind in RESULTS)
    assert ledger(db) == set(final)
    assert final["GRANDE_ABERTURA_20261123"].count(b"\r\n") == RECIPIENTS + 1
    for files, recorded in seen:
        # what a killed run left under a final name is whole; what it recorded is there
        assert all(final[name] == data for name, data in files.items())
        assert recorded <= set(files)
    assert not [p for p in spool.iterdir() if p.name.startswith(".publish-")]
    again = publish(config)  # and never again
    assert again.wait(timeout=60) == 0
    assert results(drop) == final and ledger(db) == set(final)

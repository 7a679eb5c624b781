"""The tracking endpoint's writer in its own process (issue 16, goal 3; D17): what the
endpoint answered is stored by a child process on its own connection, the same as the
in-process writer stores it; stopping the endpoint (SIGTERM) stores everything answered
first; a writer process killed alone hands its batch back and the endpoint writes on."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import tomli_w

from engine.events import Signal
from engine.feedback.tracking import RESTARTS, SignalWriter
from engine.store import Store
from engine.store import schema as t
from engine.testing import write_secret
from engine.testing.eventually import eventually, eventually_sync
from engine.tokens import Signer
from tests.test_results_export import NOW, _fill

AT = NOW + timedelta(hours=1)


def _opens(ids: range) -> list[Signal]:
    return [Signal("open", AT, "tracking", delivery_id=i, detail={"agent": "t"}) for i in ids]


def _stored(store: Store) -> tuple[int, int, int]:
    """(open events, deliveries marked opened, the campaign's ``opened``)."""
    with store.read() as c:
        events = c.execute(
            sa.select(sa.func.count()).select_from(t.events).where(t.events.c.kind == "open")
        ).scalar()
        marked = c.execute(
            sa.select(sa.func.count())
            .select_from(t.deliveries)
            .where(t.deliveries.c.opened_at.is_not(None))
        ).scalar()
        opened = c.execute(sa.select(t.campaigns.c.opened)).scalar()
    return int(events or 0), int(marked or 0), int(opened or 0)


def _clean(store: Store) -> None:
    with store.write() as c:
        c.execute(sa.update(t.deliveries).values(opened_at=None, clicked_at=None))
        c.execute(sa.update(t.campaigns).values(opened=0, clicked=0, clicks=0))
        c.execute(sa.delete(t.events))


async def test_the_writer_process_stores_what_the_in_process_writer_stores(store: Store) -> None:
    _fill(store, n=30)
    _clean(store)
    writer = SignalWriter(store, process=True)
    await writer.ready()
    assert writer.child is not None and writer.child.process.is_alive()
    futures = [writer.submit(s) for s in _opens(range(1, 21))]
    unknown = writer.submit(Signal("open", AT, "tracking", delivery_id=10**9))
    # an unsubscribe is answered once stored: its result comes back from the child
    done = await writer.apply(
        Signal("unsubscribe", AT, "tracking", delivery_id=21, detail={"scope": "campaign"})
    )
    assert [e.kind for e in done.events] == ["unsubscribe"] and not done.unknown
    await writer.close()
    assert writer.child is None
    assert all(f.done() and not f.result().unknown for f in futures)
    assert unknown.result().unknown
    assert [e.kind for e in futures[0].result().events] == ["open"]
    assert _stored(store) == (20, 20, 20)
    with store.read() as c:
        at, detail = c.execute(
            sa.select(t.events.c.at, t.events.c.detail).where(t.events.c.delivery_id == 1)
        ).one()
        unsubscribed = c.execute(
            sa.select(t.deliveries.c.unsubscribed).where(t.deliveries.c.id == 21)
        ).scalar()
    assert at == AT and detail == {"agent": "t"} and unsubscribed == "campaign"


async def test_a_writer_process_killed_alone_is_replaced(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed on its own (the endpoint lives on): its death is logged at once, with what to
    do; a new writer process writes the batch it had not answered and everything after it;
    nothing answered is lost."""
    _fill(store, n=30)
    _clean(store)
    writer = SignalWriter(store, process=True)
    await writer.ready()
    first = [writer.submit(s) for s in _opens(range(1, 11))]
    await eventually(lambda: all(f.done() for f in first), what="the first batch stored")
    assert writer.child is not None
    dead = writer.child
    dead.process.kill()
    await eventually(
        lambda: "died with signal SIGKILL" in caplog.text, what="the death to be logged"
    )
    assert "a new one is started" in caplog.text
    later = [writer.submit(s) for s in _opens(range(11, 31))]
    await eventually(
        lambda: all(f.done() for f in later),
        what="a new writer process to store the later opens",
        detail=lambda: f"{writer.applied} of {writer.submitted} stored",
    )
    assert writer.child is not None and writer.child is not dead
    assert writer.child.process.is_alive()
    assert all(not f.result().unknown for f in later)
    await writer.close()
    assert _stored(store) == (30, 30, 30)


async def test_writer_processes_dying_again_and_again_leave_the_writes_here(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """After ``RESTARTS`` deaths within ``RESTART_WINDOW`` the endpoint stops starting new
    ones and writes from its own process (logged: what to do); still nothing is lost."""
    _fill(store, n=30)
    _clean(store)
    writer = SignalWriter(store, process=True)
    await writer.ready()
    for k in range(RESTARTS):
        child = writer.child
        assert child is not None
        child.process.kill()
        batch = [writer.submit(s) for s in _opens(range(1 + 10 * k, 11 + 10 * k))]
        await eventually(
            lambda batch=batch: all(f.done() for f in batch),  # type: ignore[misc]
            what=f"batch {k} stored after the writer's death",
        )
        assert all(not f.result().unknown for f in batch)
    assert writer.child is None
    assert f"died {RESTARTS} times within 10 min" in caplog.text
    await writer.close()
    assert _stored(store) == (30, 30, 30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serving(tmp_path: Path, db: Path) -> tuple[Path, int]:
    """A configuration whose tracking endpoint listens on a free port of its own, and that port."""
    write_secret(tmp_path / "key", "k" * 32)
    port = _free_port()
    config = tmp_path / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"database_url": f"sqlite:///{db}", "log_level": "warning"},
                "tracking": {
                    "public_url": "https://t.example.com",
                    "secret_file": "key",
                    "listen": f"127.0.0.1:{port}",
                },
            }
        )
    )
    return config, port


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("command", [["tracking", "serve"], ["run"]], ids=["serve", "run"])
def test_sigterm_stores_every_open_the_endpoint_answered(
    tmp_path: Path, command: list[str]
) -> None:
    """`disparo tracking serve` and `disparo run` answer a pixel before the open is stored
    (their writer process stores it with the next batch); SIGTERM right after the answers
    stores them all before the process exits (README: what a crash can lose)."""
    db = tmp_path / "disparo.db"
    store = Store.open(f"sqlite:///{db}")
    _fill(store, n=40)
    _clean(store)
    store.close()
    config, port = _serving(tmp_path, db)
    serve = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config), *command],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    try:
        eventually_sync(
            lambda: _listening(port) or serve.poll() is not None, what="the endpoint to listen"
        )
        assert serve.poll() is None, serve.communicate()
        signer = Signer("k" * 32)
        for d in range(1, 41):
            url = f"http://127.0.0.1:{port}/o/{signer.sign('o', d)}.gif"
            with urllib.request.urlopen(url, timeout=60) as answer:
                assert answer.status == 200 and answer.read().startswith(b"GIF89a")
        health = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(health, timeout=60) as answer:
            assert json.loads(answer.read())["writer"] == "process"
        serve.send_signal(signal.SIGTERM)
        _, err = serve.communicate(timeout=120)
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
    assert serve.returncode == 0, err
    assert "Traceback" not in err
    store = Store.open(f"sqlite:///{db}", upgrade=False)
    try:
        assert _stored(store) == (40, 40, 40)
    finally:
        store.close()


def test_the_writer_process_ends_when_the_endpoint_is_killed(tmp_path: Path) -> None:
    """`disparo tracking serve` killed with -9: its writer process does not go on alone; it
    ends (the kernel's parent-death signal on Linux, else the end of its pipe) and says why."""
    from tests.test_workers import ended, writer_children

    db = tmp_path / "disparo.db"
    Store.open(f"sqlite:///{db}").close()
    config, port = _serving(tmp_path, db)
    serve = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "--config", str(config), "tracking", "serve"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    writer: set[int] = set()
    try:
        eventually_sync(
            lambda: _listening(port) or serve.poll() is not None, what="the endpoint to listen"
        )
        assert serve.poll() is None, serve.communicate()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=60) as answer:
            assert json.loads(answer.read())["writer"] == "process"
        writer = eventually_sync(
            lambda: writer_children(serve.pid) or None, what="the writer process"
        )
        serve.kill()
        serve.wait()
        eventually_sync(lambda: all(ended(pid) for pid in writer), what="the writer process ending")
        _, err = serve.communicate(timeout=60)  # the writer wrote to the same pipe
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.communicate()
        for pid in writer:
            if not ended(pid):
                os.kill(pid, signal.SIGKILL)
    assert f"the supervising process {serve.pid} is gone; stopping" in err
    assert "Traceback" not in err

"""Several sender processes on one store (`disparo run --workers N`, [engine] workers): the
sender accounts are split between the engine nodes (the unit of parallelism), each account's
rate holds across them (D10), everything goes once; the first process supervises the others
(SIGTERM stops them all, a dead worker is started again)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import tomli_w

from engine.clock import TestClock
from engine.plugins import load_plugins, reset_plugins
from engine.sending.dispatcher import Dispatcher
from engine.store import Store
from engine.store import schema as t
from engine.testing import Registers, Scripted, eventually, eventually_sync
from tests.peers.smtp import SmtpServer, start_smtp_server
from tests.world import SmsLong, World, phones

ACCOUNTS = ["s0", "s1", "s2", "s3"]


def _sms_world(
    tmp_path: Path,
    store: Store,
    clock: TestClock,
    monkeypatch: pytest.MonkeyPatch,
    **account: Any,
) -> Iterator[World]:
    """Four SMS accounts (``ACCOUNTS``) at 10/s, one wallet each; ``account``: more settings."""
    monkeypatch.setenv("DISPARO_BLOCK_PLUGINS", "twilio")
    reset_plugins()
    SmsLong.reset()
    plugins = load_plugins()
    plugins.register(Registers(SmsLong), "scripted")
    try:
        yield World.open(
            tmp_path,
            plugins,
            store=store,
            clock=clock,
            accounts={name: {"channel": "sms-long", "rate": 10, **account} for name in ACCOUNTS},
            wallets={
                f"W{k}": {"sms_template": "Oi {{ nome }}", "default_sender": name}
                for k, name in enumerate(ACCOUNTS)
            },
        )
    finally:
        plugins.unregister("scripted")


@pytest.fixture
def world(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    yield from _sms_world(tmp_path, store, clock, monkeypatch)


def busiest_second(times: list[datetime]) -> int:
    times = sorted(times)
    worst = j = 0
    for i, at in enumerate(times):
        while j < len(times) and times[j] - at < timedelta(seconds=1):
            j += 1
        worst = max(worst, j - i)
    return worst


async def test_two_sender_processes_split_the_accounts_and_hold_each_rate(
    world: World, clock: TestClock
) -> None:
    for node in ("node-a", "node-b"):
        world.dispatchers.append(
            Dispatcher(world.store, world.plugins, world.config, clock, node=node, workers=2)
        )
    cids = [
        world.import_("smslong", phones(150, start=1000 * k), wallet=f"W{k}").campaign_id
        for k in range(len(ACCOUNTS))
    ]
    await world.run(5, step=0.5)
    with world.store.read() as c:
        owners = dict(c.execute(sa.select(t.accounts.c.name, t.accounts.c.lease_owner)).all())
    # each node sends its share: two accounts each, not all four by the first to start
    assert Counter(owners[name] for name in ACCOUNTS) == {"node-a": 2, "node-b": 2}
    await world.run(30, step=0.5)
    sends = Scripted.sends()
    assert len(sends) == 600 and len({s.delivery_id for s in sends}) == 600
    by_account: defaultdict[str, list[datetime]] = defaultdict(list)
    for s in sends:
        by_account[s.account].append(s.at)
    for name in ACCOUNTS:  # D10 per account, whichever node sends it
        assert busiest_second(by_account[name]) <= 10 + 10, name
    for cid in cids:
        assert world.statuses(cid) == {"sent": 150}


async def test_an_engine_joining_later_takes_over_half_of_the_accounts(
    world: World, clock: TestClock
) -> None:
    first = Dispatcher(world.store, world.plugins, world.config, clock, node="node-a")
    world.dispatchers.append(first)
    for k in range(len(ACCOUNTS)):
        world.import_("smslong", phones(400, start=1000 * k), wallet=f"W{k}")
    await world.run(3, step=0.5)
    with world.store.read() as c:
        owners = Counter(c.execute(sa.select(t.accounts.c.lease_owner)).scalars())
    assert owners == {"node-a": 4}  # alone: it sends every account
    world.dispatchers.append(
        Dispatcher(world.store, world.plugins, world.config, clock, node="node-b")
    )
    await world.run(20, step=0.5)  # the first sees the second beat, and hands two over
    with world.store.read() as c:
        owners = Counter(c.execute(sa.select(t.accounts.c.lease_owner)).scalars())
    assert owners == {"node-a": 2, "node-b": 2}


# -- the CLI: real processes ----------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = start_smtp_server(tls="none", auth=False)
    yield server
    server.stop()


def workspace(
    tmp_path: Path, smtp: SmtpServer, per_account: int, rate: float = 1000, **engine: object
) -> Path:
    from engine.testing import write_secret

    write_secret(tmp_path / "key", "k" * 32)
    (tmp_path / "body.html").write_text("<p>Olá {{ nome }}</p>")
    config = tmp_path / "disparo.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "engine": {"log_level": "info", "lease": "6s", "heartbeat": "1s", **engine},
                "tracking": {
                    "public_url": "https://t.example.com",
                    "secret_file": "key",
                    "listen": "127.0.0.1:0",  # tests run side by side: any free port
                },
                "accounts": {
                    name: {
                        "channel": "email",
                        "host": smtp.host,
                        "port": smtp.port,
                        "tls": "none",
                        "from_address": "aviso@empresa.com.br",
                        "rate": rate,
                        "concurrency": 4,
                    }
                    for name in ACCOUNTS
                },
                "wallets": {
                    f"W{k}": {
                        "email_subject": "Oferta",
                        "email_template": "body.html",
                        "default_sender": name,
                    }
                    for k, name in enumerate(ACCOUNTS)
                },
            }
        )
    )
    return config


class Disparo(subprocess.Popen[str]):
    """A disparo process whose output (its workers' too: they share the pipe) is read as it
    comes by a thread, so a long test never leaves the pipe full and the engine blocked on a
    log line; ``communicate`` gives all of it, ``tail`` the last lines for a failed wait."""

    def __init__(self, argv: list[str], **kwargs: object) -> None:
        super().__init__(
            argv,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **kwargs,  # type: ignore[call-overload]
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.stdout is not None
        with self.stdout:  # closed once the process and its workers are done with it
            for line in self.stdout:
                self.lines.append(line)

    def communicate(  # type: ignore[override]
        self, input: str | None = None, timeout: float | None = None
    ) -> tuple[str, None]:
        try:
            self.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{exc}; {self.tail()}") from exc
        self._reader.join(timeout)  # its workers may hold the pipe a little longer
        return "".join(self.lines), None

    def tail(self) -> str:
        """The last lines written so far, and whether the process still runs."""
        state = "running" if self.poll() is None else f"exited with {self.returncode}"
        return f"disparo {state}; its last lines:\n" + "".join(self.lines[-40:])


def disparo(config: Path, *args: str, **kwargs: object) -> Disparo:
    return Disparo([sys.executable, "-m", "engine.cli", "--config", str(config), *args], **kwargs)


def import_files(config: Path, per_account: int) -> None:
    from engine.clock import RealClock, local_today
    from engine.config import load_config

    today = local_today(RealClock(), load_config(config).tz)
    for k in range(len(ACCOUNTS)):
        path = config.parent / f"mailing_{today:%d%m%y}_{k + 1:03d}_cW{k}_email.csv"
        rows = "".join(f"P{i};p{k}-{i}@example.com\n" for i in range(per_account))
        path.write_text("nome;email\n" + rows)
        done = disparo(config, "import", str(path))
        out, _ = done.communicate(timeout=120)
        assert done.returncode == 0, out


def test_run_workers_until_idle_sends_everything_once(tmp_path: Path, smtp: SmtpServer) -> None:
    config = workspace(tmp_path, smtp, 50)
    import_files(config, 50)
    run = disparo(config, "run", "--until-idle", "--settle", "0.1", "--workers", "2")
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out
    assert "sender worker 1 started" in out
    ids = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert len(ids) == 4 * 50 and set(ids.values()) == {1}  # everyone, once


def children(pid: int) -> set[int]:
    """The sender workers of the engine ``pid`` (not its tracking writer process)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                sender = b"--sender" in (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid and sender:
                found.add(int(entry.name))
    return found


def test_sigterm_stops_every_worker_and_a_dead_worker_is_started_again(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    config = workspace(tmp_path, smtp, 0)
    run = disparo(config, "run", "--workers", "3")
    try:
        first = eventually_sync(
            lambda: children(run.pid) if len(children(run.pid)) == 2 else None,
            what="two sender workers",
            timeout=120,
            detail=run.tail,
        )
        victim = sorted(first)[0]
        os.kill(victim, signal.SIGKILL)
        again = eventually_sync(
            lambda: children(run.pid) if len(children(run.pid) - {victim}) == 2 else None,
            what="the dead worker started again",
            timeout=120,
            detail=run.tail,
        )
        assert victim not in again
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, out
    assert "died (signal 9); starting it again" in out
    for pid in again:  # every worker stopped with the first process
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_a_worker_that_keeps_dying_is_given_up_and_status_says_so(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    config = workspace(tmp_path, smtp, 0, worker_restarts=2, worker_restart_window="10m")
    run = disparo(config, "run", "--workers", "2")
    try:
        first = eventually_sync(
            lambda: children(run.pid) or None,
            what="the sender worker",
            timeout=120,
            detail=run.tail,
        )
        os.kill(next(iter(first)), signal.SIGKILL)  # the first death: started again
        again = eventually_sync(
            lambda: (children(run.pid) - first) or None,
            what="the worker started again",
            timeout=120,
        )
        os.kill(next(iter(again)), signal.SIGKILL)  # the second within the window: given up

        def given_up() -> list[str] | None:
            status = subprocess.run(
                [sys.executable, "-m", "engine.cli", "--config", str(config), "status", "--json"],
                capture_output=True,
                text=True,
                check=True,
            )
            found = [
                reason
                for e in json.loads(status.stdout)["engines"]
                for reason in e["workers_given_up"]
            ]
            return found or None

        reasons = eventually_sync(given_up, what="disparo status saying so", timeout=120)
        assert "sender worker 1 died 2 times within 10 min" in reasons[0]
        assert "not started again (engine.worker_restarts)" in reasons[0]
        assert not children(run.pid)  # and it was not started a third time
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, out
    assert "died (signal 9); starting it again" in out
    assert "sender worker 1 died 2 times within 10 min (last: signal 9)" in out


@pytest.fixture
def bursty(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    """Four SMS accounts at 10/s with a bucket of 100: a chunk (32, four per connection) goes
    at once from a full bucket, so a hand-over can come right after a burst."""
    yield from _sms_world(tmp_path, store, clock, monkeypatch, burst=100)


async def test_a_handed_over_account_keeps_its_token_bucket(
    bursty: World, clock: TestClock
) -> None:
    """D10 across a hand-over: the node taking an account over continues the bucket of the
    node that handed it over (through the store), instead of starting with a full one on top
    of the burst the first node just sent: at most rate + burst in any second."""
    world = bursty
    first = Dispatcher(world.store, world.plugins, world.config, clock, node="node-a")
    world.dispatchers.append(first)
    for k in range(len(ACCOUNTS)):
        world.import_("smslong", phones(300, start=1000 * k), wallet=f"W{k}")
    await first.tick()  # alone, it leases every account and sends from full buckets
    await eventually(
        lambda: len(Scripted.sends()) >= 4 * 32, what="node-a's first chunk of each account"
    )
    # a second node comes up (a worker of ``run --workers 2``): node-a now keeps its share
    # (two accounts) and hands the other two over at their next chunk, within their burst
    first.workers = 2
    world.dispatchers.append(
        Dispatcher(world.store, world.plugins, world.config, clock, node="node-b", workers=2)
    )
    await world.run(3, step=0.25)
    with world.store.read() as c:
        owners = Counter(c.execute(sa.select(t.accounts.c.lease_owner)).scalars())
    assert owners == {"node-a": 2, "node-b": 2}  # two accounts were handed over
    await world.run(40, step=0.25)
    sends = Scripted.sends()
    assert len(sends) == 4 * 300 and len({s.delivery_id for s in sends}) == 4 * 300
    by_account: defaultdict[str, list[datetime]] = defaultdict(list)
    for s in sends:
        by_account[s.account].append(s.at)
    for name in ACCOUNTS:  # D10 per account, across the hand-over
        assert busiest_second(by_account[name]) <= 10 + 100, name


async def test_a_clean_stop_and_a_quick_restart_keep_the_token_bucket(
    bursty: World, clock: TestClock
) -> None:
    """D10 across a restart: an engine stopped cleanly right after its burst writes each
    account's bucket to the store (``release``), and the engine started right after it
    continues that bucket instead of a full one: at most rate + burst in any second."""
    world = bursty
    first = Dispatcher(world.store, world.plugins, world.config, clock, node="before")
    world.dispatchers.append(first)
    for k in range(len(ACCOUNTS)):
        world.import_("smslong", phones(300, start=1000 * k), wallet=f"W{k}")
    await first.tick()  # a chunk of each account from full buckets (100 each)
    await eventually(
        lambda: len(Scripted.sends()) >= 4 * 32, what="the first chunk of each account"
    )
    await world.run(0.5, step=0.25)  # more of the burst
    await first.shutdown()  # a clean stop (SIGTERM): in-flight sends finish
    world.dispatchers.remove(first)
    with world.store.read() as c:
        left = dict(c.execute(sa.select(t.accounts.c.name, t.accounts.c.bucket_tokens)).all())
    assert all(left[name] is not None and left[name] < 100 for name in ACCOUNTS), left
    # restarted at once: same clock second
    world.dispatchers.append(
        Dispatcher(world.store, world.plugins, world.config, clock, node="after")
    )
    await world.run(40, step=0.25)
    sends = Scripted.sends()
    assert len(sends) == 4 * 300 and len({s.delivery_id for s in sends}) == 4 * 300
    by_account: defaultdict[str, list[datetime]] = defaultdict(list)
    for s in sends:
        by_account[s.account].append(s.at)
    for name in ACCOUNTS:  # D10 per account, across the restart
        assert busiest_second(by_account[name]) <= 10 + 100, name


def test_a_real_engine_restarted_at_once_continues_its_token_bucket(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    """D10 across a restart of a real ``disparo run`` process: stopped (SIGTERM) right after
    its burst and started again at once, the engine continues each account's bucket; no
    second burst: over any stretch of T seconds an account sends at most burst + rate × T
    (rate 1, burst 30: a second full bucket would put 40 within the few seconds a restart
    takes)."""
    config = workspace(tmp_path, smtp, 0, rate=1)
    doc = tomllib.loads(config.read_text())
    for account in doc["accounts"].values():
        account["burst"] = 30
    config.write_text(tomli_w.dumps(doc))
    import_files(config, 40)
    for k in range(2):
        run = disparo(config, "run")
        try:
            # the first: each account's burst; the second: everything
            smtp.wait_for(4 * 30 if k == 0 else 4 * 40, timeout=180)
            run.send_signal(signal.SIGTERM)
            out, _ = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, out
    store = Store.open(f"sqlite:///{tmp_path / 'disparo.db'}", upgrade=False)
    try:
        with store.read() as c:
            sent = c.execute(sa.select(t.deliveries.c.address, t.deliveries.c.sent_at)).all()
    finally:
        store.close()
    assert len(sent) == 4 * 40 and all(at is not None for _, at in sent)
    by_account: defaultdict[str, list[datetime]] = defaultdict(list)
    for address, at in sent:
        by_account[address.split("-")[0]].append(at)
    for name, times in by_account.items():
        times.sort()
        for i, begin in enumerate(times):
            for j in range(i, len(times)):
                seconds = (times[j] - begin).total_seconds()
                # one more for a start stamped late (the bucket's slack, the machine's load)
                assert j - i + 1 <= 30 + 1 * seconds + 1, (name, i, j, seconds)


async def test_a_rescued_engines_accounts_count_their_bucket_as_spent(
    store: Store, clock: TestClock
) -> None:
    """D10 after a crash: the engine that died may have sent its whole burst just before, so
    its accounts' buckets are taken as spent at the rescue; the next holder refills from
    there (``AccountSender`` adopts the bucket the store has)."""
    store.accounts.sync({"s0": "sms-long"})
    store.engines.register(
        "dead", host="h", pid=1, version="x", mode="run", lease=timedelta(seconds=6)
    )
    assert store.accounts.lease("s0", "dead", timedelta(seconds=6))
    await clock.advance(7)
    rescued = store.engines.rescue("dead", by="alive")
    assert rescued is not None and rescued.accounts == ("s0",)
    state = store.accounts.states()["s0"]
    assert state.lease_owner is None
    assert (state.bucket_tokens, state.bucket_at) == (0.0, clock.now())


def writer_children(pid: int) -> set[int]:
    """The tracking writer process of the engine ``pid`` (its children but the senders)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            # not multiprocessing's resource tracker (started before it, ended by its pipe)
            if parent == pid and b"spawn_main" in cmdline:
                found.add(int(entry.name))
    return found


def ended(pid: int) -> bool:
    try:
        return "Z" in Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True


def test_workers_stop_cleanly_when_the_first_process_is_killed(
    tmp_path: Path, smtp: SmtpServer
) -> None:
    """``run --workers`` killed with -9: its sender workers and its tracking writer do not
    go on without it (an engine nobody started, holding leases): each stops as on SIGTERM
    (prctl's parent-death signal on Linux, else its watch of the parent), says why, confirms
    what it sent and releases its leases (its row in ``engines`` is gone); nothing twice."""
    config = workspace(tmp_path, smtp, 0, rate=1)
    doc = tomllib.loads(config.read_text())
    for account in doc["accounts"].values():
        account["burst"] = 2  # still sending when killed
    config.write_text(tomli_w.dumps(doc))
    import_files(config, 200)
    run = disparo(config, "run", "--workers", "2")
    db = f"sqlite:///{tmp_path / 'disparo.db'}"
    workers: set[int] = set()
    try:
        workers = eventually_sync(
            lambda: children(run.pid) or None,
            what="the sender worker",
            timeout=120,
            detail=run.tail,
        )
        writer = eventually_sync(
            lambda: writer_children(run.pid) or None,
            what="the tracking writer",
            timeout=120,
            detail=run.tail,
        )

        def leasing() -> dict[int, str] | None:
            """The workers' nodes, once each holds an account and has sent."""
            store = Store.open(db, upgrade=False)
            try:
                with store.read() as c:
                    nodes = dict(c.execute(sa.select(t.engines.c.pid, t.engines.c.node)).all())
                    owners = set(c.execute(sa.select(t.accounts.c.lease_owner)).scalars())
            finally:
                store.close()
            mine = {pid: nodes[pid] for pid in workers if pid in nodes}
            if len(mine) == len(workers) and set(mine.values()) <= owners and smtp.messages:
                return mine
            return None

        nodes = eventually_sync(leasing, what="the workers sending", timeout=120, detail=run.tail)
        run.kill()
        run.wait()
        eventually_sync(
            lambda: all(ended(pid) for pid in workers | writer) or None,
            what="the workers and the writer ending with the first process",
            timeout=120,
        )
        out, _ = run.communicate(timeout=60)  # the workers wrote to the same pipe
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in workers:  # not left behind by a failure
            if not ended(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    # the worker and the writer say why they stop
    assert out.count(f"the supervising process {run.pid} is gone; stopping") == 2, out
    store = Store.open(db, upgrade=False)
    try:
        with store.read() as c:
            rows = set(c.execute(sa.select(t.engines.c.node)).scalars())
            owners = set(c.execute(sa.select(t.accounts.c.lease_owner)).scalars())
            sent = c.execute(
                sa.select(sa.func.count()).where(t.deliveries.c.sent_at.is_not(None))
            ).scalar_one()
    finally:
        store.close()
    assert not rows & set(nodes.values()), rows  # their leases released, rows gone
    assert not owners & set(nodes.values()), owners
    ids = Counter(m.rcpt_tos[0] for m in smtp.messages)
    assert set(ids.values()) == {1}  # nothing twice
    # what the workers sent is confirmed (the killed first process may leave its in-flight)
    assert sent >= len(ids) - 4 * 4, (sent, len(ids))

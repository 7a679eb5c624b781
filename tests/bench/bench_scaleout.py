"""Scale-out benchmarks (issue 16, goals 1 and 6): several engine processes on one store.

The sink is Postfix's ``smtp-sink`` (C) in its own process when it is installed (a line says
how to install it otherwise, and the Python recording sink is used): with ``-d`` it writes
each message to a file of its own, whose modification time is the arrival time, so that
every Message-ID (asserted: exactly once) and each account's busiest 1-second window are
read from what arrived. Next to each ratio the benches print the CPU facts, so that a reader
sees whether the machine was the limit: the cores this process may use
(``sched_getaffinity``), the load average, each process's CPU seconds (sampled from /proc),
the database server's and the sink's, the CPU per message with and without the processes'
start-up (a node with nothing to send is measured once), how many cores other work kept
busy meanwhile (/proc/stat less our processes), the time spent waiting for locks, and the
speed-up the machine allowed at one node's CPU per message (a node uses at most one core;
nodes, database server and sink together at most the free cores) with the efficiency
(measured / allowed).

- ``run --workers 2`` against one process on one SQLite store, 4 sender accounts, rate limit
  off (goal 1.8x); the write-lock waits are what the processes log when they stop;
- 1 node (``disparo run --until-idle``) against 3 nodes (``--workers 3``) on ONE PostgreSQL
  (the tests' peer, started with initdb/pg_ctl), 30 e-mail sender accounts (goal 2.5x):
  msg/s from the first to the last send as the store has them, over the middle 80 % of
  arrivals too, each account's busiest 1-second window at the sink against rate + burst
  (D10), backends waiting for a lock (pg_stat_activity, sampled);
- chaos: the same 3 nodes, one sender node killed with SIGKILL mid-run (the first process
  starts it again): every recipient is delivered, and what went twice is within the
  documented in-flight bound (README, "Crash safety": two chunks per account of
  min(200, 4 x concurrency, rate x lease / 4)).

The nodes run with their bytecode cached, as an installed package has it (a development
shell's PYTHONDONTWRITEBYTECODE would make each node compile every module at start).
Nothing here asserts a timing; the correctness facts (once, nothing lost, the duplicate
bound) are asserted.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import psycopg
import pytest
import tomli_w

from tests.bench import sinks
from tests.bench.bench_dispatch import free_port, sent_rate, wait_port, workspace
from tests.bench.conftest import rows
from tests.bench.sinks import Arrival
from tests.peers.postgres import PostgresServer, find_bindir, start_postgres

ACCOUNTS = 30
RATE = 100  # per account, messages per second
BURST = 10
CONCURRENCY = 4  # connections per account (30 accounts: 120 per node)
LEASE = 6  # seconds (the chaos run: a short lease, so the rescue comes soon)
HEARTBEAT = 1

#: Postfix's smtp-sink (C): what the benches use when it is installed, so that the nodes, not
#: the sink, are measured
SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
)
HINT = (
    "Postfix's smtp-sink is not installed: the Python recording sink is used, and it takes "
    "CPU from the nodes (apt-get install wrk postfix)"
)
_HEADER = re.compile(rb"^(x-rcpt-args|message-id):[ \t]*<([^>\r\n]*)>", re.I | re.M)


class PostfixSink(sinks.SinkProcess):
    """Postfix's ``smtp-sink`` in its own process. With ``times`` it dumps each message to a
    file of its own (``-d``): the file's modification time is the message's arrival (the end
    of DATA); else all to one file (``-D``, cheaper), without arrival times. Each message's
    ``X-Rcpt-Args`` is its recipient, its ``Message-ID`` header the Message-ID. It offers
    PIPELINING, as Postfix does."""

    what = "Postfix's smtp-sink (C)"

    def __init__(self, tmp: Path, *, times: bool = True) -> None:
        assert SMTP_SINK is not None
        self.port = free_port()
        self.folder = tmp / f"sink-{self.port}"
        self.folder.mkdir(parents=True)
        self.times = times
        dump = ["-d", f"{self.folder}/m."] if times else ["-D", f"{self.folder}/dump"]
        user = ["-u", pwd.getpwuid(os.geteuid()).pw_name] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [SMTP_SINK, *user, *dump, f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def arrivals(self) -> list[Arrival]:
        """Stop the sink; what it received (arrival times 0 without ``times``)."""
        self.kill()
        if not self.times:
            dump = (self.folder / "dump").read_bytes() if (self.folder / "dump").exists() else b""
            found = []
            for message in dump.split(b"\nX-Client-Addr: ")[0 if dump else 1 :]:
                fields = {k.lower().decode(): v.decode() for k, v in _HEADER.findall(message)}
                rcpt, mid = fields.get("x-rcpt-args", "-"), fields.get("message-id", "-")
                found.append(Arrival(0.0, rcpt, f"<{mid}>", 0))
            return found
        found = []
        for path in self.folder.iterdir():
            head = path.read_bytes()[:4096]
            fields = {k.lower().decode(): v.decode() for k, v in _HEADER.findall(head)}
            found.append(
                Arrival(
                    path.stat().st_mtime,
                    fields.get("x-rcpt-args", "-"),
                    f"<{fields.get('message-id', '-')}>",
                    0,
                )
            )
        return found

    def kill(self) -> None:
        self.stop()


class PythonSink(sinks.SinkProcess):
    """The recording asyncio sink in its own process (when Postfix is not installed)."""

    what = "a recording asyncio sink in its own process"

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.record = tmp / f"sink-{self.port}.txt"
        self.process = subprocess.Popen(
            sinks.command(self.port, self.record),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def arrivals(self) -> list[Arrival]:
        """Stop the sink; what it received."""
        self.stop()
        return [sinks.arrival(line) for line in self.record.read_text().splitlines()]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


Sink = PostfixSink | PythonSink


def start_sink(tmp: Path, *, times: bool = True) -> Sink:
    """Postfix's smtp-sink when installed, else the Python sink (the hint is printed by
    ``sink_note``); ``times``: keep each message's arrival time."""
    return PostfixSink(tmp, times=times) if SMTP_SINK else PythonSink(tmp)


def sink_note() -> str:
    return "" if SMTP_SINK else f"\n  NOTE: {HINT}"


def cpu_seconds(pid: int, *, reaped: bool = False) -> float | None:
    """User + system CPU seconds of a running process (None once it is gone); with
    ``reaped``, its ended children's too (those it waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def machine_busy() -> float:
    """CPU seconds every core of the machine has been busy (not idle) since boot."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cores() -> int:
    """The cores this process may run on (its CPU affinity)."""
    return len(os.sched_getaffinity(0))


def server_cpu(server: PostgresServer) -> float:
    """CPU seconds of the PostgreSQL server: the postmaster with its ended backends, and
    every backend still running."""
    pid = int((server.datadir / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(pid, reaped=True) or 0.0
    return total + sum(cpu_seconds(child) or 0.0 for child in children(pid))


class Machine:
    """What the machine did between ``start()`` and ``stop()``: wall seconds and how many
    cores work other than ours (``ours()``: CPU seconds of the nodes, the sink, the
    database server) kept busy."""

    def __init__(self) -> None:
        self.load = os.getloadavg()[0]
        self.wall = time.monotonic()
        self.busy = machine_busy()

    def others(self, ours: float) -> float:
        """Cores kept busy by other work (other users' benches, tests) on average."""
        wall = time.monotonic() - self.wall
        return max(0.0, (machine_busy() - self.busy - ours) / wall) if wall else 0.0


@dataclass
class Nodes:
    """One ``disparo run`` (with ``--workers``: its sender processes too), each process's CPU
    sampled from /proc while it runs (the last sample before it ends)."""

    process: subprocess.Popen[bytes]
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> CPU seconds
    workers: list[int] = field(default_factory=list)  # sender processes, in order seen

    def sample(self) -> None:
        for pid in [self.process.pid, *children(self.process.pid)]:
            if pid != self.process.pid and pid not in self.workers:
                self.workers.append(pid)
            seconds = cpu_seconds(pid)
            if seconds is not None:
                self.cpu[pid] = seconds

    def running(self) -> bool:
        return self.process.poll() is None

    def per_process(self) -> list[float]:
        """CPU seconds of the first process, then of each sender process."""
        return [self.cpu.get(self.process.pid, 0.0)] + [self.cpu.get(p, 0.0) for p in self.workers]


def node_env() -> dict[str, str]:
    """The nodes' environment: with their bytecode cached, as an installed package has it
    (pip compiles it; a development shell may set PYTHONDONTWRITEBYTECODE, and each node
    would then compile every module again at start)."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def start_nodes(config: Path, count: int, log: Path, *extra: str) -> Nodes:
    args = [sys.executable, "-m", "engine.cli", "--config", str(config), "run", *extra]
    if count > 1:
        args += ["--workers", str(count)]
    with log.open("ab") as out:
        return Nodes(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=node_env()))


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    if find_bindir() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not installed")
    server = start_postgres()
    yield server
    server.stop()


def conninfo(server: PostgresServer, database: str) -> str:
    return f"host={server.socket_dir} port={server.port} user=postgres dbname={database}"


def clone(server: PostgresServer, template: str) -> str:
    """A copy of the database ``template`` (CREATE DATABASE … TEMPLATE): the same imported
    campaigns, nothing sent."""
    name = server.create_database()
    with psycopg.connect(conninfo(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name


def configure(template: Path, tmp: Path, port: int, database_url: str, **engine: object) -> Path:
    """A copy of the template workspace's configuration (and its files) in ``tmp``, its
    accounts pointed at the sink on ``port`` and its store at ``database_url``."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("key", "body.html"):
        shutil.copy2(template / name, tmp / name)
    data = tomllib.loads((template / "disparo.toml").read_text())
    data["engine"].update(database_url=database_url, **engine)
    for account in data["accounts"].values():
        account["port"] = port
    config = tmp / "disparo.toml"
    config.write_text(tomli_w.dumps(data))
    return config


def sent_count(server: PostgresServer, database: str) -> int:
    with psycopg.connect(conninfo(server, database)) as conn:
        row = conn.execute("SELECT count(*) FROM deliveries WHERE status = 'sent'").fetchone()
    return int(row[0]) if row else 0


def account_of(recipient: str) -> int:
    """bench_dispatch.workspace gives recipient p{i} to wallet (and account) i % accounts."""
    return int(recipient.split("@")[0][1:]) % ACCOUNTS


class Busiest(NamedTuple):
    """An account's busiest 1-s window at the sink: how many arrived, on how many distinct
    connections (when the sink says: one node opens at most ``CONCURRENCY`` per account, so
    more means two nodes sent for the account within that second, a hand-over)."""

    messages: int
    connections: int


def per_account_busiest(arrivals: list[Arrival]) -> dict[int, Busiest]:
    by_account: defaultdict[int, list[Arrival]] = defaultdict(list)
    for a in arrivals:
        by_account[account_of(a.recipient)].append(a)
    found = {}
    for k, mine in by_account.items():
        mine.sort(key=lambda a: a.at)
        best = (0, 0)
        j = 0
        for i, a in enumerate(mine):
            while j < len(mine) and mine[j].at - a.at < 1.0:
                j += 1
            best = max(best, (j - i, i))
        count, i = best
        found[k] = Busiest(count, len({a.connection for a in mine[i : i + count]}))
    return found


def over_the_limit(busiest: dict[int, Busiest]) -> str:
    """The accounts whose busiest 1-s window at the sink was over rate + burst (D10)."""
    over = {k: b for k, b in sorted(busiest.items()) if b.messages > RATE + BURST}
    return ", ".join(
        f"mail{k:02d} {b.messages}"
        + (f" on {b.connections} connections" if b.connections > 1 else "")
        for k, b in over.items()
    )


@pytest.fixture(scope="module")
def imported(
    postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, int, Path]:
    """A database holding 30 campaigns (one per account) of ``per_account`` recipients each,
    imported once; each run sends from a copy of it. Returns (database name, recipients, the
    workspace)."""
    per_account = rows(200)
    n = per_account * ACCOUNTS
    name = postgres.create_database()
    tmp = tmp_path_factory.mktemp("template")
    workspace(
        tmp,
        free_port(),  # the sink comes later: each run points the accounts at its own
        n,
        rate=RATE,
        burst=BURST,
        concurrency=CONCURRENCY,
        accounts=ACCOUNTS,
        database_url=postgres.url(name),
    )
    return name, n, tmp


class Run(NamedTuple):
    """One run's figures: msg/s (first to last send in the store), CPU seconds of each node
    (the first process, then its sender processes), of the sink and of the database server,
    the cores other work kept busy meanwhile, the seconds backends waited for a lock, and
    the busiest 1-s window of an account at the sink."""

    rate: float
    middle: float  # msg/s at the sink over the middle 80 % of arrivals (no start-up, no tail)
    cpu: list[float]
    sink: float
    server: float
    others: float
    lock_wait: float
    busiest: int
    over: str  # the accounts over rate + burst at the sink ("" when every account held)


def lock_waiters(conn: psycopg.Connection[tuple[object, ...]], database: str) -> int:
    """Backends of ``database`` waiting for a lock now (pg_stat_activity)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
        (database,),
    ).fetchone()
    return int(row[0]) if row else 0


def one_run(
    postgres: PostgresServer, template: str, n: int, files: Path, tmp: Path, count: int
) -> Run:
    """Send the imported campaigns from a fresh copy of the database with ``count`` nodes;
    assert every Message-ID arrived once."""
    log = tmp.with_suffix(".log")
    tmp.mkdir(parents=True, exist_ok=True)
    sink = start_sink(tmp)
    lock_wait = 0.0
    try:
        database = clone(postgres, template)
        config = configure(files, tmp, sink.port, postgres.url(database))
        sink_before, server_before = sink.cpu(), server_cpu(postgres)
        machine = Machine()
        with psycopg.connect(conninfo(postgres, "postgres"), autocommit=True) as watch:
            nodes = start_nodes(config, count, log, "--until-idle", "--settle", "0.1")
            last = time.monotonic()
            while nodes.running():
                nodes.sample()
                time.sleep(0.1)
                now = time.monotonic()
                lock_wait += lock_waiters(watch, database) * (now - last)
                last = now
        assert nodes.process.returncode == 0, log.read_text(errors="replace")[-3000:]
        sink_cpu = sink.cpu() - sink_before
        server = server_cpu(postgres) - server_before
        others = machine.others(sum(nodes.per_process()) + sink_cpu + server)
        arrivals = sink.arrivals()
    finally:
        sink.kill()
    sent, rate = sent_rate(config, database=postgres.url(database).replace("+psycopg", ""))
    postgres.drop_database(database)
    ids = Counter(a.message_id for a in arrivals)
    assert sent == n and len(arrivals) == n, (sent, len(arrivals))
    assert len(ids) == n and set(ids.values()) == {1}, "a Message-ID arrived twice"
    busiest = per_account_busiest(arrivals)
    assert len(busiest) == ACCOUNTS
    return Run(
        rate,
        middle_rate(arrivals),
        nodes.per_process(),
        sink_cpu,
        server,
        others,
        lock_wait,
        max(b.messages for b in busiest.values()),
        over_the_limit(busiest),
    )


def idle_node_cpu(postgres: PostgresServer, template: str, files: Path, tmp: Path) -> float:
    """CPU seconds of a node with nothing to send (``run --until-idle`` on a copy of the
    database with every campaign paused): its start-up (interpreter, imports, registration)
    and a few ticks, what each more node costs whatever it sends."""
    database = clone(postgres, template)
    with psycopg.connect(conninfo(postgres, database), autocommit=True) as conn:
        conn.execute("UPDATE campaigns SET status = 'paused'")
    config = configure(files, tmp, free_port(), postgres.url(database))
    nodes = start_nodes(config, 1, tmp.with_suffix(".log"), "--until-idle", "--settle", "0.1")
    while nodes.running():
        nodes.sample()
        time.sleep(0.05)
    postgres.drop_database(database)
    return nodes.per_process()[0]


def middle_rate(arrivals: list[Arrival]) -> float:
    """Messages per second at the sink between the 10th and the 90th percentile of arrivals:
    the nodes' start-up (which they do one after the other on a busy machine) and the last
    accounts' tail left out."""
    times = sorted(a.at for a in arrivals)
    low, high = len(times) // 10, len(times) * 9 // 10
    seconds = times[high] - times[low]
    return (high - low) / seconds if seconds else 0.0


def cpu_facts(
    label: str,
    runs: list[Run],
    n: int,
    count: int,
    startup: float,
    *,
    postgresql: bool = True,
) -> list[str]:
    """The lines that say where the CPU went in the median run of ``count`` nodes."""
    per_node = [statistics.median(c) for c in zip(*(x.cpu for x in runs), strict=False)]
    nodes = sum(per_node)
    server = statistics.median(x.server for x in runs)
    sink = statistics.median(x.sink for x in runs)
    others = statistics.median(x.others for x in runs)
    waited = statistics.median(x.lock_wait for x in runs)
    rate = f"  {label} {statistics.median(x.rate for x in runs):7,.0f} msg/s"
    if postgresql:
        rate += (
            f" ({statistics.median(x.middle for x in runs):,.0f} over the middle 80 %); "
            f"busiest 1-s window of an account {max(x.busiest for x in runs)} (limit "
            f"{RATE + BURST})"
        )
    lines = [
        rate,
        "      CPU s: "
        + " + ".join(f"{c:.1f}" for c in per_node)
        + f" = {nodes:.1f} in the node process(es), {nodes / n * 1000:.2f} ms per message "
        f"({max(0.0, nodes - count * startup) / n * 1000:.2f} without the {count} start-up(s))"
        + (f"; PostgreSQL {server:.1f} ({server / n * 1000:.2f} ms/msg)" if postgresql else "")
        + f"; sink {sink:.1f}; other work on the machine kept {others:.1f} of {cores()} cores "
        "busy; "
        + (
            f"backends waited {waited:.1f} s for locks"
            if postgresql
            else f"writes waited {waited:.2f} s in all for SQLite's write lock"
        ),
    ]
    for r, x in enumerate(runs):
        if x.over:
            lines.append(f"      round {r + 1}: OVER rate + burst at the sink (D10): {x.over}")
    return lines


class Possible(NamedTuple):
    """What the machine allowed ``count`` nodes against one."""

    speedup: float
    free_one: float  # cores not kept busy by other work during the 1-node runs
    free_more: float  # … during the runs of ``count`` nodes
    node_ms: float  # CPU ms per message in one node (its start-up left out)
    all_ms: float  # … in the node, the database server and the sink together


def possible_speedup(
    count: int, alone: list[Run], more: list[Run], n: int, startup: float
) -> Possible:
    """The speed-up the machine allowed, at one node's CPU per message: a node uses at most
    one core, and all the processes (nodes, database server, sink) at most the cores other
    work left free. One node: min(1 / node, free / all) messages per ms; ``count`` nodes:
    min(count / node, free / all)."""
    free_one = max(0.1, cores() - statistics.median(x.others for x in alone))
    free_more = max(0.1, cores() - statistics.median(x.others for x in more))
    node = max(1e-6, statistics.median(max(0.0, x.cpu[0] - startup) for x in alone) / n)
    every = node + statistics.median(x.server + x.sink for x in alone) / n
    one = min(1 / node, free_one / every)
    many = min(count / node, free_more / every)
    return Possible(many / one, free_one, free_more, node * 1000, every * 1000)


def print_possible(speedup: float, count: int, p: Possible) -> None:
    print(
        f"  the machine allowed at most {p.speedup:.2f}x: {p.node_ms:.2f} CPU ms per message "
        f"in one node, {p.all_ms:.2f} with the database server and the sink; {p.free_one:.1f} "
        f"cores free of other work with 1 node, {p.free_more:.1f} with {count} "
        f"(efficiency {speedup / p.speedup:.0%})"
    )


def bench_three_nodes_on_one_postgresql_against_one(
    postgres: PostgresServer, imported: tuple[str, int, Path], tmp_path: Path
) -> None:
    """Paired rounds (median of BENCH_ROUNDS, 3): one node, then three, each from a fresh
    copy of the imported database, to a fresh sink."""
    template, n, files = imported
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    count = int(os.environ.get("BENCH_NODES", 3))
    load = os.getloadavg()[0]
    startup = idle_node_cpu(postgres, template, files, tmp_path / "idle")
    runs: dict[int, list[Run]] = {1: [], count: []}
    ratios: list[float] = []
    middle: list[float] = []
    for r in range(rounds):
        for k in (1, count):
            runs[k].append(one_run(postgres, template, n, files, tmp_path / f"r{r}n{k}", k))
        ratios.append(runs[count][-1].rate / runs[1][-1].rate)
        middle.append(runs[count][-1].middle / runs[1][-1].middle)
    sink = "Postfix's smtp-sink (C)" if SMTP_SINK else "a recording asyncio sink"
    print(
        f"\n{ACCOUNTS} sender accounts x {n // ACCOUNTS} e-mails ({n:,}) to {sink} in its "
        f"own process, one PostgreSQL (fsync off), rate {RATE}/s + burst {BURST} per account "
        f"(all together at most {ACCOUNTS * RATE:,} msg/s), {CONCURRENCY} connections per "
        f"account; median of {rounds} paired rounds; {cores()} cores available "
        f"(sched_getaffinity), load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
        + sink_note()
    )
    print(f"  a node with nothing to send: {startup:.1f} CPU s (start-up and two ticks)")
    for k, done in runs.items():
        print("\n".join(cpu_facts(f"{k} node(s)", done, n, k, startup)))
    speedup = statistics.median(ratios)
    print(
        f"  ratio     {speedup:.2f}x (goal 2.5x; rounds: "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + f"); over the middle 80 % of arrivals {statistics.median(middle):.2f}x (rounds: "
        + ", ".join(f"{x:.2f}" for x in middle)
        + "); every Message-ID arrived exactly once in every run"
    )
    print_possible(speedup, count, possible_speedup(count, runs[1], runs[count], n, startup))


def bench_kill_9_of_one_node_of_three(
    postgres: PostgresServer, imported: tuple[str, int, Path], tmp_path: Path
) -> None:
    """Chaos: ``disparo run --workers 3 --until-idle`` (lease 6 s, heartbeat 1 s), one sender
    node killed with SIGKILL once a third is sent: nothing lost, duplicates within the
    in-flight bound, each recipient's copies under one Message-ID."""
    template, n, files = imported
    log = tmp_path / "chaos.log"
    sink = start_sink(tmp_path)
    try:
        database = clone(postgres, template)
        config = configure(
            files,
            tmp_path / "chaos",
            sink.port,
            postgres.url(database),
            lease=f"{LEASE}s",
            heartbeat=f"{HEARTBEAT}s",
            log_level="info",
        )
        nodes = start_nodes(config, 3, log, "--until-idle", "--settle", "0.1")
        try:
            while len(nodes.workers) < 2 or sent_count(postgres, database) < n // 3:
                assert nodes.running(), log.read_text()[-3000:]
                nodes.sample()
                time.sleep(0.02)
            victim = nodes.workers[0]
            os.kill(victim, signal.SIGKILL)
            at_kill = sent_count(postgres, database)
            killed = time.monotonic()
            while nodes.running():
                nodes.sample()
                time.sleep(0.1)
            done = time.monotonic() - killed
        finally:
            if nodes.running():
                nodes.process.kill()
                nodes.process.wait()
        arrivals = sink.arrivals()
    finally:
        sink.kill()
    copies = Counter(a.recipient for a in arrivals)
    ids: defaultdict[str, set[str]] = defaultdict(set)
    for a in arrivals:
        ids[a.recipient].add(a.message_id)
    twice: Counter[int] = Counter()
    for recipient, count in copies.items():
        twice[account_of(recipient)] += count - 1
    per_account_bound = 2 * min(200, 4 * CONCURRENCY, RATE * LEASE // 4)
    lost = n - len(copies)
    assert lost == 0, f"{lost} recipients never received their message"
    assert all(len(v) == 1 for v in ids.values()), "a recipient got two Message-IDs"
    assert max(twice.values(), default=0) <= per_account_bound, twice
    windows = per_account_busiest(arrivals)
    busiest = max(b.messages for b in windows.values())
    text = log.read_text(errors="replace")
    rescue = next((x for x in text.splitlines() if "rescuing" in x), "(no rescue line)")
    print(
        f"\nkill -9 of one of 3 nodes after {at_kill:,} of {n:,} e-mails ({ACCOUNTS} accounts, "
        f"lease {LEASE} s, heartbeat {HEARTBEAT} s): run ended {done:.1f} s after the kill "
        f"(exit status {nodes.process.returncode}: the dead worker is in the run's problems); "
        f"lost {lost}; sent twice "
        f"{sum(twice.values())} over {sum(1 for v in twice.values() if v)} account(s), at most "
        f"{max(twice.values(), default=0)} for one (bound {per_account_bound} per account: two "
        f"chunks of min(200, 4 x {CONCURRENCY}, {RATE} x {LEASE} / 4)); each recipient's "
        f"copies under one Message-ID; busiest 1-s window of an account {busiest} (limit "
        f"{RATE + BURST})\n  {rescue.strip()[:200]}" + sink_note()
    )
    if over_the_limit(windows):
        print(f"  OVER rate + burst at the sink (D10): {over_the_limit(windows)}")


WRITE_LOCK_LINE = re.compile(r"writes to the store, ([0-9.]+) s in all waiting for SQLite")


def sqlite_run(files: Path, tmp: Path, n: int, count: int) -> Run:
    """``disparo run --until-idle`` (``--workers count``) on a copy of the imported SQLite
    store: msg/s, each process's CPU, the sink's, how long writes waited for SQLite's write
    lock (each process logs it when it stops); every Message-ID arrived once (asserted)."""
    tmp.mkdir(parents=True)
    shutil.copy2(files / "disparo.db", tmp / "disparo.db")
    log = tmp / "run.log"
    sink = start_sink(tmp, times=False)
    try:
        config = configure(files, tmp, sink.port, f"sqlite:///{tmp / 'disparo.db'}")
        data = tomllib.loads(config.read_text())
        data["engine"]["log_level"] = "info"
        config.write_text(tomli_w.dumps(data))
        sink_before = sink.cpu()
        machine = Machine()
        nodes = start_nodes(config, count, log, "--until-idle", "--settle", "0.1")
        while nodes.running():
            nodes.sample()
            time.sleep(0.1)
        assert nodes.process.returncode == 0, log.read_text(errors="replace")[-3000:]
        sink_cpu = sink.cpu() - sink_before
        others = machine.others(sum(nodes.per_process()) + sink_cpu)
        arrivals = sink.arrivals()
    finally:
        sink.kill()
    sent, rate = sent_rate(config)
    ids = Counter(a.message_id for a in arrivals)
    assert sent == n and len(arrivals) == n, (sent, len(arrivals))
    assert len(ids) == n and set(ids.values()) == {1}, "a Message-ID arrived twice"
    waited = sum(float(x) for x in WRITE_LOCK_LINE.findall(log.read_text(errors="replace")))
    return Run(rate, 0.0, nodes.per_process(), sink_cpu, 0.0, others, waited, 0, "")


def bench_workers_on_sqlite_against_one_process(tmp_path: Path) -> None:
    """``run --workers 2`` (BENCH_WORKERS) against one process on one SQLite store, 4 sender
    accounts, rate limit off, 16 connections each (paired rounds, median of BENCH_ROUNDS):
    sender accounts are the unit of parallelism, each sent by one process at a time."""
    n = rows(20_000)
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    count = int(os.environ.get("BENCH_WORKERS", 2))
    load = os.getloadavg()[0]
    files = tmp_path / "template"
    workspace(files, free_port(), n, accounts=4)
    startup_dir = tmp_path / "idle"
    startup_dir.mkdir()
    shutil.copy2(files / "disparo.db", startup_dir / "disparo.db")
    with sqlite3.connect(startup_dir / "disparo.db") as conn:
        conn.execute("UPDATE campaigns SET status = 'paused'")
    idle = configure(files, startup_dir, free_port(), f"sqlite:///{startup_dir / 'disparo.db'}")
    nodes = start_nodes(idle, 1, startup_dir / "run.log", "--until-idle", "--settle", "0.1")
    while nodes.running():
        nodes.sample()
        time.sleep(0.05)
    startup = nodes.per_process()[0]
    runs: dict[int, list[Run]] = {1: [], count: []}
    ratios: list[float] = []
    for r in range(rounds):
        for k in (1, count):
            runs[k].append(sqlite_run(files, tmp_path / f"r{r}w{k}", n, k))
        ratios.append(runs[count][-1].rate / runs[1][-1].rate)
    sink = "Postfix's smtp-sink (C)" if SMTP_SINK else "a recording asyncio sink"
    print(
        f"\nrun --workers {count} against one process: {n:,} e-mails over 4 sender accounts "
        f"to {sink} in its own process, one SQLite store, 16 connections per account, rate "
        f"limit off; median of {rounds} paired rounds; {cores()} cores available "
        f"(sched_getaffinity), load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
        + sink_note()
    )
    print(f"  a process with nothing to send: {startup:.1f} CPU s (start-up and two ticks)")
    for k, done in runs.items():
        print("\n".join(cpu_facts(f"{k} process(es)", done, n, k, startup, postgresql=False)))
    speedup = statistics.median(ratios)
    print(
        f"  ratio     {speedup:.2f}x (goal 1.8x; rounds: "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + "); every Message-ID arrived exactly once in every run"
    )
    print_possible(speedup, count, possible_speedup(count, runs[1], runs[count], n, startup))

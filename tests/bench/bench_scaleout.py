"""Scale-out benchmarks (issue 16, goal 6): engine nodes on ONE PostgreSQL (the tests' peer,
started with initdb/pg_ctl) sending 30 e-mail sender accounts to a fast local SMTP sink in its
own process, which records each message's arrival time, recipient and Message-ID.

- 1 node (``disparo run --until-idle``) against 3 nodes (``disparo run --workers 3
  --until-idle``: the first process and two sender processes): msg/s from the first to the
  last send as the store has them, the ratio (the goal is 2.5x), each node's CPU seconds
  (sampled from /proc while it runs) and the sink's, so that the reader sees when the machine
  is the limit; every Message-ID arrived exactly once (asserted), and each account's busiest
  1-second window at the sink against rate + burst (D10): printed, with the accounts over it
  and on how many connections their busiest second came (more than one node's connections
  there: a hand-over between nodes within that second);
- chaos: the same 3 nodes, one sender node killed with SIGKILL mid-run (the first process
  starts it again): every recipient is delivered, and what went twice is within the
  documented in-flight bound (README, "Crash safety": two chunks per account of
  min(200, 4 x concurrency, rate x lease / 4)).

Nothing here asserts a timing; the correctness facts (once, nothing lost, the duplicate
bound) are asserted.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
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

from tests.bench.bench_dispatch import free_port, sent_rate, wait_port, workspace
from tests.bench.conftest import rows
from tests.peers.postgres import PostgresServer, find_bindir, start_postgres

ACCOUNTS = 30
RATE = 100  # per account, messages per second
BURST = 10
CONCURRENCY = 4  # connections per account (30 accounts: 120 per node)
LEASE = 6  # seconds (the chaos run: a short lease, so the rescue comes soon)
HEARTBEAT = 1

#: an asyncio SMTP sink (EHLO offers PIPELINING) that keeps each message's arrival time
#: (time.time()), recipient and Message-ID, and writes them on SIGTERM to its second argument
SINK = textwrap.dedent(
    """
    import asyncio, re, signal, sys, time
    seen = []
    MID = re.compile(rb"\\r\\nmessage-id:[ \\t]*(<[^>\\r\\n]*>)", re.I)

    class Sink(asyncio.Protocol):
        def connection_made(self, transport):
            self.t, self.buf, self.data, self.rcpt = transport, b"", False, b""
            self.peer = transport.get_extra_info("peername")[1]
            transport.write(b"220 sink ESMTP\\r\\n")

        def data_received(self, chunk):
            self.buf += chunk
            out = []
            while True:
                if self.data:
                    end = self.buf.find(b"\\r\\n.\\r\\n")
                    if end < 0:
                        break
                    body, self.buf, self.data = self.buf[:end], self.buf[end + 5:], False
                    m = MID.search(body)
                    seen.append((time.time(), self.rcpt, m.group(1) if m else b"-", self.peer))
                    out.append(b"250 2.0.0 queued\\r\\n")
                    continue
                end = self.buf.find(b"\\r\\n")
                if end < 0:
                    break
                raw, self.buf = self.buf[:end], self.buf[end + 2:]
                line = raw.upper()
                if line.startswith(b"EHLO"):
                    out.append(b"250-sink\\r\\n250-PIPELINING\\r\\n250-8BITMIME\\r\\n"
                               b"250 SMTPUTF8\\r\\n")
                elif line.startswith(b"RCPT"):
                    self.rcpt = raw[raw.find(b"<") + 1:raw.rfind(b">")]
                    out.append(b"250 ok\\r\\n")
                elif line.startswith(b"DATA"):
                    self.data = True
                    self.buf = b"\\r\\n" + self.buf
                    out.append(b"354 go\\r\\n")
                elif line.startswith(b"QUIT"):
                    out.append(b"221 bye\\r\\n")
                else:
                    out.append(b"250 ok\\r\\n")
            if out:
                self.t.write(b"".join(out))

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await loop.create_server(Sink, "127.0.0.1", int(sys.argv[1]), backlog=1024)
        await stop.wait()
        server.close()
        with open(sys.argv[2], "wb") as f:
            f.write(b"\\n".join(b"%r %s %s %d" % (a, r, m, p) for a, r, m, p in seen))

    asyncio.run(main())
    """
)


@dataclass
class Arrival:
    at: float
    recipient: str
    message_id: str
    connection: int  # the client's port: which of the nodes' connections it came on


class Sink:
    """The recording sink in its own process."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.record = tmp / f"sink-{self.port}.txt"
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK, str(self.port), str(self.record)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def cpu(self) -> float:
        return cpu_seconds(self.process.pid) or 0.0

    def arrivals(self) -> list[Arrival]:
        """Stop the sink; what it received."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=120)
        found = []
        for line in self.record.read_text().splitlines():
            at, recipient, message_id, port = line.split(" ")
            found.append(Arrival(float(at), recipient, message_id, int(port)))
        return found

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def start_nodes(config: Path, count: int, log: Path, *extra: str) -> Nodes:
    args = [sys.executable, "-m", "engine.cli", "--config", str(config), "run", *extra]
    if count > 1:
        args += ["--workers", str(count)]
    with log.open("ab") as out:
        return Nodes(subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT))


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
    connections (one node opens at most ``CONCURRENCY`` per account: more means two nodes
    sent for the account within that second, a hand-over)."""

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
        f"mail{k:02d} {b.messages} on {b.connections} connections" for k, b in over.items()
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
    (the first process, then its sender processes), of the sink, and the busiest 1-s window
    of an account at the sink."""

    rate: float
    middle: float  # msg/s at the sink over the middle 80 % of arrivals (no start-up, no tail)
    cpu: list[float]
    sink: float
    busiest: int
    over: str  # the accounts over rate + burst at the sink ("" when every account held)


def one_run(
    postgres: PostgresServer, template: str, n: int, files: Path, tmp: Path, count: int
) -> Run:
    """Send the imported campaigns from a fresh copy of the database with ``count`` nodes;
    assert every Message-ID arrived once and each account's rate held at the sink."""
    log = tmp.with_suffix(".log")
    sink = Sink(tmp.parent)
    try:
        database = clone(postgres, template)
        config = configure(files, tmp, sink.port, postgres.url(database))
        sink_before = sink.cpu()
        nodes = start_nodes(config, count, log, "--until-idle", "--settle", "0.1")
        while nodes.running():
            nodes.sample()
            time.sleep(0.1)
        assert nodes.process.returncode == 0, log.read_text(errors="replace")[-3000:]
        sink_cpu = sink.cpu() - sink_before
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
    cpu = [nodes.cpu.get(nodes.process.pid, 0.0)] + [nodes.cpu.get(p, 0.0) for p in nodes.workers]
    return Run(
        rate,
        middle_rate(arrivals),
        cpu,
        sink_cpu,
        max(b.messages for b in busiest.values()),
        over_the_limit(busiest),
    )


def middle_rate(arrivals: list[Arrival]) -> float:
    """Messages per second at the sink between the 10th and the 90th percentile of arrivals:
    the nodes' start-up (which they do one after the other on a busy machine) and the last
    accounts' tail left out."""
    times = sorted(a.at for a in arrivals)
    low, high = len(times) // 10, len(times) * 9 // 10
    seconds = times[high] - times[low]
    return (high - low) / seconds if seconds else 0.0


def bench_three_nodes_on_one_postgresql_against_one(
    postgres: PostgresServer, imported: tuple[str, int, Path], tmp_path: Path
) -> None:
    """Paired rounds (median of BENCH_ROUNDS, 3): one node, then three, each from a fresh
    copy of the imported database, to a fresh sink."""
    template, n, files = imported
    rounds = int(os.environ.get("BENCH_ROUNDS", 3))
    runs: dict[int, list[Run]] = {1: [], 3: []}
    ratios: list[float] = []
    middle: list[float] = []
    for r in range(rounds):
        for count in (1, 3):
            runs[count].append(
                one_run(postgres, template, n, files, tmp_path / f"r{r}n{count}", count)
            )
        ratios.append(runs[3][-1].rate / runs[1][-1].rate)
        middle.append(runs[3][-1].middle / runs[1][-1].middle)
    print(
        f"\n{ACCOUNTS} sender accounts x {n // ACCOUNTS} e-mails ({n:,}) to a recording asyncio "
        f"sink in its own process, one PostgreSQL (fsync off), rate {RATE}/s + burst {BURST} "
        f"per account (all together at most {ACCOUNTS * RATE:,} msg/s), {CONCURRENCY} "
        f"connections per account; median of {rounds} paired rounds; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    for count, done in runs.items():
        cpu = [statistics.median(c) for c in zip(*(x.cpu for x in done), strict=False)]
        print(
            f"  {count} node(s) {statistics.median(x.rate for x in done):7,.0f} msg/s "
            f"({statistics.median(x.middle for x in done):,.0f} over the middle 80 %); CPU "
            "seconds per node " + ", ".join(f"{c:.1f}" for c in cpu) + f" (total {sum(cpu):.1f}); "
            f"sink {statistics.median(x.sink for x in done):.1f} s; busiest 1-s window of an "
            f"account {max(x.busiest for x in done)} (limit {RATE + BURST})"
        )
        for r, x in enumerate(done):
            if x.over:
                print(f"    round {r + 1}: OVER rate + burst at the sink (D10): {x.over}")
    print(
        f"  ratio     {statistics.median(ratios):.2f}x (goal 2.5x; rounds: "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + f"); over the middle 80 % of arrivals {statistics.median(middle):.2f}x (rounds: "
        + ", ".join(f"{x:.2f}" for x in middle)
        + "); every Message-ID arrived exactly once in every run"
    )


def bench_kill_9_of_one_node_of_three(
    postgres: PostgresServer, imported: tuple[str, int, Path], tmp_path: Path
) -> None:
    """Chaos: ``disparo run --workers 3 --until-idle`` (lease 6 s, heartbeat 1 s), one sender
    node killed with SIGKILL once a third is sent: nothing lost, duplicates within the
    in-flight bound, each recipient's copies under one Message-ID."""
    template, n, files = imported
    log = tmp_path / "chaos.log"
    sink = Sink(tmp_path)
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
        f"{RATE + BURST})\n  {rescue.strip()[:200]}"
    )
    if over_the_limit(windows):
        print(f"  OVER rate + burst at the sink (D10): {over_the_limit(windows)}")

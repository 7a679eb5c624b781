"""TUI benchmark (issue: the terminal UI): one refresh of the Campaigns, Campaign and Queues
screens against a store of 1,000 campaigns and 1,000,000 deliveries, on SQLite and on
PostgreSQL (issue 16, goal 7: a server started from the machine's binaries as the tests'
peer; the same rows, made by the server with ``generate_series``).

A refresh is what a screen's worker thread does once a second: the queries (``store.views``)
and building the rows and panels the widgets show (the screen's view model, in its module of
``tui.screens``). The store is built with bulk Core inserts (not the import pipeline): one
campaign of half the deliveries, paced in 10 batches, 6 released, 56 % sent over the last 90
minutes (a ``sent`` event each), the rest spread over 999 campaigns on four accounts. Figures:
median and p95 over 20 refreshes, and the ratio to the 100 ms budget; the first (cold) refresh
of the Campaign screen separately, as it counts the last hour's sends once. Another figure
applies 1,000 rows to the table widget, in place and rebuilt; a last one times a pause typed in
the UI until a running engine applies it (tests/test_tui.py checks that it does, and that
sending stops, without timing it).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.clock import TestClock
from engine.config import Config, load_config
from engine.plugins import load_plugins
from engine.store import Store
from engine.store import schema as t
from tests.bench.conftest import rows
from tests.helpers import write_config
from tests.peers.postgres import PostgresServer
from tui.backend import Backend
from tui.format import Styled
from tui.screens import campaign, campaigns, queues

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
CAMPAIGNS = 1000
ACCOUNTS = ("sms", "sms-curto", "email", "whatsapp")
BUDGET_MS = 100.0
REFRESHES = 20
CHUNK = 50_000


def _campaign(i: int, recipients: int, big: bool) -> dict[str, Any]:
    created = NOW - timedelta(minutes=3 * (CAMPAIGNS - i) + 100)
    active = big or i > CAMPAIGNS - 20
    return {
        "id": i,
        "name": f"mailing_231126_{i:03d}_cW{i % 40}_smslong"
        + ("_q10060_LE2311261900" if big else ""),
        "wallet_id": 1 + i % 40,
        "channel": "sms-long",
        "account": ACCOUNTS[i % len(ACCOUNTS)],
        "status": "sending" if active else "completed",
        "priority": i % 3,
        "start_at": created,
        "started_at": created,
        "deadline": NOW + timedelta(hours=4) if big else None,
        "finished_at": None if active else created + timedelta(minutes=20),
        "pacing_kind": "percent" if big else None,
        "pacing_value": 10 if big else None,
        "pacing_interval_s": 3600 if big else None,
        "recipients": recipients,
        "batches": 10 if big else 1,
        "released_batches": 6 if big else 1,
        "paused_seconds": 0,
        "sent": int(recipients * 0.56) if big else (recipients // 2 if active else recipients),
        "created_at": created,
        "updated_at": NOW,
        "settings": {},
    }


def _deliveries(sizes: dict[int, int]) -> Iterator[dict[str, Any]]:
    did = 0
    for cid, n in sizes.items():
        big = cid == 1
        batch = -(-n // 10) if big else n
        sent = int(n * 0.56) if big else n // 2 if cid > CAMPAIGNS - 20 else n
        for p in range(n):
            did += 1
            status = "sent" if p < sent else "claimed" if p < sent + 100 and big else "pending"
            yield {
                "id": did,
                "campaign_id": cid,
                "position": p,
                "batch": p // batch + 1,
                "address": f"+55119{did:08d}",
                "status": status,
                "attempts": 1 if status == "sent" else 0,
                "sent_at": NOW - timedelta(seconds=(sent - p) * 0.02) if status == "sent" else None,
                "lease_owner": "bench" if status == "claimed" else None,
                "lease_until": NOW + timedelta(minutes=5) if status == "claimed" else None,
            }


def _chunks(items: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _generate_on_postgresql(c: sa.Connection, big: int, small: int) -> None:
    """The same deliveries and events as ``_deliveries`` and ``build`` write on SQLite, made
    by the server with set-based ``INSERT … SELECT generate_series`` (seconds, not minutes, for
    a million rows)."""
    sent = int(big * 0.56)
    batch = -(-big // 10)
    now = NOW.replace(tzinfo=None)
    late = CAMPAIGNS - 20
    common = {"now": now, "lease": now + timedelta(minutes=5)}
    c.execute(
        sa.text(
            "INSERT INTO deliveries (id, campaign_id, position, batch, address, status, "
            "attempts, sent_at, lease_owner, lease_until) "
            "SELECT p + 1, 1, p, p / :batch + 1, '+55119' || lpad((p + 1)::text, 8, '0'), "
            "CASE WHEN p < :sent THEN 'sent' WHEN p < :sent + 100 THEN 'claimed' "
            "ELSE 'pending' END, CASE WHEN p < :sent THEN 1 ELSE 0 END, "
            "CASE WHEN p < :sent THEN CAST(:now AS timestamp) - (:sent - p) * interval "
            "'20 milliseconds' END, "
            "CASE WHEN p >= :sent AND p < :sent + 100 THEN 'bench' END, "
            "CASE WHEN p >= :sent AND p < :sent + 100 THEN CAST(:lease AS timestamp) END "
            "FROM generate_series(0, :big - 1) AS p"
        ),
        {**common, "batch": batch, "sent": sent, "big": big},
    )
    c.execute(
        sa.text(
            "INSERT INTO deliveries (id, campaign_id, position, batch, address, status, "
            "attempts, sent_at) "
            "SELECT d, cid, p, 1, '+55119' || lpad(d::text, 8, '0'), "
            "CASE WHEN p < s THEN 'sent' ELSE 'pending' END, CASE WHEN p < s THEN 1 ELSE 0 "
            "END, CASE WHEN p < s THEN CAST(:now AS timestamp) - (s - p) * interval "
            "'20 milliseconds' END "
            "FROM (SELECT cid, p, :big + (cid - 2) * :small + p + 1 AS d, "
            "CASE WHEN cid > :late THEN :small / 2 ELSE :small END AS s "
            "FROM generate_series(2, :campaigns) AS cid, generate_series(0, :small - 1) AS p) "
            "AS g"
        ),
        {**common, "big": big, "small": small, "late": late, "campaigns": CAMPAIGNS},
    )
    c.execute(
        sa.text(
            "INSERT INTO events (at, kind, campaign_id, delivery_id, account, origin, detail) "
            "SELECT CAST(:now AS timestamp) - (:sent - p) * interval '20 milliseconds', "
            "'sent', 1, p + 1, 'sms-curto', 'engine', '{}'::jsonb "
            "FROM generate_series(0, :sent - 1) AS p"
        ),
        {**common, "sent": sent},
    )
    for table in ("deliveries", "campaigns", "wallets"):
        c.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )


def build(folder: Path, deliveries: int, url: str | None = None) -> tuple[Store, Config, float]:
    """The store (SQLite in ``folder``, or the PostgreSQL database at ``url``), its config,
    and how long building it took."""
    started = time.perf_counter()
    config = load_config(
        write_config(
            folder,
            accounts={a: {"channel": "sms-long", "sandbox": True, "rate": 50} for a in ACCOUNTS},
        ),
        plugins=load_plugins(),
    )
    store = Store.open(url or f"sqlite:///{folder / 'bench.db'}", clock=TestClock(NOW))
    big = deliveries // 2
    small = (deliveries - big) // (CAMPAIGNS - 1)
    sizes = {1: big, **{i: small for i in range(2, CAMPAIGNS + 1)}}
    with store.write() as c:
        c.execute(
            sa.insert(t.wallets),
            [{"id": w, "code": f"W{w}", "created_at": NOW} for w in range(1, 41)],
        )
        c.execute(sa.insert(t.campaigns), [_campaign(i, n, i == 1) for i, n in sizes.items()])
        c.execute(
            sa.insert(t.accounts),
            [
                {
                    "name": a,
                    "channel": "sms-long",
                    "guard_state": "ok",
                    "updated_at": NOW,
                    "sent_24h": 0,
                    "bounces_24h": 0,
                    "complaints_24h": 0,
                }
                for a in ACCOUNTS
            ],
        )
        if store.dialect == "postgresql":
            _generate_on_postgresql(c, big, small)
        else:
            _insert_on_sqlite(c, sizes, big)
    if store.dialect == "postgresql":
        # what autovacuum does after such a load (outside the transaction: it is kept)
        with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.exec_driver_sql("ANALYZE")
    store.checkpoint()
    return store, config, time.perf_counter() - started


def _insert_on_sqlite(c: sa.Connection, sizes: dict[int, int], big: int) -> None:
    for chunk in _chunks(_deliveries(sizes)):
        c.execute(sa.insert(t.deliveries), chunk)
    sent = int(big * 0.56)
    events = (
        {
            "at": NOW - timedelta(seconds=(sent - p) * 0.02),
            "kind": "sent",
            "campaign_id": 1,
            "delivery_id": p + 1,
            "account": "sms-curto",
            "origin": "engine",
            "detail": {},
        }
        for p in range(sent)
    )
    for chunk in _chunks(events):
        c.execute(sa.insert(t.events), chunk)


def timings(
    refresh: Callable[[], object], clock: TestClock, n: int = REFRESHES
) -> tuple[list[float], list[float]]:
    """Milliseconds per refresh, wall and this process's CPU, the clock moving a second
    between them as in the UI."""
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(n):
        clock.jump(1)
        started, used = time.perf_counter(), time.process_time()
        refresh()
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - used) * 1000)
    return wall, cpu


def _median_p95(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


def report(name: str, ms: list[float] | tuple[list[float], list[float]]) -> None:
    """Median and p95 of wall milliseconds; with CPU milliseconds too (``timings``), those
    as well: on a busy shared machine the wall time mostly measures the wait for a core."""
    wall, cpu = ms if isinstance(ms, tuple) else (ms, None)
    median, p95 = _median_p95(wall)
    line = (
        f"  {name:<38} median {median:7.1f} ms   p95 {p95:7.1f} ms   "
        f"({median / BUDGET_MS:.2f} × the {BUDGET_MS:.0f} ms budget)"
    )
    if cpu is not None:
        cpu_median, cpu_p95 = _median_p95(cpu)
        line += f"; CPU median {cpu_median:.1f} ms, p95 {cpu_p95:.1f} ms"
    print(line)


def bench_tui_refresh_with_a_million_deliveries(tmp_path: Path) -> None:
    total = rows(1_000_000)
    store, config, took = build(tmp_path, total)
    refreshes(store, config, total, took)


def bench_tui_refresh_on_postgresql(postgres: PostgresServer, tmp_path: Path) -> None:
    """The same store and refreshes on PostgreSQL (a server started from the machine's
    binaries, as the tests' peer), the data made by the server (``generate_series``)."""
    total = rows(1_000_000)
    name = postgres.create_database()
    store, config, took = build(tmp_path, total, postgres.url(name))
    try:
        refreshes(store, config, total, took)
    finally:
        postgres.drop_database(name)


def refreshes(store: Store, config: Config, total: int, took: float) -> None:
    """Each screen's refresh, timed (``report``), on a store made by ``build``; closes it.
    What is loaded by then is frozen for the garbage collector, as ``disparo tui`` does before
    its UI starts (else a full pass over it lands in some refreshes, as in the UI before)."""
    gc.collect()
    gc.freeze()
    clock = store.clock
    assert isinstance(clock, TestClock)
    backend = Backend(store, config, clock, role="viewer", actor="bench")
    with store.read() as c:
        counted = c.execute(sa.select(sa.func.count()).select_from(t.deliveries)).scalar()
    print(
        f"\nTUI refresh ({store.dialect}): {CAMPAIGNS:,} campaigns, {counted:,} deliveries "
        f"(campaign 1: {total // 2:,} in 10 batches), built in {took:.1f} s"
    )
    report(
        "Campaigns (1,000 rows, goal ≤ 25 ms)",
        timings(lambda: campaigns.campaign_list(backend), clock),
    )
    report(
        "Campaigns, filtered ('sending')",
        timings(lambda: campaigns.campaign_list(backend, "sending"), clock),
    )
    cache = campaign.DetailCache()
    started = time.perf_counter()
    campaign.campaign_detail(backend, 1, cache)
    cold = (time.perf_counter() - started) * 1000
    report(
        f"Campaign 1 ({total // 2:,} recipients)",
        timings(lambda: campaign.campaign_detail(backend, 1, cache), clock),
    )
    print(f"  {'Campaign 1, first refresh (cold cache)':<38} {cold:7.1f} ms")
    small = campaign.DetailCache()
    report(
        "Campaign 500 (500 recipients)",
        timings(lambda: campaign.campaign_detail(backend, 500, small), clock),
    )
    report("Queues (4 accounts, 21 active)", timings(lambda: queues.queues(backend), clock))
    deep = int(total * 0.4)  # a page deep in campaign 1, by position
    page = [r.position for r in store.results.page(1, after=deep, limit=100)]
    assert page == list(range(deep + 1, deep + 101))
    report(
        f"Recipients page at {deep:,} (keyset)",
        timings(lambda: store.results.page(1, after=deep, limit=100), clock),
    )
    store.close()
    gc.unfreeze()


def bench_tui_table_widget_with_a_thousand_rows(tmp_path: Path) -> None:
    """Applying 1,000 campaign rows to the table: in place (a refresh where a few counters
    changed) and rebuilt (rows came or went)."""
    from textual.app import App, ComposeResult

    from tui.widgets import LiveTable

    rows_a = [
        (
            str(i),
            (
                str(i),
                "23/11 09:00",
                f"name {i}",
                "W",
                "sms-long",
                "sms",
                "500",
                "23/11 09:00",
                "-",
                Styled("sending 5%", "status--sending"),
            ),
        )
        for i in range(1000)
    ]
    rows_b = [
        (k, (*cells[:6], "501", *cells[7:])) if i % 100 == 0 else (k, cells)
        for i, (k, cells) in enumerate(rows_a)
    ]

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield LiveTable(campaigns.CAMPAIGN_COLUMNS, id="t")

    async def run() -> tuple[list[float], list[float]]:
        app = One()
        in_place: list[float] = []
        rebuilt: list[float] = []
        async with app.run_test(size=(132, 40)) as pilot:
            table = app.query_one(LiveTable)
            table.show(rows_a)
            await pilot.pause()
            for i in range(REFRESHES):
                started = time.perf_counter()
                table.show(rows_b if i % 2 == 0 else rows_a)
                in_place.append((time.perf_counter() - started) * 1000)
                await pilot.pause()
            for i in range(REFRESHES // 2):
                started = time.perf_counter()
                table.show(rows_a[i + 1 :])
                rebuilt.append((time.perf_counter() - started) * 1000)
                await pilot.pause()
        return in_place, rebuilt

    in_place, rebuilt = asyncio.run(run())
    print("\nTUI table widget, 1,000 rows × 10 columns:")
    report("in place (10 cells changed)", in_place)
    report("rebuilt (a row less)", rebuilt)


def bench_pause_from_the_ui_reaches_a_running_engine(tmp_path: Path) -> None:
    """`disparo tui --engine` sending at 10/s: how long a pause confirmed in the UI takes to be
    applied by the engine (it applies commands at its next tick, once a second), and what was
    still sent after that instant (sends the engine had started before it saw the pause)."""
    import json

    from click.testing import CliRunner

    from engine.cli import build_cli
    from engine.clock import RealClock
    from engine.service import Engine
    from engine.testing.eventually import eventually
    from tui.app import DisparoApp
    from tui.screens import CampaignScreen
    from tui.screenshots import SIZE

    async def once(folder: Path) -> tuple[float, int, float]:
        config_path = write_config(
            folder,
            accounts={"sms": {"channel": "sms-long", "sandbox": True, "rate": 10}},
            wallets={"BRAD": {"sms_template": "Olá {{ nome }}"}},
            engine={"log_level": "warning"},
        )
        plugins = load_plugins()
        config = load_config(config_path, plugins=plugins)
        today = datetime.now(UTC).astimezone(config.tz).strftime("%d%m%y")
        contacts = folder / f"mailing_{today}_001_cBRAD_smslong.csv"
        contacts.write_text("nome;telefone\n" + "".join(f"P{i};119{i:08d}\n" for i in range(400)))
        imported = CliRunner().invoke(
            build_cli(), ["--config", str(config_path), "import", str(contacts)]
        )
        assert imported.exit_code == 0, imported.output
        clock = RealClock()
        store = Store.open(config.engine.database_url, clock=clock)
        outbox = folder / "outbox" / "sms.jsonl"

        def sends() -> list[datetime]:
            if not outbox.exists():
                return []
            *lines, _partial = outbox.read_text(encoding="utf-8").split("\n")
            return [datetime.fromisoformat(json.loads(line)["at"]) for line in lines]

        def taken() -> Any:
            command = store.commands.get(1)
            return command if command is not None and command.status != "pending" else None

        engine = Engine(store, plugins, config, clock)
        backend = Backend(
            store, config, clock, role="operator", actor="bench", plugins=plugins, apply_after=60
        )
        app = DisparoApp(backend, engine=engine, every=0.5)
        try:
            async with app.run_test(size=SIZE) as pilot:
                await eventually(lambda: len(sends()) >= 10, what="the engine sending")
                await pilot.press("enter")
                await eventually(
                    lambda: isinstance(app.screen, CampaignScreen) and app.screen.loads,
                    what="the campaign screen",
                )
                await pilot.press("p")
                await pilot.pause()
                pressed = datetime.now(UTC)
                await pilot.press("enter")
                command = await eventually(taken, what="the engine to take the pause")
                assert command.status == "applied" and command.applied_at is not None
                ticks = engine.dispatcher._ticks  # whatever was still going lands meanwhile
                await eventually(lambda: engine.dispatcher._ticks >= ticks + 2, what="2 ticks")
                after = [at for at in sends() if at > command.applied_at]
                await pilot.press("q")
                await pilot.pause()
        finally:
            engine.stop.set()
            store.close()
        late = max(((at - command.applied_at).total_seconds() for at in after), default=0.0)
        return (command.applied_at - pressed).total_seconds(), len(after), late

    print("\nA pause in the TUI reaching a running engine (10/s, ticks once a second):")
    for run in range(1, 4):
        folder = tmp_path / f"run{run}"
        folder.mkdir()
        took, after, late = asyncio.run(once(folder))
        print(
            f"  run {run}: applied {took * 1000:6.0f} ms after Enter; then {after} sent "
            f"(the last {late * 1000:.0f} ms after it was applied)"
        )


def bench_idle_bytes_over_ssh(tmp_path: Path) -> None:
    """What an idle session costs the network: `disparo ssh-serve` runs the real `disparo tui`
    on the demo store (no engine, nothing changing), a client with a 132×40 terminal shows
    each screen; after it settled, the bytes received over 10 s are counted (the issue's
    budget: under 2 KB/s; before the UI redrew only what changed it was 11–22 KB/s)."""
    import asyncssh

    from tui.screenshots import build_demo
    from tui.ssh import KeyRing, TuiServer, load_host_key, tui_argv

    build_demo(tmp_path).close()
    client_key = asyncssh.generate_private_key("ssh-ed25519", comment="bench@here")
    authorized = tmp_path / "secrets" / "ssh_authorized_keys"
    authorized.parent.mkdir(exist_ok=True)
    authorized.write_text(
        f'environment="DISPARO_ROLE=viewer" {client_key.export_public_key().decode().strip()}\n'
    )
    host_key, _ = load_host_key(tmp_path / "secrets" / "ssh_host_ed25519_key")
    settle, window = 3.0, 10.0

    async def run() -> dict[str, tuple[int, float]]:
        server = TuiServer(
            keys=KeyRing(authorized), host_key=host_key, argv=tui_argv(tmp_path / "disparo.toml")
        )
        await server.start("127.0.0.1", 0)
        found: dict[str, tuple[int, float]] = {}
        try:
            async with asyncssh.connect(
                "127.0.0.1",
                server.port,
                username="disparo",
                client_keys=[client_key],
                known_hosts=None,
                agent_path=None,
                config=None,
            ) as conn:
                process = await conn.create_process(
                    term_type="xterm-256color", term_size=(132, 40), encoding=None
                )

                async def count(seconds: float) -> int:
                    got = 0
                    end = time.monotonic() + seconds
                    while (left := end - time.monotonic()) > 0:
                        try:
                            async with asyncio.timeout(left):
                                got += len(await process.stdout.read(65536))
                        except TimeoutError:
                            break
                    return got

                for key, screen in (
                    ("", "Campaigns"),
                    ("2", "Queues"),
                    ("3", "Sources"),
                    ("4", "Suppressions"),
                    ("5", "Audit"),
                    ("1\r", "Campaign 1 (detail)"),
                ):
                    process.stdin.write(key.encode())
                    # the first screen also waits for the process to start (busy machines)
                    drawn = await count(settle if key else 3 * settle)
                    found[screen] = (drawn, await count(window) / window)
                process.stdin.write(b"q")
        finally:
            await server.close()
        return found

    found = asyncio.run(run())
    print(f"\nIdle TUI over SSH (132×40, demo store, nothing changing; bytes/s over {window:g} s):")
    for screen, (drawn, rate) in found.items():
        print(
            f"  {screen:<22} {rate:8.0f} B/s  ({rate / 2000:.0%} of the 2 KB/s budget; "
            f"{drawn:,} bytes to draw it)"
        )

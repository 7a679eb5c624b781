"""Screenshots of the TUI for the documentation, from a deterministic demo store.

``python -m tui.screenshots [DIR]`` builds the demo in a temporary folder and writes one SVG
per screen into DIR (default ``docs/screens``). The demo goes through the product's own
paths on a test clock: mailing files imported by the mailing format, campaigns sent by the
dispatcher to the sandbox outboxes, clicks, unsubscribes and bounces applied as feedback,
the guard pausing an account, an operator pausing and cancelling campaigns, files seen on
the sources. The same demo feeds the snapshot tests, so what the docs show is tested.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w

from engine.actions import submit_and_apply
from engine.clock import TestClock
from engine.config import Config, load_config
from engine.events import Signal
from engine.intake.importer import file_digest, import_file
from engine.plugins import Plugins, load_plugins
from engine.plugins.format import FormatContext
from engine.sending.dispatcher import Dispatcher
from engine.sending.guard import Guard
from engine.store import Store

#: 09:00 in São Paulo, the day the demo's files are dated
DEMO_START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
#: how long the demo runs: its screenshots are taken at 09:35 local time
DEMO_LENGTH = timedelta(minutes=35)
SIZE = (132, 40)
FIRST = ["Ana", "Bruno", "Carla", "Davi", "Elaine", "Fábio", "Gabriela", "Heitor", "Íris", "João"]
LAST = ["Silva", "Souza", "Oliveira", "Santos", "Lima", "Pereira", "Conceição", "Araújo"]
OFFER = "https://loja.example/oferta"

CONFIG: dict[str, Any] = {
    "engine": {"time_zone": "America/Sao_Paulo", "spool_dir": "spool", "log_level": "warning"},
    "sources": {
        "drop": {"kind": "local", "path": "drop", "every": "2m"},
        "parceiro": {
            "kind": "sftp",
            "host": "sftp.parceiro.com.br",
            "user": "disparo",
            "password_env": "PARCEIRO_SFTP_PASSWORD",
            "host_key_fingerprint": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "cron": "0 * * * *",
        },
    },
    "accounts": {
        "sms": {"channel": "sms-long", "sandbox": True, "rate": 0.1},
        "sms-curto": {"channel": "sms-short", "sandbox": True, "rate": 1.0},
        "cobranca": {"channel": "sms-long", "sandbox": True, "rate": 1.0, "min_sample": 20},
        "email": {
            "channel": "email",
            "sandbox": True,
            "from_address": "contato@empresa.com.br",
            "sink": "127.0.0.1:2525",
            "rate": 20.0,
        },
    },
    "wallets": {
        "BRAD": {"default_sender": "sms", "sms_template": "Olá {{ nome }}, veja " + OFFER},
        "VAREJO": {"default_sender": "sms", "sms_template": "Olá {{ nome }}, sua compra chegou."},
        "MAIOR30": {"sms_template": "{{ nome }}, sua fatura vence amanhã."},
        "COBRANCA": {"default_sender": "cobranca", "sms_template": "{{ nome }}, regularize."},
        "123": {"email_subject": "Novidades para você", "email_template": "email.html"},
    },
}


@dataclass
class Demo:
    """The demo's store and what it is made of."""

    folder: Path
    store: Store
    config: Config
    clock: TestClock
    plugins: Plugins
    #: the demo's campaigns by their role in it
    campaigns: dict[str, int] = field(default_factory=dict)

    def close(self) -> None:
        self.store.close()


def _contacts(count: int, seed: int, *, email: bool = False) -> tuple[str, list[str]]:
    """A CSV of made-up contacts, and their addresses as disparo normalises them."""
    rng = random.Random(seed)  # noqa: S311 - made-up demo data
    lines = ["cpf;nome;email" if email else "cpf;nome;telefone"]
    addresses = []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        if email:
            address = f"{first.lower()}.{last.lower()}{i}@example.com"
            lines.append(f"{seed:03d}{i:08d};{first} {last};{address}")
        else:
            digits = f"9{seed:02d}{i:03d}{rng.randint(100, 999)}"
            address = f"+5511{digits}"
            lines.append(f"{seed:03d}{i:08d};{first} {last};(11) {digits[:5]}-{digits[5:]}")
        addresses.append(address)
    return "\n".join(lines) + "\n", addresses


def build_demo(folder: Path) -> Demo:
    """Build the demo store in ``folder`` (made if missing): 35 minutes of a morning.

    Runs its own event loop (the dispatcher on a test clock): call it outside one."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "email.html").write_text("<p>Olá {{ nome }}, temos novidades.</p>", "utf-8")
    (folder / "drop").mkdir(exist_ok=True)
    config_path = folder / "disparo.toml"
    config_path.write_text(tomli_w.dumps(CONFIG), encoding="utf-8")
    plugins = load_plugins()
    config = load_config(config_path, plugins=plugins)
    clock = TestClock(DEMO_START)
    store = Store.open(f"sqlite:///{folder / 'disparo.db'}", clock=clock)
    store.inline = True  # on a test clock: deterministic, no threads
    demo = Demo(folder, store, config, clock, plugins)
    day = DEMO_START.astimezone(config.tz).date()

    lembrete, lembrete_phones = _contacts(80, 3)
    for address, origin, reason in (
        (lembrete_phones[5], "stop", "replied STOP"),
        (lembrete_phones[17], "manual", "asked by phone not to be contacted"),
        (lembrete_phones[40], "complaint", "marked the message as spam"),
        (lembrete_phones[41], "unsubscribe", "unsubscribed from all campaigns (D19)"),
        ("joao.lima@example.com", "bounce", "550 5.1.1 user unknown"),
    ):
        kind = "email" if "@" in address else "phone"
        store.suppressions.add(kind, address, origin=origin, actor="demo", reason=reason)

    def load(role: str, name: str, rows: int, seed: int, *, email: bool = False) -> None:
        content = lembrete if seed == 3 else _contacts(rows, seed, email=email)[0]
        demo.campaigns[role] = _import(demo, day, name, content)

    load("promo", "mailing_231126_001_cBRAD_smslong_q25010_LE2311260950.csv", 400, 1)
    load("aviso", "mailing_231126_002_cVAREJO_smslong.csv", 120, 2)
    load("lembrete", "mailing_231126_003_cBRAD_smsshort.csv", 80, 3)
    load("expira", "mailing_231126_004_cBRAD_smsshort_LE2311260902.csv", 200, 4)
    load("fatura", "mailing_231126_005_cMAIOR30_smsshort_q50030.csv", 200, 5)
    load("newsletter", "mailing_231126_006_c123_email_i2411260800.csv", 150, 6, email=True)
    load("cobranca", "mailing_231126_007_cCOBRANCA_smslong_q50005.csv", 100, 7)
    load("cancelada", "mailing_231126_008_cBRAD_smslong.csv", 50, 8)
    for role in ("promo", "lembrete"):
        store.feedback.register_links(demo.campaigns[role], [OFFER])
    _imported_files(demo)
    asyncio.run(_morning(demo))
    _sources(demo, day)
    store.inline = False
    return demo


async def _morning(demo: Demo) -> None:
    """Send for 35 minutes, with what operators, recipients and the guard do meanwhile."""
    store, plugins, config, clock = demo.store, demo.plugins, demo.config, demo.clock
    await _act(demo, "cancel", "cancelada", "lista errada")
    dispatcher = Dispatcher(
        store,
        plugins,
        config,
        clock,
        node="demo",
        tick_seconds=1.0,
        # chunks are sized by the lease (rate × lease / 4): the demo's figures, which the
        # screenshots and the UI's tests show, were made with 5-minute leases
        lease=timedelta(minutes=5),
        rng=random.Random(7),  # noqa: S311
    )
    guard = Guard(store, config, clock)
    events: dict[timedelta, Callable[[], Awaitable[None]]] = {
        timedelta(seconds=100): lambda: _feedback(demo, "lembrete", clicks=12, twice=4),
        timedelta(minutes=2): lambda: _bounce(demo, "cobranca", 6),
        timedelta(minutes=2, seconds=30): lambda: _guard(guard),
        timedelta(minutes=3, seconds=30): lambda: _act(demo, "pause", "fatura", "cliente pediu"),
        timedelta(minutes=12): lambda: _feedback(demo, "promo", clicks=9, twice=2),
        timedelta(minutes=14): lambda: _unsubscribe(demo, "promo"),
    }
    step = timedelta(seconds=5)
    elapsed = timedelta(0)
    # stop sending a little before the end: a stopping sender waits for its token first
    while elapsed < DEMO_LENGTH - timedelta(seconds=30):
        await dispatcher.tick()
        for at in [at for at in events if at <= elapsed]:
            await events.pop(at)()
        await clock.advance(step)
        elapsed += step
    stopping = asyncio.ensure_future(dispatcher.shutdown())
    while not stopping.done():
        await clock.advance(1)
    await stopping
    await clock.set(DEMO_START + DEMO_LENGTH)
    await guard.check()


def _import(demo: Demo, day: date, name: str, content: str) -> int:
    spool = demo.folder / "spool-in.csv"
    spool.write_text(content, encoding="utf-8")
    fmt = demo.plugins.formats()["mailing"](
        FormatContext(demo.config, "drop", day, demo.clock.now())
    )
    report = import_file(
        demo.store,
        fmt,
        source="drop",
        path=name,
        spool=spool,
        size=spool.stat().st_size,
        mtime=demo.clock.now(),
        sha256=file_digest(spool),
        actor="collector:drop",
    )
    if report.outcome != "imported" or report.campaign_id is None:
        raise RuntimeError(f"demo file {name} was not imported: {report.problems}")
    spool.unlink()
    return report.campaign_id


async def _act(demo: Demo, action: str, role: str, reason: str) -> None:
    applied = await submit_and_apply(
        demo.store,
        actor="ana",
        role="operator",
        action=action,
        target=f"campaign:{demo.campaigns[role]}",
        args={"reason": reason},
    )
    if not applied.ok:
        raise RuntimeError(f"demo {action} of {role}: {applied.message}")


def _sent(demo: Demo, role: str) -> list[int]:
    rows = demo.store.results.page(demo.campaigns[role], limit=10_000)
    return [r.delivery_id for r in rows if r.status == "sent"]


async def _feedback(demo: Demo, role: str, *, clicks: int, twice: int) -> None:
    now = demo.clock.now()
    sent = _sent(demo, role)
    signals = [
        Signal("click", now, "tracking", delivery_id=d, detail={"link": 1})
        for d in sent[:clicks] + sent[:twice]
    ]
    demo.store.feedback.apply(signals)


async def _bounce(demo: Demo, role: str, count: int) -> None:
    now = demo.clock.now()
    demo.store.feedback.apply(
        [
            Signal(
                "bounce",
                now,
                "mailbox",
                delivery_id=d,
                detail={"hard": True, "status": "5.1.1", "diagnostic": "number does not exist"},
            )
            for d in _sent(demo, role)[:count]
        ]
    )


async def _unsubscribe(demo: Demo, role: str) -> None:
    now = demo.clock.now()
    rows = demo.store.results.page(demo.campaigns[role], limit=10_000)
    pending = [r.delivery_id for r in rows if r.status == "pending"]
    sent = [r.delivery_id for r in rows if r.status == "sent"]
    demo.store.feedback.apply(
        [
            Signal("unsubscribe", now, "tracking", delivery_id=sent[3], detail={"scope": "all"}),
            *(
                Signal("unsubscribe", now, "tracking", delivery_id=d, detail={"scope": "campaign"})
                for d in pending[-3:]
            ),
        ]
    )


async def _guard(guard: Guard) -> None:
    await guard.check()


IMPORTED = (
    "mailing_231126_001_cBRAD_smslong_q25010_LE2311260950.csv",
    "mailing_231126_002_cVAREJO_smslong.csv",
    "mailing_231126_003_cBRAD_smsshort.csv",
)


def _imported_files(demo: Demo) -> None:
    """The drop folder's listing at 09:00: the files imported then."""
    files = demo.store.files
    files.observe("drop", [(n, 4096 + 17 * i, DEMO_START) for i, n in enumerate(IMPORTED)])
    ledger = {e.path: e.id for e in files.ledger("drop")}
    for n in IMPORTED:
        files.set_status("drop", n, "imported", file_id=ledger.get(n))


def _sources(demo: Demo, day: date) -> None:
    """What the two sources' listings showed this morning."""
    files = demo.store.files
    now = demo.clock.now()
    start = DEMO_START
    files.set_source_state(
        "drop",
        status="ok",
        polled_at=now - timedelta(seconds=40),
        next_poll_at=now + timedelta(seconds=80),
    )
    files.set_source_state(
        "parceiro",
        status="error",
        message="connection refused by sftp.parceiro.com.br:22 (is the server up?)",
        polled_at=start,
        next_poll_at=start + timedelta(hours=1),
    )
    # what the collector decides for each, by the mailing format's own reading of the name
    others = {
        "mailing_241126_001_cBRAD_smslong.csv": 2048,
        "mailing_231126_009_cBRAD_sms.csv": 1500,
        "mailing_231126_010_cVAREJO_smslong.csv": 900_000,
        "relatorio.pdf": 51_200,
    }
    files.observe("drop", [(n, size, now) for n, size in others.items()])
    fmt = demo.plugins.formats()["mailing"](FormatContext(demo.config, "drop", day, now))
    for n, size in others.items():
        verdict = fmt.inspect(n, set(others))
        status = "unstable" if verdict.action == "import" else verdict.status
        problems = verdict.problems
        file_id = None
        if verdict.action == "reject":
            file_id = files.record_rejection(
                source="drop",
                path=n,
                size=size,
                mtime=now,
                sha256="",
                code=problems[0].code,
                message="\n".join(p.message for p in problems),
            )
            files.mark_remote_done(file_id)
        files.set_status(
            "drop",
            n,
            status,
            code=problems[0].code if problems else None,
            message="\n".join(p.message for p in problems) or None,
            file_id=file_id,
        )


# -- screenshots -------------------------------------------------------------------------------


async def take(demo: Demo, out: Path, *, size: tuple[int, int] = SIZE) -> list[Path]:
    """One SVG per screen of the demo, into ``out``."""
    from textual.widgets import Input

    from tui.app import DisparoApp
    from tui.backend import Backend

    backend = Backend(
        demo.store, demo.config, demo.clock, role="admin", actor="ana", plugins=demo.plugins
    )
    app = DisparoApp(backend, every=3600)
    written: list[Path] = []
    async with app.run_test(size=size) as pilot:

        async def settle() -> None:
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()
            await app.workers.wait_for_complete()
            await pilot.pause()

        async def shot(name: str) -> None:
            await settle()
            path = out / f"{name}.svg"
            path.write_text(app.export_screenshot(title=f"disparo — {name}"), encoding="utf-8")
            written.append(path)

        await shot("campaigns")
        search = app.screen.query_one("#filter", Input)
        search.value = "q25010"  # the paced campaign with a deadline
        await settle()
        await pilot.press("enter")
        await shot("campaign")
        await pilot.press("escape")
        search.value = ""
        await pilot.press("2")
        await shot("queues")
        await pilot.press("3")
        await shot("sources")
        await pilot.press("4")
        await shot("suppressions")
    return written


def main(out: Path) -> list[Path]:
    """Build the demo in a temporary folder and write the screenshots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="disparo-demo-") as tmp:
        demo = build_demo(Path(tmp))
        try:
            return asyncio.run(take(demo, out))
        finally:
            demo.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)  # the demo's guard warns, on purpose
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/screens")
    for written in main(target):
        print(written)

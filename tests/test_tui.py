"""The terminal UI: every screen and action with Textual's pilot, snapshots of the main screens
on the demo store (a test clock, so they are the same on every run), the read models behind
them checked against full counts, and a pause made in the UI reaching a running engine."""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import re
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Input, Static
from textual.worker import WorkerFailed

from engine.clock import RealClock, TestClock
from engine.config import Config, TuiSettings, load_config
from engine.plugins import Plugins, load_plugins
from engine.schedule import live
from engine.store import Store
from engine.store import schema as t
from engine.testing.eventually import TIMEOUT, eventually
from tests.helpers import write_config
from tui.app import DisparoApp
from tui.backend import Backend
from tui.dialogs import FormDialog, TextDialog
from tui.export import ExportRefused, write_export
from tui.screens import (
    CampaignScreen,
    LiveScreen,
    QueuesScreen,
    SourcesScreen,
    SuppressionsScreen,
)
from tui.screens import campaign as campaign_screen
from tui.screens import campaigns as campaigns_screen
from tui.screenshots import DEMO_LENGTH, DEMO_START, SIZE, build_demo
from tui.widgets import LiveTable

NOW = DEMO_START + DEMO_LENGTH  # 09:35 in São Paulo


@pytest.fixture(scope="session")
def demo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo store, built once per test process (~1.5 s) and copied for each test."""
    folder = tmp_path_factory.mktemp("demo")
    demo = build_demo(folder)
    demo.close()
    return folder


@pytest.fixture(autouse=True)
def _notifications_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    """A notification leaves the screen 5 s (wall clock) after it came, unless it says how
    long it stays; a test reading ``app._notifications`` on a busy machine may come later
    than that, so here they stay (for an hour)."""
    monkeypatch.setattr(DisparoApp, "NOTIFICATION_TIMEOUT", 3600)


@dataclass
class World:
    folder: Path
    store: Store
    config: Config
    plugins: Plugins
    clock: TestClock

    def campaign(self, name_part: str) -> int:
        rows, _ = self.store.views.campaign_rows(text=name_part)
        assert len(rows) == 1, [r.name for r in rows]
        return rows[0].id

    def app(self, role: str = "operator", *, actor: str = "ana") -> DisparoApp:
        backend = Backend(
            self.store,
            self.config,
            self.clock,
            role=role,
            actor=actor,
            plugins=self.plugins,
            apply_after=0,  # no engine here: the UI applies its commands itself
        )
        return DisparoApp(backend, every=3600)


@pytest.fixture
def world(demo_folder: Path, tmp_path: Path) -> Iterator[World]:
    folder = tmp_path / "demo"
    shutil.copytree(demo_folder, folder)
    plugins = load_plugins()
    clock = TestClock(NOW)
    store = Store.open(f"sqlite:///{folder / 'disparo.db'}", clock=clock)
    # an engine runs (as in the demo, `disparo tui --engine`); the test clock keeps its
    # heartbeat fresh. Tests of a store with no engine unregister it.
    store.engines.register(
        "demo", host="demo-host", pid=1, version="1", mode="tui", lease=timedelta(seconds=30)
    )
    yield World(
        folder, store, load_config(folder / "disparo.toml", plugins=plugins), plugins, clock
    )
    store.close()


async def settle(pilot: Pilot[Any]) -> None:
    """Let every load and action finish and their messages land; on a loaded machine the
    screen's first load may not even have started yet, so wait until it is shown."""

    async def settled() -> bool:
        # every worker but an engine running in the app (it runs until the app quits)
        busy = [w for w in pilot.app.workers if w.group != "engine" and not w.is_finished]
        if busy:  # (an empty list would mean every worker)
            # a load that fails is shown by the screen (its own test): not the waiter's error
            with contextlib.suppress(WorkerFailed):
                await pilot.app.workers.wait_for_complete(busy)
        await pilot.pause()
        loaded = getattr(pilot.app.screen, "loads", 1) >= 1
        idle = not [w for w in pilot.app.workers if w.group != "engine" and w.is_running]
        return loaded and idle

    await settled()  # a first round: what it sets off (a load after an action) starts now
    await eventually(settled, what="the screen loaded, no load or action running")


async def fill(pilot: Pilot[Any], selector: str, text: str) -> None:
    """Put ``text`` in an input of the current screen (key by key costs ~0.1 s a key)."""
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = text
    field.cursor_position = len(text)
    await settle(pilot)


def screen_text(app: DisparoApp) -> str:
    """What the terminal shows, as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True)
    console.print(
        app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    )
    return console.export_text()


def table(app: DisparoApp, selector: str) -> LiveTable:
    return app.screen.query_one(selector, LiveTable)


def column(tbl: LiveTable, key: str) -> list[str]:
    return [str(tbl.get_cell(row, key)) for row in tbl.keys]


# -- Campaigns -------------------------------------------------------------------------------


async def test_campaigns_list_every_campaign_newest_first_in_the_local_zone(world: World) -> None:
    app = world.app()
    async with app.run_test(size=(200, 40)) as pilot:  # wide: every column
        await settle(pilot)
        campaigns = table(app, "#campaigns")
        assert campaigns.keys == [str(i) for i in range(8, 0, -1)]
        # created 12:00 UTC: 09:00 in America/Sao_Paulo
        assert set(column(campaigns, "created")) == {"23/11 09:00"}
        # with work left, how much of it is settled
        assert column(campaigns, "status") == [
            "cancelled",
            "held 50%",
            "scheduled",
            "paused 38%",
            "expired",
            "completed",
            "sending 0%",
            "sending 52%",
        ]
        assert column(campaigns, "sender")[-1] == "sms"
        assert column(campaigns, "recipients")[-1] == "400"
        assert column(campaigns, "end")[-1] == "23/11 09:50"  # the deadline
        assert column(campaigns, "name")[-1].startswith(
            "231126_001_cBRAD_smslong_q25010_LE2311260950 · ⚠ 99 will expire"
        )
        # colours by status come from the stylesheet's classes
        sending = campaigns.get_cell("1", "status").style
        paused = campaigns.get_cell("5", "status").style
        assert sending == campaigns.get_component_rich_style("status--sending", partial=True)
        assert paused == campaigns.get_component_rich_style("status--paused", partial=True)
        assert sending != paused and sending.color is not None
        assert "8 campaigns · 2 need attention (a) · sorted by id ↓" in screen_text(app)


async def test_filter_as_you_type_and_sort(world: World) -> None:
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"sms")  # typed key by key
        await fill(pilot, "#filter", "smsshort")
        await settle(pilot)
        campaigns = table(app, "#campaigns")
        assert campaigns.keys == ["5", "4", "3"]
        await fill(pilot, "#filter", "smsshort paused")  # every word must match
        await settle(pilot)
        assert campaigns.keys == ["5"]
        await pilot.press("ctrl+u", "enter")  # clear, back to the table
        await settle(pilot)
        assert len(campaigns.keys) == 8 and app.focused is campaigns
        await pilot.press("s", "s")  # sort by the next column (created), then the next (name)
        await settle(pilot)
        names = column(campaigns, "name")
        assert names == sorted(names, reverse=True)
        await pilot.press("S")
        await settle(pilot)
        assert column(campaigns, "name") == sorted(names)
        assert "sorted by name ↑" in screen_text(app)


async def test_a_refresh_rewrites_changed_cells_only_and_keeps_the_cursor(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        campaigns = table(app, "#campaigns")
        await pilot.press("down", "down")
        assert campaigns.selected_key == "6"
        rebuilt: list[int] = []
        original = LiveTable.clear
        monkeypatch.setattr(
            LiveTable, "clear", lambda self, *a, **k: rebuilt.append(1) or original(self, *a, **k)
        )
        with world.store.write() as c:
            c.execute(sa.update(t.campaigns).where(t.campaigns.c.id == 1).values(sent=213))
        app.screen.reload()
        await settle(pilot)
        assert rebuilt == [] and campaigns.get_cell("1", "status").plain == "sending 54%"
        # a new campaign is a new row: the table is rebuilt, the cursor stays on its campaign
        with world.store.write() as c:
            c.execute(
                sa.insert(t.campaigns).values(
                    name="nova",
                    channel="sms-long",
                    status="scheduled",
                    start_at=NOW,
                    created_at=NOW,
                    updated_at=NOW,
                    settings={},
                )
            )
        app.screen.reload()
        await settle(pilot)
        assert rebuilt == [1] and campaigns.keys[0] == "9" and campaigns.selected_key == "6"


# -- one campaign ----------------------------------------------------------------------------


async def test_campaign_detail_totals_pacing_deadline_sparkline_and_recipients(
    world: World,
) -> None:
    promo = world.campaign("q25010")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await fill(pilot, "#filter", "q25010")
        await pilot.press("enter", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, CampaignScreen) and screen.campaign_id == promo
        text = screen_text(app)
        for line in (
            "Recipients          400",
            "Sent                208",
            "Remaining           189",
            "Read                9",
            "Cancelled           3",
            "Unsubscribed        4",
            "Clicks unique/total 9 / 11",
            "Pacing: 25 % every 10 min · 4/4 batches released",
            "Deadline         09:50 (in 15m 00s)",
            "Projected finish 10:12, after the deadline",
            "Will expire      114 recipients",
        ):
            assert line in text, line
        assert screen.query_one("#deadline").has_class("-late")
        timeline = table(app, "#timeline")
        assert column(timeline, "done") == [
            "██████████ 100/100",
            "██████████ 100/100",
            "█░░░░░░░░░ 8/100",
            "░░░░░░░░░░ 3/100",
        ]
        assert column(timeline, "state") == ["done", "done", "sending", "queued after batch 3"]
        assert column(timeline, "release") == ["09:00:00", "09:10:00", "09:20:00", "09:30:00"]
        detail = screen.detail
        assert detail is not None
        # sends per minute: what the events say, minute by minute
        assert sum(detail.spark) == 208 and len(detail.spark) == campaign_screen.SPARK_MINUTES
        recipients = table(app, "#recipients")
        assert len(recipients.keys) == 100 and recipients.keys[0] == "0"
        first = recipients.get_cell("0", "code").plain, recipients.get_cell("0", "urls").plain
        assert first == ("00100000000", "https://loja.example/oferta")
        assert recipients.get_cell("0", "clicks").plain == "2"
        await pilot.press("n")
        await settle(pilot)
        assert recipients.keys[0] == "100" and recipients.keys[-1] == "199"
        assert "Recipients 101–200 of 400" in screen_text(app)
        await pilot.press("n", "n", "n")
        await settle(pilot)
        assert recipients.keys[-1] == "399"
        unsubscribed = [
            k for k in recipients.keys if recipients.get_cell(k, "unsub_campaign").plain
        ]
        assert len(unsubscribed) == 3
        reasons = {recipients.get_cell(k, "reason").plain for k in unsubscribed}
        assert reasons == {"the recipient unsubscribed (campaign, D19)"}
        await pilot.press("b")
        await settle(pilot)
        assert recipients.keys[0] == "200"
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, CampaignScreen)


async def test_a_paused_campaign_releases_later_and_a_scheduled_one_says_when_it_starts(
    world: World,
) -> None:
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        app.push_screen(CampaignScreen(app.backend, world.campaign("q50030")))
        await settle(pilot)
        # batch 2: 09:00 + 30 min + the 31.5 min paused so far (D7)
        assert column(table(app, "#timeline"), "state") == ["paused", "releases in 26m 30s"]
        app.pop_screen()
        app.push_screen(CampaignScreen(app.backend, world.campaign("c123_email")))
        await settle(pilot)
        text = screen_text(app)
        assert "starts 24/11 08:00 (in 22h 25m)" in text
        assert "Rate             20/s (account limit)" in text


async def test_export_writes_every_recipient_formula_safe(
    world: World, tmp_path: Path, run_cli: Any
) -> None:
    promo = world.campaign("q25010")
    with world.store.write() as c:
        first = c.execute(
            sa.select(t.deliveries.c.contact_id).where(
                t.deliveries.c.campaign_id == promo, t.deliveries.c.position == 0
            )
        ).scalar_one()
        c.execute(
            sa.update(t.contacts)
            .where(t.contacts.c.id == first)
            .values(external_key='=HYPERLINK("http://x")')
        )
    app = world.app()
    target = world.config.export_folder / "out.csv"
    assert world.config.export_folder == world.folder / "exports"  # [tui] export_folder
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CampaignScreen(app.backend, promo))
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        assert isinstance(app.screen, FormDialog)
        await fill(pilot, "#field-name", "out")  # ".csv" is added
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("e")  # never over a file that exists
        await fill(pilot, "#field-name", "out.csv")
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, FormDialog)
        assert "exists in" in str(app.screen.query_one("#problem", Static).render())
        assert "never overwrites a file" in str(app.screen.query_one("#problem", Static).render())
    assert stat.S_IMODE(world.config.export_folder.stat().st_mode) == 0o700
    [audit] = world.store.audit.entries(target=f"campaign:{promo}")[:1]
    assert (audit.actor, audit.action, audit.detail["rows"]) == ("ana", "campaign.export", 400)
    # the file `disparo campaign results --csv` writes, cell for cell
    rows = list(csv.reader(target.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
    assert (
        run_cli(
            "--config",
            str(world.folder / "disparo.toml"),
            "campaign",
            "results",
            str(promo),
            "--csv",
            str(tmp_path / "cli.csv"),
        ).exit_code
        == 0
    )
    cli = list(
        csv.reader((tmp_path / "cli.csv").read_text("utf-8-sig").splitlines(), delimiter=";")
    )
    assert rows == cli and len(rows) == 401
    assert not target.with_name("out.csv.part").exists()
    header = rows[0]
    first = dict(zip(header, rows[1], strict=True))
    assert first["codigo"] == '\'=HYPERLINK("http://x")'  # formula-safe
    assert first["lido_em"] == "2026-11-23 09:12:00"  # in the configured zone
    assert first["urls_clicadas"] == "https://loja.example/oferta" and first["cliques"] == "2"
    cancelled = [r for r in rows[1:] if r[header.index("status")] == "cancelled"]
    assert len(cancelled) == 3
    assert {r[header.index("descadastrado_campanha")] for r in cancelled} == {"sim"}


@pytest.mark.parametrize(
    "name",
    ["../out.csv", "/tmp/out.csv", "sub/out.csv", "~/.ssh/authorized_keys", ".hidden", "a..csv"],
)
async def test_an_export_goes_only_into_the_export_folder(world: World, name: str) -> None:
    """Issue 12 (2): an operator (over SSH too) gives at most a plain name; a path, '..',
    an absolute or hidden name is refused in the dialog with the fix, and nothing is written."""
    promo = world.campaign("q25010")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CampaignScreen(app.backend, promo))
        await settle(pilot)
        await pilot.press("e")
        await settle(pilot)
        default = app.screen.query_one("#field-name", Input).value
        assert re.fullmatch(rf"campaign-{promo}-\d{{8}}-\d{{6}}\.csv", default)
        await fill(pilot, "#field-name", name)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, FormDialog)
        problem = str(app.screen.query_one("#problem", Static).render())
        assert "plain file name" in problem and "export_folder" in problem
    assert not world.config.export_folder.exists()
    with pytest.raises(ExportRefused, match="plain file name"):
        write_export(app.backend, promo, name)
    audited = world.store.audit.entries(target=f"campaign:{promo}")
    assert not [a for a in audited if a.action == "campaign.export"]


def test_an_export_never_follows_a_symbolic_link_nor_overwrites(world: World) -> None:
    promo = world.campaign("q25010")
    backend = world.app().backend
    folder = world.config.export_folder
    folder.mkdir()
    victim = world.folder / "victim.txt"
    victim.write_text("keep me")
    (folder / "link.csv").symlink_to(victim)
    with pytest.raises(ExportRefused, match="never overwrites"):
        write_export(backend, promo, "link.csv")
    assert victim.read_text() == "keep me"
    (folder / "taken.csv").write_text("mine")
    with pytest.raises(ExportRefused, match="never overwrites"):
        write_export(backend, promo, "taken.csv")
    assert (folder / "taken.csv").read_text() == "mine"
    assert sorted(p.name for p in folder.iterdir()) == ["link.csv", "taken.csv"]  # no .part
    # the folder itself replaced by a link: refused
    folder.rename(world.folder / "elsewhere")
    folder.symlink_to(world.folder / "elsewhere")
    with pytest.raises(ExportRefused, match="not a symbolic link"):
        write_export(backend, promo, "new.csv")
    target, rows = write_export(
        Backend(
            world.store,
            replace(world.config, tui=TuiSettings(world.folder / "real")),
            world.clock,
            role="operator",
            actor="ana",
        ),
        promo,
        "fine",
    )
    assert (target, rows) == (world.folder / "real" / "fine.csv", 400)
    [audit] = [
        a
        for a in world.store.audit.entries(target=f"campaign:{promo}")
        if a.action == "campaign.export"
    ]
    assert audit.detail["file"] == str(target) and audit.actor == "ana"


# -- actions ---------------------------------------------------------------------------------


async def test_pause_asks_for_confirmation_and_is_audited_with_the_actor(world: World) -> None:
    promo = world.campaign("q25010")
    app = world.app(actor="carla")
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CampaignScreen(app.backend, promo))
        await settle(pilot)
        await pilot.press("p")
        await settle(pilot)
        assert isinstance(app.screen, FormDialog)
        await pilot.press("escape")  # changed my mind
        await settle(pilot)
        assert world.store.campaigns.get(promo).status == "sending"  # type: ignore[union-attr]
        await pilot.press("p")
        await fill(pilot, "#field-reason", "cliente pediu")
        await pilot.press("enter")
        await settle(pilot)
        assert world.store.campaigns.get(promo).status == "paused"  # type: ignore[union-attr]
        assert "paused — cliente pediu" in screen_text(app)
    [entry] = [
        e for e in world.store.audit.entries(target=f"campaign:{promo}") if e.actor == "carla"
    ]
    assert entry.action == "campaign.status"
    assert dict(entry.detail) == {"from": "sending", "to": "paused", "reason": "cliente pediu"}
    with world.store.read() as c:
        command = c.execute(sa.select(t.commands).order_by(t.commands.c.id.desc())).first()
    assert command is not None
    assert (command.actor, command.role, command.action, command.status) == (
        "carla",
        "operator",
        "pause",
        "applied",
    )


async def test_a_viewer_sees_no_action_and_cannot_pause(world: World) -> None:
    promo = world.campaign("q25010")
    app = world.app("viewer")
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CampaignScreen(app.backend, promo))
        await settle(pilot)
        shown = {b.binding.action for b in app.active_bindings.values()}
        assert {"pause", "resume", "cancel_campaign", "priority", "export"}.isdisjoint(shown)
        assert "p Pause" not in screen_text(app)
        await pilot.press("p", "c", "P")
        await settle(pilot)
        assert isinstance(app.screen, CampaignScreen)  # no dialog opened
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert not [title for title in titles if "Pause" in title or "Cancel" in title]
        app.screen.action_pause()  # even when asked directly, it is refused
        app.screen.action_export()  # a viewer does not write people's data to files either
        await settle(pilot)
        assert [n.message for n in app._notifications] == [
            "the viewer role may not pause; it needs operator",
            "the viewer role may not export; it needs operator",
        ]
    assert world.store.campaigns.get(promo).status == "sending"  # type: ignore[union-attr]
    with world.store.read() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t.commands)).scalar() == 2


async def test_resume_cancel_and_priority(world: World) -> None:
    fatura, aviso = world.campaign("q50030"), world.campaign("VAREJO")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        campaigns = table(app, "#campaigns")
        campaigns.move_cursor(row=campaigns.keys.index(str(fatura)))
        await settle(pilot)
        await pilot.press("r")  # resume: no confirmation
        await settle(pilot)
        assert world.store.campaigns.get(fatura).status == "scheduled"  # type: ignore[union-attr]
        await pilot.press("P")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, FormDialog)
        await fill(pilot, "#field-priority", "x")
        await pilot.press("enter")
        await settle(pilot)
        assert app.screen is dialog  # not a number: the dialog says so and stays
        await fill(pilot, "#field-priority", "7")
        await pilot.press("enter")
        await settle(pilot)
        assert world.store.campaigns.get(fatura).priority == 7  # type: ignore[union-attr]
        campaigns.move_cursor(row=campaigns.keys.index(str(aviso)))
        await pilot.press("c")
        await settle(pilot)
        await pilot.press("enter")  # a cancel needs a reason
        await settle(pilot)
        assert isinstance(app.screen, FormDialog)
        await fill(pilot, "#field-reason", "lista errada")
        await pilot.press("enter")
        await settle(pilot)
        cancelled = world.store.campaigns.get(aviso)
        assert cancelled is not None and cancelled.status == "cancelled"
        assert cancelled.counters["cancelled"] == 120
        assert column(campaigns, "status")[campaigns.keys.index(str(aviso))] == "cancelled"
        # the keys follow what the state allows: a cancelled campaign cannot be paused
        assert app.screen.check_action("pause", ()) is None


async def test_queues_per_account_and_an_admin_override_with_a_reason(world: World) -> None:
    app = world.app("admin")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        assert isinstance(app.screen, QueuesScreen)
        accounts = table(app, "#accounts")
        assert accounts.keys == ["sms", "sms-curto", "cobranca", "email"]
        assert column(accounts, "limit")[0] == "0.1/s sandbox"
        assert column(accounts, "queued") == ["309", "124", "50", "150"]
        assert column(accounts, "current")[0] == "#1" and column(accounts, "waiting")[0] == "#2"
        guard = column(accounts, "guard")[2]
        assert guard.startswith("paused until 24/11 09:02: bounce rate 12.00 % > 5 %")
        assert column(accounts, "bounces")[2] == "12.00%/5%"
        queue = table(app, "#queue")
        assert queue.keys == ["1", "2"]
        assert column(queue, "next") == ["", "waits for #1 (D11)"]
        accounts.move_cursor(row=2)
        await settle(pilot)
        assert queue.keys == ["7"] and column(queue, "status") == ["held"]
        await pilot.press("o")
        await settle(pilot)
        await pilot.press("enter")  # the reason is required (D16)
        await settle(pilot)
        assert isinstance(app.screen, FormDialog)
        await fill(pilot, "#field-reason", "lista validada")
        await pilot.press("enter")
        await settle(pilot)
        state = world.store.accounts.states()["cobranca"]
        assert (state.override_by, state.override_reason) == ("ana", "lista validada")
        assert column(accounts, "guard")[2] == "override by ana: lista validada"
        await pilot.press("u", "enter")
        await settle(pilot)
        assert world.store.accounts.states()["cobranca"].override_by is None
        actions = [e.action for e in world.store.audit.entries(target="account:cobranca")]
        assert actions[:2] == ["account.override-cleared", "account.override"]
        # Enter on a campaign of the queue opens it
        await pilot.press("tab", "enter")
        await settle(pilot)
        assert isinstance(app.screen, CampaignScreen) and app.screen.campaign_id == 7


async def test_only_an_admin_overrides_the_guard(world: World) -> None:
    app = world.app("operator")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        shown = {b.binding.action for b in app.active_bindings.values()}
        assert "override" not in shown and "pause" in shown
        await pilot.press("o")
        await settle(pilot)
        assert isinstance(app.screen, QueuesScreen)
        assert not [c for c in app.get_system_commands(app.screen) if "Override" in c.title]


async def test_sources_their_polls_files_and_a_rejected_files_report(world: World) -> None:
    app = world.app("viewer")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await settle(pilot)
        assert isinstance(app.screen, SourcesScreen)
        sources = table(app, "#sources")
        assert sources.keys == ["drop", "parceiro"]
        assert column(sources, "where") == [
            "folder drop",
            "sftp://disparo@sftp.parceiro.com.br:22/.",
        ]
        assert column(sources, "schedule") == ["every 2 min", "cron 0 * * * *"]
        assert column(sources, "next") == ["09:36:20 (in 1m 20s)", "10:00:00 (in 25m 00s)"]
        assert column(sources, "status")[1].startswith("error: connection refused")
        files = table(app, "#files")
        statuses = dict(zip(files.keys, column(files, "status"), strict=True))
        assert statuses == {
            "mailing_231126_009_cBRAD_sms.csv": "rejected",
            "mailing_231126_010_cVAREJO_smslong.csv": "still changing",
            "mailing_241126_001_cBRAD_smslong.csv": "waiting for its day",
            "relatorio.pdf": "not a mailing",
            "mailing_231126_001_cBRAD_smslong_q25010_LE2311260950.csv": "imported",
            "mailing_231126_002_cVAREJO_smslong.csv": "imported",
            "mailing_231126_003_cBRAD_smsshort.csv": "imported",
        }
        await pilot.press("enter")  # on the sources: go to the files
        files.move_cursor(row=files.keys.index("mailing_231126_009_cBRAD_sms.csv"))
        await pilot.press("enter")
        await settle(pilot)
        report = app.screen
        assert isinstance(report, TextDialog)
        assert "the piece `_sms` is not a parameter (did you mean `_smslong`?)" in report.text
        assert "Report published as rejected/mailing_231126_009_cBRAD_sms.erro.txt" in report.text
        await pilot.press("escape")
        sources.move_cursor(row=1)
        await settle(pilot)
        assert files.keys == [] and "Files seen on parceiro" in screen_text(app)


async def test_suppressions_search_by_origin_add_and_remove_with_a_reason(world: World) -> None:
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        assert isinstance(app.screen, SuppressionsScreen)
        rows = table(app, "#suppressions")
        assert len(rows.keys) == 12
        assert "bounce 7   complaint 1   unsubscribe 2   stop 1   manual 1" in screen_text(app)
        await pilot.press("f")  # bounces only
        await settle(pilot)
        assert set(column(rows, "origin")) == {"bounce"} and len(rows.keys) == 7
        await fill(pilot, "#search", "joao")
        await pilot.press("enter")
        await settle(pilot)
        assert column(rows, "address") == ["joao.lima@example.com"]
        await fill(pilot, "#search", "")
        await pilot.press("enter", "f", "f", "f", "f", "f")
        await settle(pilot)
        assert len(rows.keys) == 12  # every origin again
        await pilot.press("a")
        await fill(pilot, "#field-address", "(11) 98888-7777")
        await fill(pilot, "#field-reason", "pediu por telefone")
        await pilot.press("enter")
        await settle(pilot)
        assert column(rows, "address")[0] == "+5511988887777"
        assert column(rows, "origin")[0] == "manual" and column(rows, "by")[0] == "ana"
        rows.move_cursor(row=0)
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("enter")  # no reason: refused by the dialog
        await settle(pilot)
        assert isinstance(app.screen, FormDialog)
        await fill(pilot, "#field-reason", "engano")
        await pilot.press("enter")
        await settle(pilot)
        assert "+5511988887777" not in column(rows, "address")
    [removed] = world.store.audit.entries(target="phone:+5511988887777")[:1]
    assert (removed.action, removed.actor, removed.detail["reason"]) == (
        "suppression.remove",
        "ana",
        "engano",
    )


async def test_the_palette_offers_what_the_role_may_do_on_this_screen(world: World) -> None:
    for role, expected in (
        ("viewer", set()),
        (
            "operator",
            {
                "Pause campaign 1",
                "Cancel campaign 1",
                "Change the priority of campaign 1",
                "Export the recipients of campaign 1",
            },
        ),
    ):
        app = world.app(role)
        async with app.run_test(size=SIZE) as pilot:
            app.push_screen(CampaignScreen(app.backend, 1))
            await settle(pilot)
            titles = {c.title for c in app.get_system_commands(app.screen)}
            assert "Go to Queues (2)" in titles
            actions = {t for t in titles if t.endswith("campaign 1")}
            assert actions == expected, role


async def test_a_failing_load_shows_what_went_wrong_and_the_screen_tries_again(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(campaigns_screen, "campaign_list", broken)
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TextDialog) and dialog.error
        assert dialog.text.startswith("RuntimeError: database is locked")
        monkeypatch.undo()
        await pilot.press("escape")  # back on the screen, it loads again at once
        await settle(pilot)
        assert len(table(app, "#campaigns").keys) == 8


# -- read models -----------------------------------------------------------------------------


def full_count(store: Store, campaign_id: int) -> dict[int, int]:
    with store.read() as c:
        return dict(
            c.execute(
                sa.select(t.deliveries.c.batch, sa.func.count())
                .where(
                    t.deliveries.c.campaign_id == campaign_id,
                    t.deliveries.c.status.in_(("pending", "claimed")),
                )
                .group_by(t.deliveries.c.batch)
            ).all()
        )


@pytest.mark.parametrize("cap", [5_000, 3, 1])
def test_batch_progress_matches_a_full_count(world: World, cap: int) -> None:
    """Seeks, capped counts and the counters give what counting every row gives, whichever
    way a batch is worked out (the cap makes the demo's batches "big")."""
    # a retry left in batch 1 and a cancel in batch 4: three batches partly done
    promo = world.campaign("q25010")
    with world.store.write() as c:
        c.execute(
            sa.update(t.deliveries)
            .where(t.deliveries.c.campaign_id == promo, t.deliveries.c.position == 7)
            .values(status="pending")
        )
        c.execute(sa.update(t.campaigns).where(t.campaigns.c.id == promo).values(sent=207))
    for row in world.store.views.campaign_rows()[0]:
        c = world.store.campaigns.get(row.id)
        assert c is not None
        opened = world.store.views.open_by_batch(c, cap=cap)
        schedule = live(c, NOW, rate=1.0, open_by_batch=opened)
        expected = full_count(world.store, c.id)
        assert {b.index: b.open for b in schedule.batches if b.open} == expected, c.name
        with world.store.read() as conn:
            excluded = conn.execute(
                sa.select(sa.func.count())
                .select_from(t.deliveries)
                .where(t.deliveries.c.campaign_id == c.id, t.deliveries.c.batch == 0)
            ).scalar()
        assert sum(b.size for b in schedule.batches) == c.audience == c.recipients - excluded


def test_recipients_are_paged_by_position_in_both_directions(world: World) -> None:
    results, promo = world.store.results, world.campaign("q25010")
    pages, after = [], None
    while page := results.page(promo, after=after, limit=64):
        pages.append(page)
        after = page[-1].position
    positions = [r.position for page in pages for r in page]
    assert positions == list(range(400)) and len(pages) == 7
    back = results.page(promo, before=128, limit=64)
    assert [r.position for r in back] == list(range(64, 128))


def test_sends_per_window_from_the_events(world: World) -> None:
    views, promo = world.store.views, world.campaign("q25010")
    with world.store.read() as c:
        times = [
            r.at
            for r in c.execute(
                sa.select(t.events.c.at).where(
                    t.events.c.campaign_id == promo, t.events.c.kind == "sent"
                )
            )
        ]
    edges = [DEMO_START + timedelta(minutes=5 * i) for i in range(8)]
    windows = list(pairwise(edges))
    expected = [sum(lo <= at < hi for at in times) for lo, hi in windows]
    assert views.sends_in(windows, campaign_id=promo) == expected
    assert sum(expected) == 208
    assert views.sends_in(windows, account="sms") == expected  # the account sent only these
    with pytest.raises(ValueError, match="campaign_id or an account"):
        views.sends_in(windows)


def test_sends_per_minute_counts_old_minutes_once(world: World) -> None:
    backend = Backend(world.store, world.config, world.clock, role="viewer", actor="t")
    cache = campaign_screen.DetailCache()
    promo = world.campaign("q25010")
    asked: list[int] = []
    original = world.store.views.sends_in

    def spy(windows: Any, **kw: Any) -> list[int]:
        asked.append(len(windows))
        return original(windows, **kw)

    world.store.views.sends_in = spy  # type: ignore[method-assign]
    first, last_minute = campaign_screen.sends_per_minute(backend, promo, NOW, cache)
    again, _ = campaign_screen.sends_per_minute(backend, promo, NOW + timedelta(seconds=1), cache)
    assert first == again and sum(first) == 208 and last_minute == 5
    # all 60 minutes and the rate window, then only the last three minutes and the rate window
    assert asked == [61, 4]


@pytest.mark.postgres
def test_the_views_on_postgresql(pg_url: str, clock: TestClock) -> None:
    store = Store.open(pg_url, clock=clock)
    try:
        now = clock.now()
        with store.write() as c:
            cid = c.execute(
                sa.insert(t.campaigns).values(
                    name="pg",
                    channel="sms-long",
                    account="sms",
                    status="sending",
                    start_at=now,
                    created_at=now,
                    updated_at=now,
                    settings={},
                    recipients=6,
                    batches=3,
                    sent=3,
                )
            ).inserted_primary_key[0]
            c.execute(
                sa.insert(t.deliveries),
                [
                    {
                        "campaign_id": cid,
                        "position": i,
                        "batch": i // 2 + 1,
                        "address": f"+55119{i:08d}",
                        "status": "sent" if i < 3 else "pending",
                        "attempts": 0,
                    }
                    for i in range(6)
                ],
            )
            c.execute(
                sa.insert(t.events),
                [
                    {
                        "at": now - timedelta(seconds=s),
                        "kind": "sent",
                        "campaign_id": cid,
                        "account": "sms",
                        "origin": "engine",
                        "detail": {},
                    }
                    for s in (5, 50, 500)
                ],
            )
        flags = store.views.batch_flags(cid, 3)
        assert [(f.has_open, f.has_settled) for f in flags] == [
            (False, True),
            (True, True),
            (True, False),
        ]
        assert store.views.count_in_batch(cid, 2, open_=True) == 1
        windows = [(now - timedelta(seconds=60), now), (now - timedelta(hours=1), now)]
        assert store.views.sends_in(windows, campaign_id=cid) == [2, 3]
        assert [r.position for r in store.results.page(cid, after=2, limit=2)] == [3, 4]
        rows, total = store.views.campaign_rows(text="pg sms", sort="sent")
        assert [r.id for r in rows] == [cid] and total == 1
        assert store.views.queues(now - timedelta(minutes=1)).sent_recently == {"sms": 2}
    finally:
        store.close()


# -- the command -----------------------------------------------------------------------------


def test_tui_command_defaults_the_role_from_the_config(
    run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Backend] = []
    monkeypatch.setattr(DisparoApp, "run", lambda self, *a, **k: started.append(self.backend))
    monkeypatch.setenv("DISPARO_ACTOR", "ssh:maria")
    config = write_config(tmp_path, engine={"role": "viewer"})
    nothing = run_cli("tui", "--config", str(config))  # the UI alone never makes a store
    assert nothing.exit_code == 2 and "no database yet" in nothing.output
    assert not (tmp_path / "disparo.db").exists()
    assert run_cli("--config", str(config), "db", "upgrade").exit_code == 0
    assert run_cli("tui", "--config", str(config)).exit_code == 0
    assert run_cli("--config", str(config), "tui", "--role", "admin").exit_code == 0
    assert [(b.role, b.actor, b.engine) for b in started] == [
        ("viewer", "ssh:maria", False),
        ("admin", "ssh:maria", False),
    ]
    help_text = run_cli("tui", "--help").output
    assert "--engine" in help_text and "viewer|operator|admin" in help_text


def test_tui_command_with_the_engine_logs_into_the_ui(
    run_cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[DisparoApp] = []
    monkeypatch.setattr(DisparoApp, "run", lambda self, *a, **k: started.append(self))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # restored afterwards
    monkeypatch.setattr(root, "level", root.level)
    config = write_config(tmp_path, engine={"log_level": "warning"})
    assert run_cli("--config", str(config), "tui", "--engine").exit_code == 0
    [app] = started
    assert app.engine is not None and app.backend.engine and app.backend.role == "operator"
    assert app.log_buffer is not None and root.handlers == [app.log_buffer]
    logging.getLogger("engine.sending.dispatcher").warning("account %s: %s", "sms", "429")
    [line] = app.log_buffer.lines
    assert line.endswith("WARNING engine.sending.dispatcher: account sms: 429")
    missing = run_cli("tui", "--engine", "--config", str(tmp_path / "none.toml"))
    assert missing.exit_code == 2 and "none.toml: file not found" in missing.output


@dataclass
class ManualTimer:
    """Stands in for the timer a screen arms for its next load: the test fires it."""

    delay: float
    callback: Callable[[], object]
    stopped: bool = False
    fired: bool = False

    @property
    def active(self) -> bool:
        return not (self.stopped or self.fired)

    def stop(self) -> None:
        self.stopped = True

    def fire(self) -> None:
        assert self.active, self
        self.fired = True
        self.callback()


async def test_screens_reload_once_a_second_at_most_one_load_at_a_time(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A screen arms its next load a second (``every``) after the last one is shown, never
    while one runs, so two loads never overlap; a dialog on top stops the loading, and closing
    it loads again at once. The loads are held and the timer fired by hand: no wall clock."""
    armed: list[ManualTimer] = []
    real_set_timer = LiveScreen.set_timer

    def set_timer(self: LiveScreen, delay: float, callback: Any = None, **kwargs: Any) -> Any:
        if callback != self.reload:  # Textual's own timers run as usual
            return real_set_timer(self, delay, callback, **kwargs)
        armed.append(ManualTimer(delay, callback))
        return armed[-1]

    lock = threading.Lock()
    started, running, overlaps = [0], [0], [0]
    permits = threading.Semaphore(0)  # one a load: the test lets each load finish
    original = campaigns_screen.campaign_list

    def held(*args: Any, **kwargs: Any) -> Any:
        with lock:
            started[0] += 1
            running[0] += 1
            overlaps[0] = max(overlaps[0], running[0])
        try:
            assert permits.acquire(timeout=TIMEOUT), "the test never let this load finish"
            return original(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(LiveScreen, "set_timer", set_timer)
    monkeypatch.setattr(campaigns_screen, "campaign_list", held)
    backend = Backend(world.store, world.config, world.clock, role="viewer", actor="t")
    app = DisparoApp(backend)  # screens reload once a second by default
    try:
        async with app.run_test(size=SIZE) as pilot:
            await eventually(lambda: started[0] == 1, what="the first load to start")
            screen = app.screen
            assert isinstance(screen, LiveScreen)
            for n in range(1, 4):
                await eventually(lambda n=n: started[0] == n, what=f"load {n} to start")
                assert screen.loads == n - 1
                # while a load runs, nothing is armed that could start another one
                assert running[0] == 1 and not [t for t in armed if t.active]
                permits.release()
                await eventually(
                    lambda n=n: screen.loads == n and [t for t in armed if t.active],
                    what=f"load {n} shown and the next one armed",
                )
                [timer] = [t for t in armed if t.active]
                assert timer.delay == app.every == 1.0
                assert started[0] == n  # nothing loads before the timer goes off
                timer.fire()
            await eventually(lambda: started[0] == 4, what="load 4 to start")
            permits.release()
            await settle(pilot)
            assert screen.loads == 4
            app.push_screen(TextDialog("x", "y"))  # a dialog on top: the screen stops loading
            await settle(pilot)
            assert not [t for t in armed if t.active]  # its next load was called off
            assert (started[0], screen.loads) == (4, 4)
            await pilot.press("escape")  # and loads again at once when shown again
            await eventually(lambda: started[0] == 5, what="a load when the dialog closed")
            permits.release()
            await eventually(lambda: screen.loads == 5, what="that load shown")
            assert overlaps[0] == 1
    finally:
        permits.release(100)  # a failed test must not leave a load waiting in its thread


# -- a running engine ------------------------------------------------------------------------


async def test_a_pause_in_the_ui_stops_a_running_engine(run_cli: Any, tmp_path: Path) -> None:
    """`disparo tui --engine`: the engine runs in the app's event loop, sending to the sandbox
    outbox at 10/s; a pause from the campaign screen is applied by the engine at its next tick
    and, that tick over, nothing more is sent. (How soon it is applied, and what was still
    sent meanwhile, is a figure of `make bench`: bench_tui.py.)"""
    config_path = write_config(
        tmp_path,
        accounts={"sms": {"channel": "sms-long", "sandbox": True, "rate": 10}},
        wallets={"BRAD": {"sms_template": "Olá {{ nome }}"}},
        engine={"log_level": "warning"},
    )
    plugins = load_plugins()
    config = load_config(config_path, plugins=plugins)
    today = datetime.now(UTC).astimezone(config.tz).strftime("%d%m%y")
    contacts = tmp_path / f"mailing_{today}_001_cBRAD_smslong.csv"
    contacts.write_text("nome;telefone\n" + "".join(f"P{i};119{i:08d}\n" for i in range(400)))
    assert run_cli("--config", str(config_path), "import", str(contacts)).exit_code == 0
    from engine.service import Engine

    clock = RealClock()
    store = Store.open(config.engine.database_url, clock=clock)
    outbox = tmp_path / "outbox" / "sms.jsonl"

    def sends() -> int:
        if not outbox.exists():
            return 0
        return outbox.read_text(encoding="utf-8").count("\n")  # whole lines only

    engine = Engine(store, plugins, config, clock)
    dispatcher = engine.dispatcher
    backend = Backend(  # the UI waits for the engine to apply the pause (and never does it)
        store, config, clock, role="operator", actor="ana", plugins=plugins, apply_after=TIMEOUT
    )
    app = DisparoApp(backend, engine=engine, every=0.5)

    def done_with_the_pause() -> bool:
        """The engine's view of the campaign says paused (no send starts any more) and its
        sender finished what it had started, outcomes stored."""
        campaign = dispatcher.campaigns.get(1)
        sender = dispatcher.senders.get("sms")
        return (
            campaign is not None
            and campaign.status == "paused"
            and sender is not None
            and sender.idle.is_set()
            and (sender._confirming is None or sender._confirming.done())
        )

    try:
        async with app.run_test(size=SIZE) as pilot:
            await eventually(lambda: sends() >= 10, what="the engine sending", detail=sends)
            await pilot.press("enter")
            await settle(pilot)
            assert isinstance(app.screen, CampaignScreen)
            await pilot.press("p")
            await pilot.pause()
            await pilot.press("enter")
            command = await eventually(
                lambda: (found := store.commands.get(1)) and found.status != "pending" and found,
                what="the engine to take the pause command",
            )
            assert command.status == "applied", command
            assert command.applied_at is not None
            await eventually(done_with_the_pause, what="the engine done with the pause")
            sent = sends()
            ticks = dispatcher._ticks
            # two more ticks: each one looks at the campaigns again and wakes the sender
            await eventually(lambda: dispatcher._ticks >= ticks + 2, what="two more ticks")
            await eventually(done_with_the_pause, what="the engine still done with it")
            assert sends() == sent, f"{sends() - sent} sent after the pause was applied"
            campaign = store.campaigns.get(1)
            assert campaign is not None and campaign.status == "paused"
            assert campaign.counters["sent"] == sent  # every send in the outbox is counted
            await settle(pilot)  # the UI waited for the engine to apply it, and says so
            done = [n.message for n in app._notifications if n.title == "Done"]
            assert done == ["campaign 1: sending -> paused (applied by the engine)"]
            assert 10 <= campaign.counters["sent"] < 400
            await pilot.press("q")  # stops the engine cleanly, then leaves
            await pilot.pause()
        assert app.engine_worker is not None and app.engine_worker.is_finished
        with store.read() as c:
            claimed = c.execute(
                sa.select(sa.func.count())
                .select_from(t.deliveries)
                .where(t.deliveries.c.status == "claimed")
            ).scalar()
        assert claimed == 0
    finally:
        engine.stop.set()
        store.close()


# -- snapshots -------------------------------------------------------------------------------


def test_snapshot_campaigns(world: World, snap_compare: Any) -> None:
    assert snap_compare(world.app("admin"), terminal_size=SIZE, run_before=settle)


def test_snapshot_campaign(world: World, snap_compare: Any) -> None:
    async def open_promo(pilot: Pilot[Any]) -> None:
        await settle(pilot)
        await fill(pilot, "#filter", "q25010")
        await pilot.press("enter", "enter")
        await settle(pilot)

    assert snap_compare(world.app("admin"), terminal_size=SIZE, run_before=open_promo)


@pytest.mark.parametrize("key", ["2", "3", "4"], ids=["queues", "sources", "suppressions"])
def test_snapshot_screens(world: World, snap_compare: Any, key: str) -> None:
    async def go(pilot: Pilot[Any]) -> None:
        await pilot.press(key)
        await settle(pilot)

    assert snap_compare(world.app("admin"), terminal_size=SIZE, run_before=go)

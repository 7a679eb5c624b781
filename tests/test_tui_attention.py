"""The terminal UI tells the operator what needs attention (issue 11, point 9): the engines
running on every screen (and nothing shown as live without one), columns that fit 80, 120
and 200 columns with long names, the "needs attention" filter (held, failing, will expire),
the pacing table scrolled to the expiring batch, the errors by reason of a campaign."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from textual.drivers.headless_driver import HeadlessDriver

from engine.store import schema as t
from engine.store.delivery_errors import Counted
from engine.testing.eventually import eventually
from tests.test_tui import NOW, World, column, demo_folder, screen_text, settle, table, world
from tui.app import DisparoApp
from tui.backend import Backend
from tui.screens import CampaignScreen, EngineLogScreen, LiveScreen
from tui.screens.campaigns import campaign_list
from tui.screenshots import SIZE
from tui.widgets import LiveTable

__all__ = ["demo_folder", "world"]  # the fixtures, shared with test_tui

LONG = "mailing_" + "231126_001_cBRAD_" + "campanha_de_natal_com_um_nome_muito_longo_" * 4


def register_engine(world: World, node: str = "node-a", accounts: tuple[str, ...] = ()) -> None:
    world.store.engines.register(
        node, host="host-a", pid=1, version="1", mode="run", lease=timedelta(seconds=30)
    )
    if accounts:
        with world.store.write() as c:
            c.execute(
                sa.update(t.accounts)
                .where(t.accounts.c.name.in_(accounts))
                .values(lease_owner=node, lease_until=world.clock.now() + timedelta(seconds=30))
            )


# -- engines ---------------------------------------------------------------------------------


async def test_every_screen_says_plainly_when_no_engine_runs(world: World) -> None:
    world.store.engines.unregister("demo")
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        for key in ("1", "2", "3", "4"):
            await pilot.press(key)
            await settle(pilot)
            assert "no engine running: nothing is being sent" in screen_text(app), key
        await pilot.press("1")
        await settle(pilot)
        promo = world.campaign("q25010")  # sending, with a deadline
        app.push_screen(CampaignScreen(app.backend, promo))
        await settle(pilot)
        text = screen_text(app)
        assert "no engine running" in text
        # nothing the dispatcher would be doing is shown as live
        assert "Projected finish not sending: no engine" in text
        assert "09:5" not in text.split("Projected finish", 1)[1].splitlines()[0]
        assert "not sending: no engine running" in column(table(app, "#timeline"), "state")
        await pilot.press("escape", "2")
        await settle(pilot)
        accounts = table(app, "#accounts")
        assert set(column(accounts, "in_flight")) == {"no engine"}


async def test_the_header_lists_running_engines_with_accounts_and_heartbeat_age(
    world: World,
) -> None:
    world.store.engines.unregister("demo")
    register_engine(world, "node-a", ("sms",))
    await world.clock.advance(timedelta(seconds=7))
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        text = screen_text(app)
        assert "▶ 1 engine: node-a [sms] ♥ 5s ago" in text, text.splitlines()[1]  # to 5 s
        assert "no engine running" not in text
        promo = world.campaign("q25010")
        app.push_screen(CampaignScreen(app.backend, promo))
        await settle(pilot)
        text = screen_text(app)
        assert "node-a [sms]" in text and "not sending" not in text
        assert "Projected finish" in text


# -- columns ---------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [80, 120, 200])
async def test_columns_fit_the_width_and_status_always_shows(world: World, width: int) -> None:
    with world.store.write() as c:
        c.execute(sa.update(t.campaigns).where(t.campaigns.c.id == 1).values(name=LONG))
    app = world.app()
    async with app.run_test(size=(width, 30)) as pilot:
        await settle(pilot)
        campaigns = table(app, "#campaigns")
        keys = [str(col.key.value) for col in campaigns.columns.values()]
        assert keys[-1] == "status" and "name" in keys
        # the table is never wider than the screen: Status is never pushed off
        assert campaigns.virtual_size.width <= width
        lines = screen_text(app).splitlines()
        row = next(line for line in lines if line.lstrip("│ ").startswith("1 "))
        assert "sending 52%" in row
        name = campaigns.get_cell("1", "name")
        assert str(name).startswith("231126_001_cBRAD_campanha") and str(name).endswith("…")
        if width == 80:
            assert keys == ["id", "name", "recipients", "status"]
        if width == 200:
            assert "wallet" in keys and "created" in keys
            # room for the parameters: channel, pacing, deadline
            other = column(campaigns, "name")[keys and 1]
            assert "sms-long · one batch · no deadline" in other or "⚠" in other
            assert "· email · one batch · no deadline" in str(campaigns.get_cell("6", "name"))


# -- needs attention -------------------------------------------------------------------------


async def test_needs_attention_lists_held_failing_and_expiring(world: World) -> None:
    promo = world.campaign("q25010")  # its deadline comes before its last batch
    held = world.campaign("q50005")  # held: its account is paused by the guard
    aviso = world.campaign("cVAREJO")  # sending on time
    listed = campaign_list(world.app().backend, attention=True)
    assert set(listed.campaigns) == {promo, held}
    assert "will expire at the deadline" in listed.attention[promo]
    assert listed.attention[held].startswith("held: account cobranca is paused by the guard")
    # failing: errors counted for it ...
    world.store.errors.add(aviso, "sms", [Counted("retry", "relay refused", "account")])
    assert "1 errors" in campaign_list(world.app().backend, attention=True).attention[aviso]
    # ... or its account's breaker open
    lembrete = world.campaign("smsshort_q50030")
    with world.store.write() as c:
        c.execute(
            sa.update(t.accounts)
            .where(t.accounts.c.name == "sms-curto")
            .values(breaker_state="open", breaker_reason="channel failing: 401 Unauthorized")
        )
    reasons = campaign_list(world.app().backend, attention=True).attention
    assert "account sms-curto failing: channel failing: 401" in reasons[lembrete]

    app = world.app()
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        campaigns = table(app, "#campaigns")
        everything = list(campaigns.keys)
        assert "Needs attention" in screen_text(app)  # in the footer
        await pilot.press("a")
        await settle(pilot)
        assert set(campaigns.keys) == {str(promo), str(held), str(aviso), str(lembrete)}
        assert "4 need attention (a: show all)" in screen_text(app)
        assert "⚠" in str(campaigns.get_cell(str(held), "name"))
        await pilot.press("a")
        await settle(pilot)
        assert campaigns.keys == everything


# -- the campaign screen ---------------------------------------------------------------------


async def test_the_pacing_table_scrolls_to_the_expiring_batch(world: World) -> None:
    promo = world.campaign("q25010")
    with world.store.write() as c:  # many batches: 5 % every 10 min, the last ones too late
        c.execute(
            sa.update(t.campaigns)
            .where(t.campaigns.c.id == promo)
            .values(pacing_value=5, batches=20, deadline=NOW + timedelta(minutes=85))
        )
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CampaignScreen(app.backend, promo))
        await settle(pilot)
        timeline = table(app, "#timeline")
        states = column(timeline, "state")
        first_late = states.index("released after the deadline: expires")
        assert first_late == 12  # released at 11:00, the deadline
        assert timeline.cursor_row == first_late
        assert timeline.scroll_y > 0  # it was below the table's fold
        assert timeline.scroll_y <= first_late < timeline.scroll_y + timeline.size.height


async def test_a_held_campaign_says_why_and_its_errors_by_reason(world: World) -> None:
    held = world.campaign("q50005")
    world.store.errors.add(
        held,
        "cobranca",
        [Counted("failed", "21211 invalid 'To' number", "recipient")] * 3
        + [Counted("retry", "relay refused", "account")],
    )
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(CampaignScreen(app.backend, held))
        await settle(pilot)
        text = screen_text(app)
        assert "HELD: account cobranca is paused by the guard" in text
        assert isinstance(app.screen, CampaignScreen) and app.screen.detail is not None
        trouble = app.screen.detail.trouble
        assert "Errors 4: 21211 invalid 'To' number ×3, relay refused ×1" in trouble
        assert "Errors 4: 21211" in text  # on screen, under the title


# -- the audit log and the engine log --------------------------------------------------------


async def test_the_audit_screen_pages_newest_first_in_the_local_zone(world: World) -> None:
    for i in range(130):
        world.store.audit.record("ana", "campaign.pause", f"campaign:{i}", {"reason": f"r{i}"})
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await settle(pilot)
        audit = table(app, "#audit")
        assert "Audit" in app.screen.sub_title or "Audit" in screen_text(app)
        ids = [int(k) for k in audit.keys]
        assert len(ids) == 100 and ids == sorted(ids, reverse=True)  # newest first
        assert column(audit, "target")[0] == "campaign:129"
        assert column(audit, "actor")[0] == "ana"
        # 12:00 UTC on the test clock is 09:00 in São Paulo, with its offset
        assert column(audit, "at")[0] == world.clock.now().astimezone(world.config.tz).strftime(
            "%d/%m %H:%M:%S %z"
        )
        assert column(audit, "at")[0].endswith("-0300")
        assert '"reason": "r129"' in column(audit, "detail")[0]
        await pilot.press("n")  # older
        await settle(pilot)
        older = [int(k) for k in audit.keys]
        assert older and max(older) < min(ids)
        await pilot.press("b")  # back to the newest
        await settle(pilot)
        assert [int(k) for k in audit.keys] == ids


def test_the_log_kept_in_the_store_masks_secrets_and_is_bounded(world: World) -> None:
    from engine.service import StoreLogHandler, mask

    handler = StoreLogHandler(world.store, "node-a", secrets=["s3cr3t-value"])
    logger = logging.getLogger("engine.test.storelog")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("not kept: below INFO")
        logger.warning("relay said s3cr3t-value is wrong; password=hunter2 smtp://u:pw@host")
        logger.info("click at https://t.example/c/%s", "A" * 40)
        assert handler.write() == 2
        for i in range(1100):
            logger.info("line %d", i)
        handler.write()
    finally:
        logger.removeHandler(handler)
    assert world.store.engine_log.count() == 1000  # the newest only
    newest = world.store.engine_log.recent(1)[0]
    assert (newest.message, newest.node, newest.level) == ("line 1099", "node-a", "INFO")
    assert mask("x s3cr3t-value y", ["s3cr3t-value"]) == "x *** y"
    assert mask("password=hunter2 smtp://u:pw@host") == "password=*** smtp://u:***@host"
    assert mask("/c/" + "A" * 40) == "/c/***"


async def test_the_engine_log_shows_a_running_engines_records_from_the_store(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real engine (``Engine.run``, in this process but not the UI's) writes its records to
    the store; the UI, attached to the store only, shows them live with secrets masked."""
    from engine.clock import RealClock
    from engine.config import load_config
    from engine.plugins import load_plugins
    from engine.service import Engine
    from engine.store import Store
    from engine.testing import write_config, write_secret

    write_secret(tmp_path / "smtp.key", "pa55-w0rd-in-a-file")
    config_path = write_config(
        tmp_path,
        accounts={
            "mail": {
                "channel": "email",
                "from_address": "news@example.com",
                "host": "smtp.example.com",
                "user": "news",
                "password_file": "smtp.key",
            }
        },
        engine={"log_level": "info"},
    )
    caplog.set_level(logging.INFO)  # as `disparo run` sets it from log_level
    plugins = load_plugins()
    config = load_config(config_path, plugins=plugins)
    store = Store.open(config.engine.database_url, clock=RealClock())
    engine = Engine(store, plugins, config, RealClock())
    running = asyncio.create_task(engine.run())
    try:
        await eventually(lambda: store.engines.running(), what="the engine registered in the store")
        logging.getLogger("engine.sending.dispatcher").warning(
            "account mail: 535 authentication failed for password pa55-w0rd-in-a-file"
        )
        backend = Backend(store, config, RealClock(), role="viewer", actor="t")
        app = DisparoApp(backend, every=0.2)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("l")

            def shown() -> list[str]:
                screen = app.screen
                if not isinstance(screen, EngineLogScreen):
                    return []
                return column(screen.query_one("#log", LiveTable), "message")

            messages = await eventually(
                lambda: [m for m in shown() if "535" in m], what="the engine's record on screen"
            )
            assert messages == ["account mail: 535 authentication failed for password ***"]
            assert any(m.startswith("engine ") and "started" in m for m in shown())
    finally:
        engine.stop.set()
        await running
        store.close()
    again = Store.open(config.engine.database_url, clock=RealClock())
    stored = " ".join(line.message for line in again.engine_log.recent(1000))
    again.close()
    assert "pa55-w0rd-in-a-file" not in stored


# -- redraw only what changed ----------------------------------------------------------------


class CountingDriver(HeadlessDriver):
    """The headless driver, but Textual renders to it as to a terminal: it counts the bytes
    a terminal (the SSH channel of ``disparo ssh-serve``) would receive."""

    written = 0

    @property
    def is_headless(self) -> bool:
        return False

    def write(self, data: str) -> None:
        CountingDriver.written += len(data.encode("utf-8"))


@pytest.mark.parametrize("key", ["1", "2", "3", "4", "5", "campaign"])
async def test_idle_screens_send_almost_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, key: str
) -> None:
    """Nothing changes in the store: each refresh (once a second by default) sends at most a
    few hundred bytes (issue 11: under 2 KB/s over SSH). Counted over refresh ticks, not time."""
    import textual.drivers.headless_driver as headless

    monkeypatch.setattr(headless, "HeadlessDriver", CountingDriver)
    backend = world.app().backend
    app = DisparoApp(backend, every=0.05)  # ticks come fast; the count is per tick
    async with app.run_test(size=SIZE) as pilot:
        if key == "campaign":
            app.push_screen(CampaignScreen(backend, world.campaign("q25010"), every=0.05))
        else:
            await pilot.press(key)
        screen = app.screen
        assert isinstance(screen, LiveScreen)
        await eventually(lambda: screen.loads >= 3, what="the screen loaded and drawn")
        await pilot.pause()
        assert CountingDriver.written > 1000  # the first frames were counted
        before, loads = CountingDriver.written, screen.loads
        await eventually(lambda: screen.loads >= loads + 20, what="20 more refreshes")
        await pilot.pause()
        per_tick = (CountingDriver.written - before) / (screen.loads - loads)
    print(f"{key}: {per_tick:.0f} bytes a refresh")
    assert per_tick < 2000 / 4, f"{per_tick:.0f} bytes a refresh with nothing changing"

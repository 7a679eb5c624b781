"""The TUI's New campaign form (from Campaigns, ``n``) and the account detail screen: the
groups with their counts, a sandboxed preview of the first recipient's message, the campaign
written as `campaign new` writes it (audited), operator role or higher."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, Select, SelectionList, Static

from engine.clock import RealClock
from engine.config import load_config
from engine.plugins import builtin_plugins
from engine.store import Store
from engine.testing import eventually, write_config
from tui.app import DisparoApp
from tui.backend import Backend
from tui.screens.account import AccountScreen
from tui.screens.new_campaign import NewCampaignScreen


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Store, Any, Any]]:
    cfg = write_config(
        tmp_path,
        engine={"database_url": f"sqlite:///{tmp_path}/d.db"},
        accounts={
            "avisos": {
                "channel": "email",
                "from_address": "avisos@empresa.com.br",
                "sandbox": True,
                "sink": "127.0.0.1:9",
            }
        },
    )
    (tmp_path / "corpo.html").write_text("<p>Olá {{ nome }}, de {{ cidade }}!</p>")
    plugins = builtin_plugins()
    config = load_config(cfg, plugins=plugins)
    store = Store.open(config.engine.database_url)
    store.groups.create("parceiros", actor="test")
    with store.groups.session() as s:
        s.stage(
            [
                (
                    1,
                    "email:ana@example.com",
                    None,
                    "Ana",
                    "ana@example.com",
                    None,
                    '{"cidade": "Recife"}',
                    None,
                    None,
                ),
                (
                    2,
                    "email:bia@example.com",
                    None,
                    "Bia",
                    "bia@example.com",
                    None,
                    "{}",
                    None,
                    None,
                ),
            ]
        )
        s.write_members("parceiros", replace=False, source="manual", actor="test")
    yield store, config, plugins
    store.close()


def app_for(setup: tuple[Store, Any, Any], role: str) -> DisparoApp:
    store, config, plugins = setup
    backend = Backend(
        store, config, RealClock(), role=role, actor="ana", plugins=plugins, apply_after=0
    )
    return DisparoApp(backend, every=3600)


def text_of(app: DisparoApp, selector: str) -> str:
    return str(app.screen.query_one(selector, Static).render())


async def test_an_operator_composes_and_starts_a_campaign(
    setup: tuple[Store, Any, Any],
) -> None:
    store = setup[0]
    app = app_for(setup, "operator")
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("n")
        await eventually(lambda: isinstance(app.screen, NewCampaignScreen), what="the form")
        screen = app.screen
        screen.query_one("#account", Select).value = "avisos"
        listing = screen.query_one("#groups", SelectionList)
        await eventually(lambda: listing.option_count == 1, what="the groups with counts")
        assert "parceiros  (2, 0 suppressed)" in str(listing.get_option_at_index(0).prompt)
        listing.select("parceiros")
        screen.query_one("#subject", Input).value = "Novidades, {{ nome }}"
        screen.query_one("#template", Input).value = "corpo.html"
        await eventually(
            lambda: "Olá Ana, de Recife!" in text_of(app, "#preview"),
            what="the preview of the first member's message",
            detail=lambda: text_of(app, "#preview"),
        )
        assert "Subject: Novidades, Ana" in text_of(app, "#preview")
        assert "about 2 recipient(s)" in text_of(app, "#audience")
        await pilot.press("ctrl+s")
        await eventually(lambda: store.campaigns.recent() != [], what="the campaign")
    [c] = store.campaigns.recent()
    assert (c.origin, c.status, c.recipients, c.account) == ("operator", "scheduled", 2, "avisos")
    [entry] = [e for e in store.audit.entries(target=f"campaign:{c.id}")]
    assert entry.actor == "ana" and entry.action == "campaign.created"


async def test_a_template_that_does_not_render_is_shown_and_nothing_is_created(
    setup: tuple[Store, Any, Any],
) -> None:
    app = app_for(setup, "admin")
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("n")
        await eventually(lambda: isinstance(app.screen, NewCampaignScreen), what="the form")
        screen = app.screen
        screen.query_one("#account", Select).value = "avisos"
        listing = screen.query_one("#groups", SelectionList)
        await eventually(lambda: listing.option_count == 1, what="the groups")
        listing.select("parceiros")
        screen.query_one("#subject", Input).value = "Olá {{ nome "
        await pilot.press("ctrl+d")
        await eventually(
            lambda: "subject:" in text_of(app, "#problems") and "N28" in text_of(app, "#problems"),
            what="the problems",
            detail=lambda: text_of(app, "#problems"),
        )
    assert setup[0].campaigns.recent() == []


async def test_a_viewer_may_not_compose(setup: tuple[Store, Any, Any]) -> None:
    app = app_for(setup, "viewer")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("n")
        await eventually(lambda: app._notifications, what="the refusal")
        assert not isinstance(app.screen, NewCampaignScreen)
        assert "needs operator" in str(list(app._notifications)[-1].message)


async def test_the_account_screen_shows_its_usage(setup: tuple[Store, Any, Any]) -> None:
    app = app_for(setup, "viewer")
    async with app.run_test(size=(120, 60)):
        await app.push_screen(AccountScreen(app.backend, "avisos", 3600))
        await eventually(lambda: "0 sent" in text_of(app, "#rates"), what="the account's usage")
        assert "of 5 %" in text_of(app, "#rates")


async def test_the_queues_screen_opens_an_accounts_usage(setup: tuple[Store, Any, Any]) -> None:
    app = app_for(setup, "viewer")
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("2")  # Queues: the accounts are listed, the first selected
        await eventually(
            lambda: getattr(app.screen, "account", None) == "avisos", what="the account listed"
        )
        await pilot.press("d")
        await eventually(
            lambda: isinstance(app.screen, AccountScreen), what="the account's usage screen"
        )
        await eventually(lambda: "0 sent" in text_of(app, "#rates"), what="the account's usage")

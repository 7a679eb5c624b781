"""The Campaigns screen: every campaign, newest first, filtered as you type and sorted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static

from tui.backend import Backend
from tui.format import Row, Styled, status_cell, when
from tui.screens.actions import CAMPAIGN_BINDINGS, CampaignActions
from tui.screens.campaign import CampaignScreen
from tui.widgets import LiveTable

# -- the view model --------------------------------------------------------------------------

CAMPAIGN_COLUMNS = (
    ("Id", "id"),
    ("Created", "created"),
    ("Name", "name"),
    ("Origin", "origin"),
    ("Wallet", "wallet"),
    ("Channel", "channel"),
    ("Sender", "sender"),
    ("Recipients", "recipients"),
    ("Start", "start"),
    ("End", "end"),
    ("Status", "status"),
)


@dataclass(frozen=True)
class CampaignList:
    rows: list[Row]
    #: campaign id -> (status, priority): what the actions allow and start from
    campaigns: dict[int, tuple[str, int]]
    total: int


def campaign_list(
    backend: Backend,
    text: str = "",
    sort: str = "id",
    descending: bool = True,
    name_width: int = 60,
) -> CampaignList:
    """The Campaigns screen: one query on the campaigns table (their counters included).
    Names lose their ``mailing_`` prefix and are cut to ``name_width`` (the detail shows
    them whole); a campaign with work left shows how much of it is done."""
    found, total = backend.store.views.campaign_rows(text=text, sort=sort, descending=descending)
    rows: list[Row] = []
    for c in found:
        name = c.name.removeprefix("mailing_")
        if len(name) > name_width:
            name = name[: name_width - 1] + "…"
        status = status_cell(c.status)
        if c.status in ("sending", "paused", "held") and c.recipients:
            done = c.recipients - c.remaining
            status = Styled(f"{c.status} {100 * done // c.recipients}%", status.style)
        rows.append(
            (
                str(c.id),
                (
                    str(c.id),
                    when(backend, c.created_at),
                    name,
                    c.origin,
                    c.wallet or "-",
                    c.channel,
                    c.account or "-",
                    f"{c.recipients:,}",
                    when(backend, c.started_at or c.start_at),
                    when(backend, c.finished_at or c.deadline),
                    status,
                ),
            )
        )
    return CampaignList(rows, {c.id: (c.status, c.priority) for c in found}, total)


# -- the screen ------------------------------------------------------------------------------


SORT_KEYS = [key for _, key in CAMPAIGN_COLUMNS]
#: what the Campaigns table's columns but the name take: their widths, padding, scrollbar
NAME_ROOM = 114


class CampaignsScreen(CampaignActions):
    """Every campaign, newest first: filter as you type, sort by any column."""

    LABEL = "Campaigns"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("enter", "open", "Open"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse"),
        Binding("n", "new_campaign", "New campaign"),
        *CAMPAIGN_BINDINGS,
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.sort = "id"
        self.descending = True
        self.campaigns: dict[int, tuple[str, int]] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Input(
            placeholder="Filter: name, wallet, channel, sender, status or id   ( / )",
            id="filter",
        )
        yield Static("", id="summary", classes="caption")
        yield LiveTable(CAMPAIGN_COLUMNS, id="campaigns")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#campaigns", LiveTable).focus()

    def params(self) -> Any:
        # the name column takes what the other columns leave of the screen's width
        width = max(24, self.size.width - NAME_ROOM)
        return (self.query_one("#filter", Input).value, self.sort, self.descending, width)

    def fetch(self, params: Any) -> CampaignList:
        text, sort, descending, width = params
        return campaign_list(self.backend, text, sort, descending, width)

    def show(self, data: CampaignList) -> None:
        self.campaigns = data.campaigns
        self.query_one("#campaigns", LiveTable).show(data.rows)
        arrow = "↓" if self.descending else "↑"
        shown = len(data.rows)
        scope = f"{shown:,} campaigns" if shown == data.total else f"{shown:,} of {data.total:,}"
        self.query_one("#summary", Static).update(Text(f"{scope} · sorted by {self.sort} {arrow}"))

    def selected_campaign(self) -> tuple[int, str, int] | None:
        key = self.query_one("#campaigns", LiveTable).selected_key
        if key is None:
            return None
        cid = int(key)
        status, priority = self.campaigns.get(cid, ("", 0))
        return cid, status, priority

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.query_one("#campaigns", LiveTable).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_sort(self) -> None:
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        self.reload()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self.reload()

    @on(DataTable.HeaderSelected, "#campaigns")
    def header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort:
            self.descending = not self.descending
        else:
            self.sort = key
        self.reload()

    @on(DataTable.RowHighlighted, "#campaigns")
    def highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#campaigns")
    def action_open(self) -> None:
        selected = self.selected_campaign()
        if selected is not None:
            self.app.push_screen(CampaignScreen(self.backend, selected[0], self.every))

    def key_escape(self) -> None:
        self.query_one("#campaigns", LiveTable).focus()

    def action_new_campaign(self) -> None:
        from tui.screens.new_campaign import ACTION, NewCampaignScreen

        if not self.backend.may(ACTION):
            self.notify(self.backend.refusal(ACTION), severity="error")
            return
        self.app.push_screen(NewCampaignScreen(self.backend, self.every))

"""The Campaigns screen: every campaign, newest first, filtered as you type and sorted."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any, ClassVar

from rich.cells import cell_len
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static

from engine.campaign import Campaign
from engine.schedule import batch_sizes, live
from engine.sending.status import account_rate
from tui.backend import Backend
from tui.format import Cell, Row, Styled, status_cell, when
from tui.screens.actions import CAMPAIGN_BINDINGS, CampaignActions
from tui.screens.campaign import CampaignScreen
from tui.widgets import LiveTable, show_text

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
#: the screen width from which each optional column shows (Id, Name, Recipients and Status
#: always show; the name column takes what the others leave)
COLUMN_FROM = {
    "end": 100,
    "channel": 120,
    "sender": 120,
    "created": 150,
    "start": 150,
    "wallet": 150,
    "origin": 160,
}
#: what the table takes besides its columns: the scrollbar and a margin
TABLE_CHROME = 3
#: each column's padding (DataTable's ``cell_padding`` on both sides)
PADDING = 2
#: the name column is never narrower than this (optional columns go first)
NAME_MIN = 16
#: statuses whose campaign can still need something from the operator
ACTIVE = ("scheduled", "sending", "paused", "held")


@dataclass(frozen=True)
class CampaignList:
    rows: list[Row]
    #: campaign id -> (status, priority): what the actions allow and start from
    campaigns: dict[int, tuple[str, int]]
    total: int
    #: the columns shown at this width (Status always among them)
    columns: tuple[tuple[str, str], ...] = CAMPAIGN_COLUMNS
    #: the name column's width
    name_width: int = 0
    #: campaign id -> why it needs attention (held, failing, will expire), of those listed
    attention: dict[int, str] = field(default_factory=dict)


def columns_for(width: int) -> tuple[tuple[str, str], ...]:
    """The columns shown on a screen ``width`` cells wide."""
    return tuple(
        (label, key) for label, key in CAMPAIGN_COLUMNS if COLUMN_FROM.get(key, 0) <= width
    )


def narrow(text: str) -> bool:
    """Whether each character of ``text`` takes exactly one cell (then its cells are its
    length: no lookup per character, issue 16 goal 7)."""
    if text.isascii():
        return text.isprintable()
    return all(_one_cell(ch) for ch in set(text))


@lru_cache(maxsize=4096)
def _one_cell(ch: str) -> bool:
    # joiners, variation selectors and combining marks are not printable or take 0 cells
    return ch.isprintable() and cell_len(ch) == 1


def cell_width(text: str) -> int:
    """How many cells ``text`` takes (what rich measures)."""
    return len(text) if narrow(text) else cell_len(text)


def cut(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, an ellipsis ending what was cut."""
    if narrow(text):
        if len(text) <= width:
            return text
        return "…"[:width] if width <= 1 else text[: width - 1] + "…"
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    out = ""
    for ch in text:
        if cell_len(out + ch) > width - 1:
            break
        out += ch
    return out + "…"


def tail_open(sizes: list[int], remaining: int) -> dict[int, int]:
    """Open deliveries per batch from the campaign's counter alone (no query): batches are
    sent in order, so what remains is in the last ones."""
    found: dict[int, int] = {}
    for k in range(len(sizes), 0, -1):
        if remaining <= 0:
            break
        n = min(sizes[k - 1], remaining)
        found[k] = n
        remaining -= n
    return found


def attention_reasons(backend: Backend, found: list[Campaign], now: datetime) -> dict[int, str]:
    """Why each listed campaign needs the operator: held (with its reason), failing (its
    account's breaker is open or the guard paused it, or it counted errors), or it will
    expire before finishing (``engine.schedule``: the deadline comes before its last send).
    Two queries whatever the number of campaigns: the accounts, the error totals."""
    active = [c for c in found if c.status in ACTIVE]
    if not active:
        return {}
    states = backend.store.accounts.states()
    errors = backend.store.errors.totals([c.id for c in active])
    reasons: dict[int, str] = {}
    for c in active:
        why: list[str] = []
        if c.status == "held":
            why.append(f"held: {c.status_reason or 'no reason recorded'}")
        state = states.get(c.account or "")
        said = c.status == "held" and f"account {c.account}" in (c.status_reason or "")
        if state is None or said:
            pass  # no account state, or the hold already says it
        elif state.breaker_open:
            why.append(f"account {state.name} failing: {state.breaker_reason or 'breaker open'}")
        elif state.guard_state == "paused" and not state.override_by:
            why.append(f"account {state.name} paused: {state.pause_reason or 'by the guard'}")
        if errors.get(c.id):
            why.append(f"{errors[c.id]:,} errors")
        if c.deadline is not None and c.remaining:
            sizes = batch_sizes(c.audience, c.pacing)
            schedule = live(
                c,
                now,
                rate=account_rate(backend.config, c),
                open_by_batch=tail_open(sizes, c.remaining),
            )
            if schedule.expired > 0:
                why.append(f"{schedule.expired:,} will expire at the deadline")
        if why:
            reasons[c.id] = "; ".join(why)
    return reasons


def parameters(backend: Backend, c: Campaign) -> str:
    """A campaign's parameters for its name cell: channel, pacing, deadline."""
    pacing = c.pacing.describe() if c.pacing else "one batch"
    deadline = f"until {when(backend, c.deadline)}" if c.deadline else "no deadline"
    return f"{c.channel} · {pacing} · {deadline}"


def campaign_list(
    backend: Backend,
    text: str = "",
    sort: str = "id",
    descending: bool = True,
    width: int = 120,
    *,
    attention: bool = False,
) -> CampaignList:
    """The Campaigns screen, ``width`` cells wide: one query on the campaigns table (their
    counters included), and for the campaigns still active two more (accounts, error totals)
    to say which need attention; ``attention`` lists only those.

    Status always shows; optional columns show from a width (``COLUMN_FROM``) and go first
    when the name would be narrower than ``NAME_MIN``. The name column takes the rest: the
    name without its ``mailing_`` prefix, then, when there is room, why it needs attention
    or its parameters (channel, pacing, deadline); what does not fit ends in an ellipsis
    (the detail shows it whole). A campaign with work left shows how much of it is done."""
    now = backend.now()
    found, total = backend.store.views.campaign_rows(text=text, sort=sort, descending=descending)
    reasons = attention_reasons(backend, found, now)
    if attention:
        found = [c for c in found if c.id in reasons]
    full: list[tuple[int, dict[str, Cell], str]] = []
    for c in found:
        status = status_cell(c.status)
        if c.status in ("sending", "paused", "held") and c.recipients:
            done = c.recipients - c.remaining
            status = Styled(f"{c.status} {100 * done // c.recipients}%", status.style)
        cells: dict[str, Cell] = {
            "id": str(c.id),
            "created": when(backend, c.created_at),
            "origin": c.origin,
            "wallet": c.wallet or "-",
            "channel": c.channel,
            "sender": c.account or "-",
            "recipients": f"{c.recipients:,}",
            "start": when(backend, c.started_at or c.start_at),
            "end": when(backend, c.finished_at or c.deadline),
            "status": status,
        }
        extra = f"⚠ {reasons[c.id]}" if c.id in reasons else parameters(backend, c)
        full.append((c.id, cells, f"{c.name.removeprefix('mailing_')}\t{extra}"))
    columns = list(columns_for(width))

    known: dict[str, int] = {}

    def widest(key: str, label: str) -> int:
        if key not in known:  # once per column, whatever the columns dropped
            known[key] = max(
                [
                    cell_width(label),
                    *(
                        cell_width(x.text if isinstance(x, Styled) else x)
                        for _, row, _ in full
                        for x in [row[key]]
                    ),
                ]
            )
        return known[key]

    def name_room(cols: list[tuple[str, str]]) -> int:
        others = sum(widest(key, label) + PADDING for label, key in cols if key != "name")
        return width - others - PADDING - TABLE_CHROME

    order = sorted((k for _, k in columns if k in COLUMN_FROM), key=lambda k: -COLUMN_FROM[k])
    while name_room(columns) < NAME_MIN and order:
        drop = order.pop(0)
        columns = [(label, key) for label, key in columns if key != drop]
    name_width = max(NAME_MIN, name_room(columns))
    rows: list[Row] = []
    for cid, cells, both in full:
        name, extra = both.split("\t", 1)
        shown = cut(name, name_width)
        room = name_width - cell_width(shown) - 3
        if room >= 12:
            shown = f"{shown} · {cut(extra, room)}"
        cells["name"] = shown
        rows.append((str(cid), tuple(cells[key] for _, key in columns)))
    return CampaignList(
        rows,
        {c.id: (c.status, c.priority) for c in found},
        total,
        tuple(columns),
        name_width,
        reasons,
    )


# -- the screen ------------------------------------------------------------------------------


SORT_KEYS = [key for _, key in CAMPAIGN_COLUMNS]


class CampaignsScreen(CampaignActions):
    """Every campaign, newest first: filter as you type, sort by any column."""

    LABEL = "Campaigns"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("enter", "open", "Open"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse"),
        Binding("a", "attention", "Needs attention"),
        Binding("n", "new_campaign", "New campaign"),
        *CAMPAIGN_BINDINGS,
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.sort = "id"
        self.descending = True
        #: list only the campaigns that need attention (``a``)
        self.attention = False
        #: the width the last load was for
        self.width = 0
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
        width = self.size.width or self.app.size.width
        self.width = width
        value = self.query_one("#filter", Input).value
        return (value, self.sort, self.descending, width, self.attention)

    def fetch(self, params: Any) -> CampaignList:
        text, sort, descending, width, attention = params
        return campaign_list(self.backend, text, sort, descending, width, attention=attention)

    def show(self, data: CampaignList) -> None:
        self.campaigns = data.campaigns
        self.query_one("#campaigns", LiveTable).show(
            data.rows, columns=data.columns, widths={"name": data.name_width}
        )
        arrow = "↓" if self.descending else "↑"
        shown = len(data.rows)
        scope = f"{shown:,} campaigns" if shown == data.total else f"{shown:,} of {data.total:,}"
        if self.attention:
            scope = f"{shown:,} need attention (a: show all)"
        elif data.attention:
            scope += f" · {len(data.attention):,} need attention (a)"
        summary = f"{scope} · sorted by {self.sort} {arrow}"
        show_text(self.query_one("#summary", Static), summary)

    def on_resize(self) -> None:
        # the columns follow the width: load again when it changed since the last load
        if self.width and self.loads and self.size.width not in (0, self.width):
            self.reload()

    def action_attention(self) -> None:
        """List only the campaigns that need attention (held, failing, will expire), or all."""
        self.attention = not self.attention
        self.reload()

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

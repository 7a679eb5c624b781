"""The Queues screen: per sender account, its rates, in flight, queue and guard."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from engine.campaign import Campaign
from engine.schedule import live
from engine.sending.status import account_rates
from engine.store.accounts import AccountState
from tui.backend import Backend
from tui.dialogs import Field, FormDialog, required
from tui.format import (
    NOT_SENDING,
    RATE_WINDOW,
    Cell,
    Row,
    Styled,
    rate_text,
    span,
    status_cell,
    until,
    when,
)
from tui.screens.actions import CAMPAIGN_BINDINGS, CampaignActions
from tui.screens.campaign import CampaignScreen
from tui.screens.live import PaletteEntry
from tui.widgets import LiveTable, show_text

# -- the view model --------------------------------------------------------------------------

ACCOUNT_COLUMNS = (
    ("Account", "name"),
    ("Channel", "channel"),
    ("Limit", "limit"),
    ("Actual", "actual"),
    ("In flight", "in_flight"),
    ("Queued", "queued"),
    ("Current", "current"),
    ("Waiting", "waiting"),
    ("Bounces 24 h", "bounces"),
    ("Complaints 24 h", "complaints"),
    ("Guard", "guard"),
)
QUEUE_COLUMNS = (
    ("Id", "id"),
    ("Name", "name"),
    ("Status", "status"),
    ("Priority", "priority"),
    ("Remaining", "remaining"),
    ("Batches", "batches"),
    ("In flight", "in_flight"),
    ("Next", "next"),
)


@dataclass(frozen=True)
class Queues:
    accounts: list[Row]
    #: account -> the rows of its queue (current first, then waiting by priority)
    queues: dict[str, list[Row]]
    #: campaign id -> (status, priority)
    campaigns: dict[int, tuple[str, int]]
    #: account -> is the guard overridden
    overridden: dict[str, bool]
    guard: dict[str, str]


def queues(backend: Backend, *, running: bool = True) -> Queues:
    """The Queues screen: accounts (their guard rows), active campaigns, the lease index and
    a minute of events per account. Without a ``running`` engine nothing is in flight or
    "sending now": the cells say no engine runs."""
    now = backend.now()
    snap = backend.store.views.queues(now - RATE_WINDOW)
    names = list(backend.config.accounts)
    names += sorted(n for n in snap.accounts if n not in backend.config.accounts)
    names += sorted({c.account for c in snap.campaigns if c.account and c.account not in names})
    by_account: dict[str, list[Campaign]] = {n: [] for n in names}
    for c in snap.campaigns:
        if c.account:
            by_account.setdefault(c.account, []).append(c)
    rows: list[Row] = []
    queue_rows: dict[str, list[Row]] = {}
    overridden: dict[str, bool] = {}
    guard_states: dict[str, str] = {}
    for name in names:
        settings = backend.config.accounts.get(name)
        state = snap.accounts.get(name)
        mine = by_account.get(name, [])
        flying = sum(snap.in_flight.get(c.id, 0) for c in mine)
        current = _current(mine, snap.in_flight)
        waiting = [c for c in mine if c is not current]
        actual = snap.sent_recently.get(name, 0) / RATE_WINDOW.total_seconds()
        limit = (
            f"{settings.rate:g}/s" + (" sandbox" if settings.sandbox else "")
            if settings
            else Styled("not configured", "level--late")
        )
        bounce, complaint, guard = _guard_cells(backend, state, now)
        overridden[name] = bool(state and state.override_by)
        guard_states[name] = state.guard_state if state else "ok"
        rows.append(
            (
                name,
                (
                    name,
                    settings.channel if settings else (state.channel if state else "-"),
                    limit,
                    rate_text(actual),
                    f"{flying:,}" if running else Styled("no engine", "muted"),
                    f"{sum(c.remaining for c in mine):,}",
                    f"#{current.id}" if current else "-",
                    ", ".join(f"#{c.id}" for c in waiting) or "-",
                    bounce,
                    complaint,
                    guard,
                ),
            )
        )
        ordered = ([current] if current else []) + waiting
        queue_rows[name] = [
            (
                str(c.id),
                (
                    str(c.id),
                    c.name,
                    (
                        Styled("sending now", "status--sending")
                        if running
                        else Styled(NOT_SENDING, "level--warn")
                    )
                    if c is current and c.status == "sending"
                    else status_cell(c.status),
                    str(c.priority),
                    f"{c.remaining:,}",
                    f"{c.released_batches}/{c.batches}",
                    f"{snap.in_flight.get(c.id, 0):,}" if running else "-",
                    _next(backend, c, now, current),
                ),
            )
            for c in ordered
        ]
    return Queues(
        rows,
        queue_rows,
        {c.id: (c.status, c.priority) for c in snap.campaigns},
        overridden,
        guard_states,
    )


def _current(mine: list[Campaign], flying: dict[int, int]) -> Campaign | None:
    """What the account sends now: the campaign with deliveries in flight, else the one the
    dispatcher picks next (D11: highest priority, then oldest, among those sending)."""
    busy = [c for c in mine if flying.get(c.id)]
    if busy:
        return max(busy, key=lambda c: flying[c.id])
    sending = [c for c in mine if c.status == "sending"]
    return sending[0] if sending else None


def _next(backend: Backend, c: Campaign, now: datetime, current: Campaign | None) -> str:
    """What the campaign waits for."""
    if c.status == "scheduled" and c.start_at > now:
        return f"starts {until(now, c.start_at)}"
    if c.status in ("paused", "held"):
        return c.status_reason or c.status
    following = live(c, now, rate=1.0).next_release if c.pacing is not None else None
    if following is not None:
        return f"batch {following.index} {until(now, following.release_at)}"
    if current is not None and c is not current and c.status == "sending":
        return f"waits for #{current.id} (D11)"
    return ""


def _guard_cells(
    backend: Backend, state: AccountState | None, now: datetime
) -> tuple[Cell, Cell, Cell]:
    if state is None:
        return "-", "-", Styled("no state yet", "muted")
    rates = account_rates(backend.config, state)
    b: Cell = rates.bounce_text()
    k: Cell = rates.complaint_text()
    if rates.bounces_over:
        b = Styled(str(b), "level--late")
    if rates.complaints_over:
        k = Styled(str(k), "level--late")
    if state.breaker_open:
        probe = f" (probe {until(now, state.breaker_retry_at)})" if state.breaker_retry_at else ""
        guard: Cell = Styled(
            f"breaker open{probe}: {state.breaker_reason or 'channel failing'}", "level--late"
        )
    elif state.override_by:
        guard = Styled(
            f"override by {state.override_by}: {state.override_reason or ''}".strip(),
            "level--warn",
        )
    elif state.guard_state == "paused":
        left = f" until {when(backend, state.paused_until)}" if state.paused_until else ""
        guard = Styled(f"paused{left}: {state.pause_reason or ''}", "level--late")
    else:
        checked = (
            f" (checked {span(now - state.checked_at)} ago)" if state.checked_at is not None else ""
        )
        guard = Styled(f"ok{checked}", "level--ok")
    return b, k, guard


# -- the screen ------------------------------------------------------------------------------


class QueuesScreen(CampaignActions):
    """Per sender account: rates, in flight, queue, guard; the selected account's queue."""

    LABEL = "Queues"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        *CAMPAIGN_BINDINGS,
        Binding("o", "override", "Override guard"),
        Binding("u", "clear_override", "Clear override"),
        Binding("d", "account", "Account usage"),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.data: Queues | None = None
        self.account: str | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("Sender accounts", classes="caption")
        yield LiveTable(ACCOUNT_COLUMNS, id="accounts")
        yield Static("", id="queue-caption", classes="caption")
        yield LiveTable(QUEUE_COLUMNS, id="queue")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#accounts", LiveTable).focus()

    def fetch(self, params: Any) -> Queues:
        return queues(self.backend, running=self.engine_running)

    def show(self, data: Queues) -> None:
        self.data = data
        accounts = self.query_one("#accounts", LiveTable)
        accounts.show(data.accounts)
        self._show_queue()

    def _show_queue(self) -> None:
        if self.data is None:
            return
        self.account = self.query_one("#accounts", LiveTable).selected_key
        rows = self.data.queues.get(self.account or "", [])
        show_text(
            self.query_one("#queue-caption", Static),
            Text(
                f"Queue of {self.account}: the campaign it sends now, then the ones waiting by "
                "priority (D11)"
                if self.account
                else "No sender account configured"
            ),
        )
        self.query_one("#queue", LiveTable).show(rows)
        self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#accounts")
    def account_highlighted(self) -> None:
        if self.query_one("#accounts", LiveTable).selected_key != self.account:
            self._show_queue()

    @on(DataTable.RowHighlighted, "#queue")
    def queue_highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#accounts")
    def account_selected(self) -> None:
        self.query_one("#queue", LiveTable).focus()

    @on(DataTable.RowSelected, "#queue")
    def action_open(self) -> None:
        if self.focused is self.query_one("#accounts", LiveTable):
            self.query_one("#queue", LiveTable).focus()  # Enter on an account: to its queue
            return
        selected = self.selected_campaign()
        if selected is not None:
            self.app.push_screen(CampaignScreen(self.backend, selected[0], self.every))

    def action_account(self) -> None:
        """The selected account's usage: settings, sends per hour over 24 h, rates."""
        from tui.screens.account import AccountScreen

        if self.account is not None:
            self.app.push_screen(AccountScreen(self.backend, self.account, self.every))

    def selected_campaign(self) -> tuple[int, str, int] | None:
        if self.data is None:
            return None
        key = self.query_one("#queue", LiveTable).selected_key
        if key is None:
            return None
        cid = int(key)
        status, priority = self.data.campaigns.get(cid, ("", 0))
        return cid, status, priority

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "account":
            return True if self.account is not None else None
        if action in ("override", "clear_override"):
            need = "override" if action == "override" else "clear-override"
            if not self.backend.may(need):
                return False
            if self.account is None or self.data is None:
                return None
            if action == "clear_override" and not self.data.overridden.get(self.account):
                return None
            return True
        return super().check_action(action, parameters)

    def action_override(self) -> None:
        if not self.backend.may("override"):
            self.notify(self.backend.refusal("override"), title="Refused", severity="error")
            return
        name = self.account
        if name is None:
            return
        self.ask(
            FormDialog(
                f"Override the guard of {name}?",
                "The account keeps sending whatever its bounce and complaint rates (D16). The "
                "override, who made it and why are recorded and shown.",
                [Field("reason", "Reason (required)", check=required("a reason"))],
                ok="Override",
                danger=True,
            ),
            lambda values: self.act("override", f"account:{name}", {"reason": values["reason"]}),
        )

    def action_clear_override(self) -> None:
        if not self.backend.may("clear-override"):
            self.notify(self.backend.refusal("clear-override"), title="Refused", severity="error")
            return
        name = self.account
        if name is None:
            return
        self.ask(
            FormDialog(
                f"Clear the guard override of {name}?",
                "The guard applies again at its next check (every 5 minutes).",
                [Field("reason", "Reason (optional)")],
                ok="Clear",
                danger=True,
            ),
            lambda values: self.act(
                "clear-override", f"account:{name}", {"reason": values["reason"]}
            ),
        )

    def palette(self) -> Iterable[PaletteEntry]:
        yield from super().palette()
        if self.account is None:
            return
        if self.backend.may("override"):
            yield (
                f"Override the guard of {self.account}",
                "admin, with a reason (D16)",
                self.action_override,
            )
        if (
            self.backend.may("clear-override")
            and self.data
            and self.data.overridden.get(self.account)
        ):
            yield f"Clear the guard override of {self.account}", "admin", self.action_clear_override

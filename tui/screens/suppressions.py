"""The Suppressions screen: addresses never sent to (D4), searched, added and removed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Input, Static

from engine.store.suppressions import ORIGINS
from tui.backend import Backend
from tui.dialogs import Field, FormDialog, required
from tui.format import Row, Styled, when
from tui.screens.live import LiveScreen, PaletteEntry
from tui.widgets import LiveTable, show_text

# -- the view model --------------------------------------------------------------------------

SUPPRESSION_COLUMNS = (
    ("Address", "address"),
    ("Kind", "kind"),
    ("Origin", "origin"),
    ("Reason", "reason"),
    ("Campaign", "campaign"),
    ("By", "by"),
    ("When", "when"),
)


@dataclass(frozen=True)
class SuppressionList:
    rows: list[Row]
    counts: dict[str, int]
    origin: str | None


def suppression_list(backend: Backend, text: str, origin: str | None) -> SuppressionList:
    """The Suppressions screen: a search (newest first) and the count per origin."""
    store = backend.store
    found = store.suppressions.search(text, origin=origin, limit=500)
    counts = store.suppressions.counts()
    rows: list[Row] = [
        (
            f"{s.kind}:{s.address}",
            (
                s.address,
                s.kind,
                Styled(s.origin, f"origin--{s.origin}"),
                s.reason or "",
                f"#{s.campaign_id}" if s.campaign_id else "",
                s.created_by,
                when(backend, s.created_at),
            ),
        )
        for s in found
    ]
    return SuppressionList(rows, {o: counts.get(o, 0) for o in ORIGINS}, origin)


# -- the screen ------------------------------------------------------------------------------


class SuppressionsScreen(LiveScreen):
    """Addresses never sent to (D4): search, filter by origin, add, remove."""

    LABEL = "Suppressions"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("f", "origin", "Origin"),
        Binding("a", "add", "Add"),
        Binding("d", "remove", "Remove"),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.origin: str | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Input(placeholder="Search: part of an address   ( / )", id="search")
        yield Static("", id="counts", classes="caption")
        yield LiveTable(SUPPRESSION_COLUMNS, id="suppressions")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#suppressions", LiveTable).focus()

    def params(self) -> Any:
        return (self.query_one("#search", Input).value, self.origin)

    def fetch(self, params: Any) -> SuppressionList:
        text, origin = params
        return suppression_list(self.backend, text, origin)

    def show(self, data: SuppressionList) -> None:
        counts = Text()
        for origin, n in data.counts.items():
            style = "bold reverse" if origin == data.origin else ""
            counts.append(f" {origin} {n:,} ", style=style)
            counts.append(" ")
        counts.append(f"  showing: {data.origin or 'every origin'} (f)", style="italic")
        show_text(self.query_one("#counts", Static), counts)
        self.query_one("#suppressions", LiveTable).show(data.rows)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "add":
            return self.backend.may("suppress")
        if action == "remove":
            if not self.backend.may("unsuppress"):
                return False
            return None if self.query_one("#suppressions", LiveTable).selected_key is None else True
        return True

    @on(Input.Changed, "#search")
    def search_changed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#search")
    def search_done(self) -> None:
        self.query_one("#suppressions", LiveTable).focus()

    @on(DataTable.RowHighlighted, "#suppressions")
    def highlighted(self) -> None:
        self.refresh_bindings()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_origin(self) -> None:
        order: list[str | None] = [None, *ORIGINS]
        self.origin = order[(order.index(self.origin) + 1) % len(order)]
        self.reload()

    def action_add(self) -> None:
        if not self.backend.may("suppress"):
            self.notify(self.backend.refusal("suppress"), title="Refused", severity="error")
            return
        self.ask(
            FormDialog(
                "Suppress an address",
                "Nothing is sent to it again, on any campaign (D4).",
                [
                    Field(
                        "address",
                        "E-mail or phone number",
                        placeholder="ana@example.com or (11) 99999-0000",
                        check=required("an address"),
                    ),
                    Field("reason", "Reason (optional)"),
                ],
                ok="Suppress",
            ),
            lambda values: self.act(
                "suppress", f"address:{values['address']}", {"reason": values["reason"]}
            ),
        )

    def action_remove(self) -> None:
        if not self.backend.may("unsuppress"):
            self.notify(self.backend.refusal("unsuppress"), title="Refused", severity="error")
            return
        key = self.query_one("#suppressions", LiveTable).selected_key
        if key is None:
            self.notify("select a suppression first", severity="warning")
            return
        address = key.split(":", 1)[1]
        self.ask(
            FormDialog(
                f"Send to {address} again?",
                "The suppression is lifted; the audit log keeps what it was and why it was lifted.",
                [Field("reason", "Reason (required)", check=required("a reason"))],
                ok="Remove the suppression",
                danger=True,
            ),
            lambda values: self.act(
                "unsuppress", f"address:{address}", {"reason": values["reason"]}
            ),
        )

    def palette(self) -> Iterable[PaletteEntry]:
        if self.backend.may("suppress"):
            yield "Suppress an address", "never send to it again (D4)", self.action_add
        key = self.query_one("#suppressions", LiveTable).selected_key
        if key is not None and self.backend.may("unsuppress"):
            yield (
                f"Remove the suppression of {key.split(':', 1)[1]}",
                "with a reason",
                self.action_remove,
            )

"""The Audit screen (who did what, when: operator actions, state changes, exports) and the
engine log (the recent log records of the engines on this store, live), newest first."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Static

from tui.backend import Backend
from tui.format import Cell, Row, Styled, when
from tui.screens.live import LiveScreen
from tui.widgets import LiveTable, show_text

AUDIT_PAGE = 100
LOG_LINES = 300
#: the times of both screens: date, time and the configured zone's UTC offset
STAMP = "%d/%m %H:%M:%S %z"

AUDIT_COLUMNS = (
    ("When", "at"),
    ("Who", "actor"),
    ("Did", "action"),
    ("To", "target"),
    ("Detail", "detail"),
)
LOG_COLUMNS = (
    ("When", "at"),
    ("Engine", "node"),
    ("Level", "level"),
    ("Logger", "logger"),
    ("Message", "message"),
)
LEVEL_STYLE = {"WARNING": "level--warn", "ERROR": "level--late", "CRITICAL": "level--late"}


@dataclass(frozen=True)
class Page:
    rows: list[Row]
    caption: str
    #: the oldest and newest ids shown (for paging)
    oldest: int | None
    newest: int | None


def _detail(detail: Any) -> str:
    if not detail:
        return ""
    return json.dumps(detail, ensure_ascii=False, default=str, separators=(", ", ": "))


def audit_page(backend: Backend, before: int | None = None, limit: int = AUDIT_PAGE) -> Page:
    """One page of the audit log, newest first (a seek on its primary key), times in the
    configured zone."""
    entries = backend.store.audit.entries(limit=limit, before=before)
    rows: list[Row] = [
        (
            str(e.id),
            (
                when(backend, e.at, STAMP),
                e.actor,
                e.action,
                e.target,
                _detail(e.detail).replace("\n", " "),
            ),
        )
        for e in entries
    ]
    newest = entries[0].id if entries else None
    oldest = entries[-1].id if entries else None
    where = "newest" if before is None else "older"
    caption = (
        f"Audit log: {len(entries)} {where} entries, newest first (n older, b newer)"
        if entries
        else "Audit log: nothing recorded here yet (b newer)"
    )
    return Page(rows, caption, oldest, newest)


def engine_log_page(backend: Backend, limit: int = LOG_LINES) -> Page:
    """The engines' newest log records (INFO and above, as they keep them in the store),
    newest first."""
    lines = backend.store.engine_log.recent(limit)
    rows: list[Row] = []
    for line in lines:
        level: Cell = (
            Styled(line.level, LEVEL_STYLE[line.level]) if line.level in LEVEL_STYLE else line.level
        )
        rows.append(
            (
                str(line.id),
                (
                    when(backend, line.at, STAMP),
                    line.node,
                    level,
                    line.logger,
                    line.message.replace("\n", " "),
                ),
            )
        )
    caption = (
        f"Engine log: the newest {len(lines)} records of the engines on this store, newest first"
        if lines
        else "Engine log: nothing yet (an engine writes its records here while it runs)"
    )
    return Page(rows, caption, lines[-1].id if lines else None, lines[0].id if lines else None)


class AuditScreen(LiveScreen):
    """Who did what, when: newest first, a page at a time."""

    LABEL = "Audit"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "older", "Older"),
        Binding("b", "newer", "Newer"),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        #: the page shown: entries older than this id (None: the newest)
        self.before: int | None = None
        #: the ids of the pages before this one (to go back)
        self.pages: list[int | None] = []
        self.page: Page | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="caption", classes="caption")
        yield LiveTable(AUDIT_COLUMNS, id="audit")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#audit", LiveTable).focus()

    def params(self) -> Any:
        return self.before

    def fetch(self, params: Any) -> Page:
        return audit_page(self.backend, params)

    def show(self, data: Page) -> None:
        self.page = data
        show_text(self.query_one("#caption", Static), Text(data.caption))
        self.query_one("#audit", LiveTable).show(data.rows)

    def action_older(self) -> None:
        if self.page is None or self.page.oldest is None:
            return
        self.pages.append(self.before)
        self.before = self.page.oldest
        self.reload()

    def action_newer(self) -> None:
        if not self.pages:
            self.notify("these are the newest entries", timeout=2)
            return
        self.before = self.pages.pop()
        self.reload()


class EngineLogScreen(LiveScreen):
    """The engines' recent log records, from the store, live."""

    LABEL = "Engine log"
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="caption", classes="caption")
        yield LiveTable(LOG_COLUMNS, id="log")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#log", LiveTable).focus()

    def fetch(self, params: Any) -> Page:
        return engine_log_page(self.backend)

    def show(self, data: Page) -> None:
        show_text(self.query_one("#caption", Static), Text(data.caption))
        self.query_one("#log", LiveTable).show(data.rows)

    def action_back(self) -> None:
        self.dismiss()

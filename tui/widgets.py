"""Widgets that show the models' rows and panels without flicker.

``LiveTable`` updates in place: when the same rows come back it rewrites only the cells that
changed (a second's refresh of a thousand campaigns touches a handful of cells); when rows
come or go it rebuilds, keeping the cursor on the same row. Cell colours are component
classes styled in ``disparo.tcss``.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from tui.format import Cell, Panel, Row, Styled

#: every style a cell can name (the models' ``Styled.style``)
CELL_CLASSES: set[str] = {
    *(
        f"status--{s}"
        for s in (
            "scheduled",
            "sending",
            "paused",
            "held",
            "completed",
            "cancelled",
            "expired",
            "pending",
            "claimed",
            "sent",
            "delivered",
            "failed",
            "bounced",
            "suppressed",
            "skipped",
        )
    ),
    *(f"origin--{o}" for o in ("bounce", "complaint", "unsubscribe", "stop", "manual")),
    "level--ok",
    "level--warn",
    "level--late",
    "muted",
    "label",
}


def _bindings_but_enter() -> list[BindingType]:
    """DataTable's bindings (with its bases'), without Enter."""
    found: list[BindingType] = []
    for base in reversed(DataTable.__mro__):
        for b in vars(base).get("BINDINGS", []):
            key = b.key if isinstance(b, Binding) else b[0]
            if key != "enter":
                found.append(b)
    return found


class LiveTable(DataTable[Text], inherit_bindings=False):
    """A table of ``(key, cells)`` rows that refreshes in place."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | CELL_CLASSES
    # Enter is the screen's (Open, Report…), so the footer says what it does there
    BINDINGS: ClassVar[list[BindingType]] = _bindings_but_enter()

    def __init__(
        self, columns: Sequence[tuple[str, str]], *, id: str | None = None, classes: str = ""
    ) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row")
        self.columns_spec = tuple(columns)
        self.keys: list[str] = []
        self._cells: list[tuple[Cell, ...]] = []
        self._widths: list[int] = []

    def on_mount(self) -> None:
        self._ensure_columns()

    def _ensure_columns(self) -> None:
        # The screen's first load can land before this widget's own mount handler ran (they
        # are separate message queues): rows added before their columns would leave every
        # column as narrow as its label. So whoever comes first adds the columns.
        if not self.columns:
            for label, key in self.columns_spec:
                self.add_column(label, key=key)

    @property
    def selected_key(self) -> str | None:
        """The key of the row under the cursor."""
        if not self.row_count:
            return None
        index = min(self.cursor_row, self.row_count - 1)
        return self.keys[index] if 0 <= index < len(self.keys) else None

    def _text(self, cell: Cell) -> Text:
        if isinstance(cell, Styled):
            name = cell.style
            style = (
                self.get_component_rich_style(name, partial=True)
                if name in CELL_CLASSES
                else Style()
            )
            return Text(cell.text, style=style, no_wrap=True)
        return Text(cell, no_wrap=True)

    def show(
        self,
        rows: Sequence[Row],
        *,
        columns: Sequence[tuple[str, str]] | None = None,
        widths: dict[str, int] | None = None,
    ) -> None:
        """Show ``rows``: changed cells only when the rows are the same ones, else rebuild.

        Column widths are computed here from the rows (not left to the table's idle-time
        measuring, which a busy machine could leave undone when a refresh lands first), so
        a column is always as wide as its widest cell; ``widths`` fixes some (a column that
        flexes with the screen). ``columns`` changes which columns show (a narrower screen
        shows fewer): the table is rebuilt when they change.
        """
        if columns is not None and tuple(columns) != self.columns_spec:
            self.columns_spec = tuple(columns)
            self._widths = []  # a rebuild, with the new columns
            self.keys = []
            if self.columns:
                self.clear(columns=True)
        self._ensure_columns()
        keys = [key for key, _ in rows]
        fixed = widths or {}
        sizes = [fixed.get(key, cell_len(label)) for label, key in self.columns_spec]
        free = [key not in fixed for _, key in self.columns_spec]
        for _, cells in rows:
            for i, cell in enumerate(cells):
                if not free[i]:
                    continue
                width = cell_len(cell.text if isinstance(cell, Styled) else cell)
                if width > sizes[i]:
                    sizes[i] = width
        widths_now = sizes
        if keys == self.keys and widths_now == self._widths:
            for (key, cells), before in zip(rows, self._cells, strict=True):
                if cells == before:
                    continue
                for i, (new, old) in enumerate(zip(cells, before, strict=True)):
                    if new != old:
                        self.update_cell(key, self.columns_spec[i][1], self._text(new))
        else:
            selected = self.selected_key
            # A rebuild allocates ~50 objects a row; the garbage collector's passes over the
            # app's heap meanwhile cost three times the work itself (1,000 rows: 85 ms with
            # them, 24 ms without), and nothing here makes cycles.
            collecting = gc.isenabled()
            gc.disable()
            try:
                if widths_now != self._widths:
                    self.clear(columns=True)
                    for (label, key), width in zip(self.columns_spec, widths_now, strict=True):
                        self.add_column(label, key=key, width=width)
                    self._widths = widths_now
                else:
                    self.clear()
                for key, cells in rows:
                    self.add_row(*(self._text(c) for c in cells), key=key)
            finally:
                if collecting:
                    gc.enable()
            if selected in keys:
                self.move_cursor(row=keys.index(selected), animate=False)
        self.keys = keys
        self._cells = [cells for _, cells in rows]


def show_text(widget: Static, content: str | Text) -> None:
    """``widget.update(content)`` only when it shows something else: an update repaints
    the widget (bytes on every SSH session) even when nothing changed. A string is shown as
    it is (never read as markup: ``[sms]`` stays)."""
    if isinstance(content, str):
        content = Text(content)
    key = (content.plain, tuple(content.spans), str(content.style))
    if getattr(widget, "_shown_key", None) == key:
        return
    widget._shown_key = key  # type: ignore[attr-defined]
    widget.update(content)


class PanelView(Static):
    """Label/value lines of a ``Panel``; its level (``-ok``, ``-warn``, ``-late``) is a class
    the stylesheet colours the border with."""

    COMPONENT_CLASSES: ClassVar[set[str]] = CELL_CLASSES

    _panel: Panel | None = None

    def show(self, panel: Panel) -> None:
        """Show ``panel`` (nothing is redrawn when it is the one shown)."""
        if panel == self._panel:
            return
        self._panel = panel
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style=self.get_component_rich_style("label", partial=True), no_wrap=True)
        grid.add_column()
        for label, value in panel.lines:
            if isinstance(value, Styled):
                style = self.get_component_rich_style(value.style, partial=True)
                grid.add_row(label, Text(value.text, style=style))
            else:
                grid.add_row(label, Text(value))
        for level in ("ok", "warn", "late"):
            self.set_class(panel.level == level, f"-{level}")
        self.update(grid)

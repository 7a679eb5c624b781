"""A rich ``Table`` printed without rich's layout engine when the output is plain text.

Where stdout is not a terminal (a pipe, a file, CI) the CLI's console has no colour and is
never wrapped (``make_console``): a table is then only its box characters and its cells'
text, padded to the widest cell of each column. Rich measures and renders every cell through
its generic layout machinery to produce exactly that, which was a third of ``disparo
campaigns``' start-up (issue 16, goal 7). ``print_table`` writes the same bytes directly for
the tables the CLI builds (title on the left, header or not, columns justified left or
right, one line per cell) and hands anything else to rich: anything it cannot vouch for —
markup or emoji codes in a string, control characters, a terminal, colour, a style of
table it does not know — goes through ``console.print`` unchanged. A test renders tables of
every kind both ways and compares the bytes.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

#: what rich would read as an emoji code (``:smile:``) in a string cell
_EMOJI = re.compile(r":\S*?:")
#: characters rich would not print as themselves on one line (tabs, newlines, escapes…)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: (left, fill, cross, right) of the top, header, header rule, body and bottom lines
_HEADED = ("┏━┳┓", "┃ ┃┃", "┡━╇┩", "│ ││", "└─┴┘")
_UNHEADED = ("┌─┬┐", "", "", "│ ││", "└─┴┘")


def _plain(cell: Any) -> str | None:
    """The text a cell shows, or None when only rich can tell."""
    if isinstance(cell, Text):
        if cell.justify is not None or cell.overflow is not None or cell.no_wrap:
            return None
        text = cell.plain
    elif isinstance(cell, str):
        if "[" in cell or _EMOJI.search(cell):  # markup or an emoji code: rich's to read
            return None
        text = cell
    else:
        return None
    if _CONTROL.search(text):
        return None
    return text


def _lines(console: Console, table: Table) -> list[str] | None:
    """The table's lines as rich would print them on ``console``, or None to let rich."""
    from rich import box

    if (
        console.is_terminal
        or console.color_system is not None
        or console.record
        or console.options.ascii_only
        or console.legacy_windows
        or not console.soft_wrap
        or table.box is not box.HEAVY_HEAD
        or table.title_justify != "left"
        or table.caption is not None
        or table.show_footer
        or table.show_lines
        or not table.show_edge
        or table.expand
        or table.width is not None
        or table.min_width is not None
        or table.leading
        or table.padding != (0, 1, 0, 1)
        or table.collapse_padding
        or not table.pad_edge
        or table.row_count == 0
        or not table.columns
    ):
        return None
    title: str | None = None
    if table.title is not None:
        title = _plain(table.title)
        if title is None:
            return None
    columns = table.columns
    cells: list[list[str]] = []
    for column in columns:
        if (
            column.justify not in ("left", "right")
            or column.vertical != "top"
            or column.width is not None
            or column.min_width is not None
            or column.max_width is not None
            or column.ratio is not None
        ):
            return None
        texts = []
        for cell in (column.header, *column._cells) if table.show_header else column._cells:
            text = _plain(cell)
            if text is None:
                return None
            texts.append(text)
        cells.append(texts)
    widths = [max(cell_len(t) for t in texts) for texts in cells]
    if sum(widths) + 3 * len(widths) + 1 > console.width:
        return None  # wider than the console: rich would fold it
    top, head, rule, body, bottom = _HEADED if table.show_header else _UNHEADED

    def edge(chars: str) -> str:
        left, fill, cross, right = chars[0], chars[1], chars[2], chars[3]
        return left + cross.join(fill * (w + 2) for w in widths) + right

    def row(chars: str, index: int) -> str:
        left, inner, right = chars[0], chars[2], chars[3]
        parts = []
        for column, texts, width in zip(columns, cells, widths, strict=True):
            text = texts[index]
            pad = " " * (width - cell_len(text))
            parts.append(f" {pad}{text} " if column.justify == "right" else f" {text}{pad} ")
        return left + inner.join(parts) + right

    lines = [] if title is None else [title]
    lines.append(edge(top))
    first = 0
    if table.show_header:
        lines.append(row(head, 0))
        lines.append(edge(rule))
        first = 1
    lines.extend(row(body, i) for i in range(first, first + table.row_count))
    lines.append(edge(bottom))
    return lines


def print_table(console: Console, table: Table) -> None:
    """``console.print(table)``, the same bytes, without rich's layout engine when the
    console is plain text and the table a kind this module knows (else rich prints it)."""
    lines = _lines(console, table)
    if lines is None:
        console.print(table)
        return
    console.file.write("\n".join(lines) + "\n")

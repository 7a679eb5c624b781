"""engine.cli.plaintable prints the same bytes as rich for the tables the CLI builds, and
hands every other table to rich (issue 16, goal 7)."""

from __future__ import annotations

import io
import random

import pytest
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from engine.cli.context import UNWRAPPED
from engine.cli.plaintable import _lines, print_table


def _console() -> Console:
    """A console as ``make_console`` makes one for a pipe."""
    return Console(file=io.StringIO(), highlight=False, width=UNWRAPPED, soft_wrap=True)


def _both(table: Table) -> tuple[str, str]:
    by_rich, by_us = _console(), _console()
    by_rich.print(table)
    print_table(by_us, table)
    return by_rich.file.getvalue(), by_us.file.getvalue()  # type: ignore[attr-defined]


WORDS = ["", "a", "Id", "1,234", "23/11/2026 10:20", "héllo", "日本語", "Promoção", "x" * 40,
         "ümlaut ß", "emoji 🎉", "a b  c", "-", "sms-long", "[not markup]", "50%"]  # fmt: skip


def _table(rng: random.Random, *, header: bool, title: object) -> Table:
    table = Table(title=title, title_justify="left", show_header=header)  # type: ignore[arg-type]
    for _ in range(rng.randint(1, 6)):
        table.add_column(
            rng.choice(WORDS[1:]) if header else "",
            justify=rng.choice(["left", "right"]),
            overflow=rng.choice(["fold", "ellipsis"]),
            style=rng.choice(["", "bold"]),
        )
    for _ in range(rng.randint(1, 8)):
        row: list[object] = []
        for _ in table.columns:
            word = rng.choice(WORDS)
            row.append(Text(word, style=rng.choice(["", "red"])) if rng.random() < 0.5 else word)
        table.add_row(*row)  # type: ignore[arg-type]
    return table


@pytest.mark.parametrize("seed", range(60))
def test_plain_tables_print_the_same_bytes_as_rich(seed: int) -> None:
    rng = random.Random(seed)
    title = rng.choice([None, "Campaigns", "Campaign 7: mailing_231126_1_x", "T", "日本 title"])
    table = _table(rng, header=seed % 3 != 0, title=title)
    by_rich, by_us = _both(table)
    assert by_us == by_rich


def _lines_of(table: Table) -> list[str] | None:
    return _lines(_console(), table)


def test_what_only_rich_can_render_goes_to_rich() -> None:
    def simple(**kwargs: object) -> Table:
        options: dict[str, object] = {"title": "T", "title_justify": "left", **kwargs}
        table = Table(**options)  # type: ignore[arg-type]
        table.add_column("A")
        table.add_row("x")
        return table

    assert _lines_of(simple()) is not None
    markup = simple()
    markup.add_row("[bold]x[/]")
    emoji = simple()
    emoji.add_row(":smile:")
    control = simple()
    control.add_row(Text("two\nlines"))
    centred = simple()
    centred.columns[0].justify = "center"
    empty = Table(title="T")
    empty.add_column("A")
    for table in (markup, emoji, control, centred, empty, simple(box=box.ASCII),
                  simple(show_lines=True), simple(caption="c"), simple(expand=True),
                  simple(title_justify="center")):  # fmt: skip
        assert _lines_of(table) is None
        by_rich, by_us = _both(table)
        assert by_us == by_rich
    terminal = Console(file=io.StringIO(), force_terminal=True, width=80)
    assert _lines(terminal, simple()) is None

"""CSV written for people (E2): spreadsheet formulas are neutralised, and no raw control
character ever reaches the file."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: C0 controls but TAB, LF and CR (which the writer quotes), DEL and the C1 controls: a NUL
#: truncates the cell in some readers, ESC drives terminals, none of them belongs in a cell
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
#: what a control character is shown as (the Unicode replacement character)
REPLACEMENT = "\ufffd"


def safe_cell(value: object) -> str:
    """The cell as text: control characters shown as U+FFFD, and prefixed with ``'`` when a
    spreadsheet would run it as a formula or when it started with a control character."""
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case, checked in C: nothing to replace
        return "'" + text if text.startswith(FORMULA_STARTS) else text
    starts_control = bool(_CONTROL.match(text))
    text = _CONTROL.sub(REPLACEMENT, text)
    return "'" + text if starts_control or text.startswith(FORMULA_STARTS) else text


class SafeWriter:
    """``csv.writer`` that makes every cell safe (``safe_cell``); ``;``-separated by default
    (what Brazilian spreadsheets expect)."""

    def __init__(self, handle: IO[str], delimiter: str = ";") -> None:
        self._writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(v) for v in row])

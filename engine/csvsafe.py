"""CSV written for people (E2): spreadsheet formulas are neutralised, and no raw control
character ever reaches the file.

Every cell of every CSV disparo writes (results files, ``.rejeitados.csv`` reports, what
publishers write through :class:`SafeWriter`) goes through :func:`safe_cell`:

- a line break inside a cell (CR LF, LF, CR, VT, FF, NEL, U+2028, U+2029) becomes one space,
  so a file has exactly one line per row: a name imported with an embedded newline can never
  start a line of its own (an ``authorized_keys`` entry, a forged row);
- any other control character (C0 but TAB, DEL, C1) becomes U+FFFD; TAB inside a cell is
  kept (it breaks no line);
- a cell starting with ``=``, ``+``, ``-``, ``@``, TAB, CR or any control character
  (NUL…) is prefixed with ``'``, as E2 says.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: line breaks, each (CR LF as one) shown as a space: one line per row, always
_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x85\u2028\u2029]")
#: C0 controls but TAB, DEL and the C1 controls: a NUL truncates the cell in some readers,
#: ESC drives terminals, none of them belongs in a cell
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f]")
#: what starts a cell that must be prefixed: the line breaks and the other controls
_STARTS_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
#: what a control character is shown as (the Unicode replacement character)
REPLACEMENT = "\ufffd"


def safe_cell(value: object) -> str:
    """The cell as text on one line: line breaks shown as a space, other control characters
    as U+FFFD (TAB kept), and prefixed with ``'`` when a spreadsheet would run it as a
    formula or when it started with a control character (E2)."""
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case, checked in C: nothing to replace
        return "'" + text if text.startswith(FORMULA_STARTS) else text
    starts_control = bool(_STARTS_CONTROL.match(text))
    text = _CONTROL.sub(REPLACEMENT, _BREAK.sub(" ", text))
    return "'" + text if starts_control or text.startswith(FORMULA_STARTS) else text


class SafeWriter:
    """``csv.writer`` that makes every cell safe (``safe_cell``); ``;``-separated by default
    (what Brazilian spreadsheets expect)."""

    def __init__(self, handle: IO[str], delimiter: str = ";") -> None:
        self._writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow([safe_cell(v) for v in row])

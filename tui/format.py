"""What the screens hand the widgets (cells, rows, panels), and how they write times and rates.

Cells are plain text or ``Styled`` text whose style is a class of the one stylesheet
(``disparo.tcss``), so colours stay there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple

from engine.sending.status import EnginesHeader
from tui.backend import Backend


class Styled(NamedTuple):
    """Text drawn with one of the stylesheet's cell classes (``LiveTable.COMPONENT_CLASSES``)."""

    text: str
    style: str


Cell = str | Styled
Row = tuple[str, tuple[Cell, ...]]

#: the window of the "actual rate" figures
RATE_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True)
class Panel:
    """Label/value lines, and a level for the stylesheet (``ok``, ``warn``, ``late``)."""

    lines: list[tuple[str, Cell]]
    level: str = "ok"


def status_cell(status: str) -> Styled:
    return Styled(status, f"status--{status}")


def when(backend: Backend, value: datetime | None, fmt: str = "%d/%m %H:%M") -> str:
    """A time in the configured zone, or ``-`` (remembered: a refresh shows mostly the
    same times as the last one, issue 16 goal 7)."""
    return _when(value, fmt, backend.tz) if value is not None else "-"


@lru_cache(maxsize=16_384)
def _when(value: datetime, fmt: str, tz: tzinfo) -> str:
    return value.astimezone(tz).strftime(fmt)


def span(delta: timedelta) -> str:
    """A duration for people: ``45s``, ``4m 05s``, ``2h 10m``, ``3d 4h``."""
    seconds = max(0, math.ceil(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def clock_time(backend: Backend, now: datetime, value: datetime | None) -> str:
    """A time of today as ``HH:MM``, of another day as ``dd/mm HH:MM``."""
    if value is None:
        return "-"
    same = backend.local(value).date() == backend.local(now).date()
    return when(backend, value, "%H:%M" if same else "%d/%m %H:%M")


def until(now: datetime, at: datetime) -> str:
    """``in 4m 05s`` or ``4m 05s ago``."""
    return f"in {span(at - now)}" if at >= now else f"{span(now - at)} ago"


def bar(done: int, size: int, width: int = 10) -> str:
    """``██████░░░░``: how much of ``size`` is done."""
    filled = 0 if size <= 0 else min(width, round(width * done / size))
    return "█" * filled + "░" * (width - filled)


def rate_text(per_second: float) -> str:
    """``20/s``, ``1.5/s``, ``6/min``."""
    if per_second == 0:
        return "0/s"
    if per_second < 1:
        return f"{per_second * 60:.3g}/min"
    return f"{per_second:.3g}/s"


#: what a campaign shows instead of a projection when no engine runs
NOT_SENDING = "not sending: no engine running"


def engines_text(backend: Backend, engines: EnginesHeader) -> tuple[str, str]:
    """The line under every screen's header: each running engine (node, the accounts it
    holds, its heartbeat's age), or plainly that none runs; and its level (``ok``/``late``)."""
    if not engines.running:
        what = "no engine running"
        if engines.unresponsive:  # a time, not an age: the line stays the same while idle
            last = max(e.heartbeat_at for e in engines.unresponsive)
            what += f" (the last one was heard of at {when(backend, last, '%d/%m %H:%M:%S')})"
        return f"⏹ {what}: nothing is being sent; actions wait for an engine", "late"
    parts = []
    for e in engines.running:
        held = ", ".join(e.accounts) if e.accounts else "no account"
        # to 5 s (a heartbeat's usual period): a live engine's line stays the same, so it is
        # not drawn again every second
        seconds = (engines.now - e.heartbeat_at).total_seconds()
        age = "<5s" if seconds < 5 else span(timedelta(seconds=5 * (seconds // 5)))
        parts.append(f"{e.node} [{held}] ♥ {age} ago")
    n = len(engines.running)
    return f"▶ {n} engine{'s' if n > 1 else ''}: " + " · ".join(parts), "ok"

"""Messages the TUI's workers post to their screens ("attributes down, messages up")."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from tui.backend import Outcome


class Loaded(Message, bubble=False):
    """A screen's data, built in a worker thread; ``generation`` tells a stale load (one
    started before the filter changed) from the latest."""

    def __init__(self, generation: int, data: Any, engines: Any = None) -> None:
        super().__init__()
        self.generation = generation
        self.data = data
        #: the engines running (``EnginesHeader``), for the line under every screen's header
        self.engines = engines


class ActionDone(Message, bubble=False):
    """An operator action came back from the store or the engine."""

    def __init__(self, action: str, target: str, outcome: Outcome) -> None:
        super().__init__()
        self.action = action
        self.target = target
        self.outcome = outcome


class ExportDone(Message, bubble=False):
    """A campaign's recipients were written to a CSV file."""

    def __init__(self, path: str, rows: int) -> None:
        super().__init__()
        self.path = path
        self.rows = rows

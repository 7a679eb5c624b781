"""Read models for the terminal UI: cheap queries (counters, indexes) for each screen."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.store import Store


class Views:
    """Queries behind the TUI's screens; each refresh must stay well under 100 ms."""

    def __init__(self, store: Store) -> None:
        self.store = store

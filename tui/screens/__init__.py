"""The TUI's screens, one module each: the ``Screen`` and the view model it shows.

Each screen is a ``LiveScreen`` (``tui.screens.live``). Its view model is built in a worker
thread from the store's read models (``store.views``): display-ready rows and panels, no
widgets; cells and how they are written are ``tui.format``'s. A refresh of any screen is one
call to its module's view model; ``tests/bench/bench_tui.py`` times them against a store of
1,000 campaigns and 1,000,000 deliveries.
"""

from __future__ import annotations

from tui.screens.actions import CampaignActions
from tui.screens.campaign import CampaignScreen
from tui.screens.campaigns import CampaignsScreen
from tui.screens.live import LiveScreen
from tui.screens.logs import AuditScreen, EngineLogScreen
from tui.screens.queues import QueuesScreen
from tui.screens.sources import SourcesScreen
from tui.screens.suppressions import SuppressionsScreen

__all__ = [
    "AuditScreen",
    "CampaignActions",
    "CampaignScreen",
    "CampaignsScreen",
    "EngineLogScreen",
    "LiveScreen",
    "QueuesScreen",
    "SourcesScreen",
    "SuppressionsScreen",
]

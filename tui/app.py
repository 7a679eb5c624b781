"""The disparo terminal UI: a Textual app over the store, optionally running the engine.

The app receives its ``Backend`` (store, configuration, clock, role, actor) in its
constructor. Its four modes are the main screens; a campaign opens on top of the screen it
was chosen from. With ``engine`` the app runs the engine in its own event loop (``disparo tui
--engine``) and stops it cleanly on quit: in-flight sends finish, claims are released.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tui.backend import Backend
from tui.dialogs import TextDialog
from tui.screens import (
    AuditScreen,
    CampaignsScreen,
    EngineLogScreen,
    LiveScreen,
    QueuesScreen,
    SourcesScreen,
    SuppressionsScreen,
)

if TYPE_CHECKING:
    from engine.service import Engine

#: mode -> (screen, key, what the command palette says)
SCREENS: dict[str, tuple[type[LiveScreen], str, str]] = {
    "campaigns": (CampaignsScreen, "1", "Campaigns: every campaign, filter and sort"),
    "queues": (QueuesScreen, "2", "Queues: per sender account, rates, queue and guard"),
    "sources": (SourcesScreen, "3", "Sources: polls and the files they listed"),
    "suppressions": (SuppressionsScreen, "4", "Suppressions: search, add, remove"),
    "audit": (AuditScreen, "5", "Audit: who did what, when, newest first"),
}


class LogBuffer(logging.Handler):
    """Keeps the engine's last log lines for the log view (stderr belongs to the screen)."""

    def __init__(self, size: int = 2000) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log line must never break the UI
            self.handleError(record)


class DisparoApp(App[None]):
    """Campaigns, Queues, Sources and Suppressions, live from the store."""

    CSS_PATH = "disparo.tcss"
    TITLE = "disparo"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(key, f"show('{mode}')", screen.LABEL)
            for mode, (screen, key, _) in SCREENS.items()
        ),
        Binding("l", "log", "Engine log"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        backend: Backend,
        *,
        engine: Engine | None = None,
        log: LogBuffer | None = None,
        every: float = 1.0,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.engine = engine
        self.log_buffer = log
        self.every = every
        self.engine_worker: Worker[None] | None = None
        for mode, (screen, _, _) in SCREENS.items():
            self.add_mode(mode, self._factory(screen))

    def _factory(self, screen: type[LiveScreen]) -> Any:
        return lambda: screen(self.backend, self.every)

    async def on_mount(self) -> None:
        b = self.backend
        where = "engine in this process" if self.engine is not None else "store client"
        self.sub_title = f"{b.actor} · {b.role} · {where}"
        await self.switch_mode("campaigns")
        if self.engine is not None:
            self.engine_worker = self.run_worker(
                self.engine.run(), name="engine", group="engine", exit_on_error=False
            )

    def action_show(self, mode: str) -> None:
        self.switch_mode(mode)

    def action_log(self) -> None:
        """The engines' recent log records, from the store: of an engine in this process as
        of one elsewhere (``disparo run`` on this store)."""
        if not isinstance(self.screen, EngineLogScreen):
            self.push_screen(EngineLogScreen(self.backend, self.every))

    async def action_quit(self) -> None:
        """Stop the engine first (when it runs here), then leave."""
        await self.stop_engine()
        self.exit()

    async def stop_engine(self) -> None:
        if self.engine is None or self.engine_worker is None:
            return
        if not self.engine_worker.is_finished:
            self.notify("stopping the engine: in-flight messages finish…", timeout=10)
            self.engine.stop.set()
            await self.engine_worker.wait()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker is self.engine_worker and event.state == WorkerState.ERROR:
            self.push_screen(
                TextDialog(
                    "The engine stopped",
                    f"{type(event.worker.error).__name__}: {event.worker.error}\n\n"
                    "Its log is under `l`. The UI keeps showing the store.",
                    error=True,
                )
            )

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, (cls, key, text) in SCREENS.items():
            yield SystemCommand(f"Go to {cls.LABEL} ({key})", text, self._goto(mode))
        if isinstance(screen, LiveScreen):
            for title, help_text, callback in screen.palette():
                yield SystemCommand(title, help_text, callback)

    def _goto(self, mode: str) -> Any:
        return lambda: self.switch_mode(mode)

"""``LiveScreen``: a screen that loads its view model in a worker thread while it is shown.

It shows what it loaded and only then arms the next load, at most once a second, so the store
is never asked twice at once and the event loop never waits on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Header, Static
from textual.worker import Worker, WorkerState

from engine.actions import ActionRefused
from engine.sending.status import EnginesHeader, engines_header
from tui.backend import Backend, Refused
from tui.dialogs import FormDialog, TextDialog
from tui.format import engines_text
from tui.messages import ActionDone, Loaded
from tui.widgets import show_text

PaletteEntry = tuple[str, str, Callable[[], Any]]


class LiveScreen(Screen[None]):
    """A screen that loads its data from the store in a worker thread while it is shown."""

    #: what the screen is called in the header and the command palette
    LABEL = ""

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__()
        self.backend = backend
        self.every = every
        self.generation = 0
        self.loads = 0
        self._timer: Timer | None = None
        self._shown = False
        #: the engines running, as of the last load (read by ``fetch`` in the worker thread)
        self.engines: EnginesHeader | None = None
        self._bindings_state: object = None

    def compose_header(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("", id="engines", classes="engines")

    @property
    def engine_running(self) -> bool:
        """Does any engine run (as of the load being built)? Without one nothing is sent, so
        nothing is shown as in flight or projected (issue 11)."""
        return self.engines is None or self.engines.ok

    # -- loading -------------------------------------------------------------------------

    def params(self) -> Any:
        """What the next load depends on, read here on the event loop (filters, pages)."""
        return None

    def fetch(self, params: Any) -> Any:
        """Build the screen's model (runs in a worker thread)."""
        raise NotImplementedError

    def show(self, data: Any) -> None:
        """Put a model on screen (on the event loop)."""
        raise NotImplementedError

    def reload(self) -> None:
        """Load now (a newer load makes older ones stale) and re-arm afterwards."""
        self.generation += 1
        self._cancel_timer()
        self._load(self.generation, self.params())

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self, generation: int, params: Any) -> None:
        engines = engines_header(self.backend.store, self.backend.now())
        self.engines = engines
        data = self.fetch(params)
        self.post_message(Loaded(generation, data, engines))

    def on_loaded(self, message: Loaded) -> None:
        if message.generation != self.generation:
            return
        self.loads += 1
        if message.engines is not None:
            self.show_engines(message.engines)
        self.show(message.data)
        self.refresh_bindings()
        self._arm()

    def show_engines(self, engines: EnginesHeader) -> None:
        """The engines line under the header (rewritten only when its text changes)."""
        text, level = engines_text(self.backend, engines)
        bar = self.query_one("#engines", Static)
        show_text(bar, text)
        if bar.has_class("-none") != (level == "late"):
            bar.set_class(level == "late", "-none")

    def refresh_bindings(self) -> None:
        """Have the footer drawn again, only when what it would show changed (which of this
        screen's actions are allowed, what has the focus): redrawing it costs bytes on every
        SSH session, once a second."""
        state = (
            id(self.focused),
            tuple(self.check_action(b.action.split("(", 1)[0], ()) for b in self._bindings_list()),
        )
        if state == self._bindings_state:
            return
        self._bindings_state = state
        super().refresh_bindings()

    def _bindings_list(self) -> list[Binding]:
        return [b for b in self.BINDINGS if isinstance(b, Binding)]

    def _arm(self) -> None:
        self._cancel_timer()
        if self._shown:
            self._timer = self.set_timer(self.every, self.reload)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def on_screen_resume(self) -> None:
        self._shown = True
        self.sub_title = self.LABEL
        self.reload()

    def on_screen_suspend(self) -> None:
        self._shown = False
        self.generation += 1  # what is being loaded now is for nobody
        self._cancel_timer()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state != WorkerState.ERROR:
            return
        error = event.worker.error
        loading = event.worker.group == "load"
        if isinstance(error, Refused | ActionRefused):
            self.notify(str(error), title="Refused", severity="error")
            return
        # the dialog covers the screen, which stops loading; closing it loads again
        after = "Close this (Escape) to load the screen again." if loading else ""
        self.app.push_screen(
            TextDialog(
                "Could not load this screen" if loading else "The action failed",
                f"{type(error).__name__}: {error}\n\n{after}".rstrip(),
                error=True,
            )
        )

    # -- actions -------------------------------------------------------------------------

    def palette(self) -> Iterable[PaletteEntry]:
        """This screen's entries in the command palette (only what the role may do)."""
        return ()

    def ask(self, dialog: FormDialog, then: Callable[[dict[str, str]], object]) -> None:
        """Show ``dialog``; on OK, ``then(values)``."""

        def answered(values: dict[str, str] | None) -> None:
            if values is not None:
                then(values)

        self.app.push_screen(dialog, answered)

    def act(self, action: str, target: str, args: dict[str, Any] | None = None) -> None:
        """Submit an operator action (refused here when the role may not)."""
        if not self.backend.may(action):
            self.notify(self.backend.refusal(action), title="Refused", severity="error")
            return
        self.notify(f"{action} {target.replace(':', ' ', 1)}…", title="Submitted", timeout=2)
        self._act(action, target, dict(args or {}))

    @work(thread=True, group="act", exit_on_error=False)
    def _act(self, action: str, target: str, args: dict[str, Any]) -> None:
        outcome = self.backend.act(action, target, args)
        self.post_message(ActionDone(action, target, outcome))

    def on_action_done(self, message: ActionDone) -> None:
        outcome = message.outcome
        by = " (applied by the engine)" if outcome.by_engine else ""
        self.notify(
            outcome.message + by,
            title="Done" if outcome.ok else "Not done",
            severity="information" if outcome.ok else "error",
        )
        self.reload()

"""The screens: Campaigns, Campaign (one campaign), Queues, Sources and Suppressions.

Each is a ``LiveScreen``: while it is shown it loads its model (``tui.models``) in a worker
thread, shows it, and only then arms the next load, at most once a second, so the store is
never asked twice at once and the event loop never waits on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Header, Input, Sparkline, Static
from textual.worker import Worker, WorkerState

from engine.actions import CANCELLABLE, PAUSABLE, ActionRefused
from engine.store.suppressions import ORIGINS
from tui import models
from tui.backend import Backend, Refused
from tui.dialogs import Field, FormDialog, TextDialog, integer, required
from tui.messages import ActionDone, ExportDone, Loaded
from tui.widgets import LiveTable, PanelView

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

    def compose_header(self) -> ComposeResult:
        yield Header(icon="≡")

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
        data = self.fetch(params)
        self.post_message(Loaded(generation, data))

    def on_loaded(self, message: Loaded) -> None:
        if message.generation != self.generation:
            return
        self.loads += 1
        self.show(message.data)
        self.refresh_bindings()
        self._arm()

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


# -- campaign actions ------------------------------------------------------------------------

#: binding action -> (engine action, the statuses it applies to, or None for any)
CAMPAIGN_ACTIONS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "pause": ("pause", PAUSABLE),
    "resume": ("resume", ("paused",)),
    "cancel_campaign": ("cancel", CANCELLABLE),
    "priority": ("priority", None),
}
CAMPAIGN_BINDINGS: list[BindingType] = [
    Binding("p", "pause", "Pause"),
    Binding("r", "resume", "Resume"),
    Binding("c", "cancel_campaign", "Cancel"),
    Binding("P", "priority", "Priority"),
]


class CampaignActions(LiveScreen):
    """Pause, resume, cancel and priority on the selected campaign."""

    def selected_campaign(self) -> tuple[int, str, int] | None:
        """(id, status, priority) of the campaign the actions apply to."""
        return None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        spec = CAMPAIGN_ACTIONS.get(action)
        if spec is None:
            return True
        need, statuses = spec
        if not self.backend.may(need):
            return False  # hidden: this role may not
        selected = self.selected_campaign()
        if selected is None:
            return None
        if statuses is not None and selected[1] not in statuses:
            return None  # shown greyed: not for a campaign in this state
        return True

    def _target(self, action: str) -> tuple[int, str, int] | None:
        if not self.backend.may(action):
            self.notify(self.backend.refusal(action), title="Refused", severity="error")
            return None
        selected = self.selected_campaign()
        if selected is None:
            self.notify("select a campaign first", severity="warning")
        return selected

    def action_pause(self) -> None:
        selected = self._target("pause")
        if selected is None:
            return
        cid = selected[0]
        self.ask(
            FormDialog(
                f"Pause campaign {cid}?",
                "Sending stops within a second; messages already handed over finish. A resume "
                "shifts the pacing schedule by the time spent paused (D7).",
                [Field("reason", "Reason (optional, kept in the audit log)")],
                ok="Pause",
                danger=True,
            ),
            lambda values: self.act("pause", f"campaign:{cid}", {"reason": values["reason"]}),
        )

    def action_resume(self) -> None:
        selected = self._target("resume")
        if selected is not None:
            self.act("resume", f"campaign:{selected[0]}")

    def action_cancel_campaign(self) -> None:
        selected = self._target("cancel")
        if selected is None:
            return
        cid = selected[0]
        self.ask(
            FormDialog(
                f"Cancel campaign {cid}?",
                "Nothing more of it is sent: every recipient not handed over yet ends as "
                "cancelled. This cannot be undone.",
                [Field("reason", "Reason", check=required("a reason"))],
                ok="Cancel the campaign",
                danger=True,
            ),
            lambda values: self.act("cancel", f"campaign:{cid}", {"reason": values["reason"]}),
        )

    def action_priority(self) -> None:
        selected = self._target("priority")
        if selected is None:
            return
        cid, _, priority = selected
        self.ask(
            FormDialog(
                f"Priority of campaign {cid}",
                "Higher goes first on its account; it takes over at the next batch boundary (D11).",
                [Field("priority", "Priority", value=str(priority), check=integer)],
                ok="Set",
            ),
            lambda values: self.act(
                "priority", f"campaign:{cid}", {"priority": int(values["priority"])}
            ),
        )

    def palette(self) -> Iterable[PaletteEntry]:
        selected = self.selected_campaign()
        if selected is None:
            return
        cid, status, _ = selected
        entries: tuple[tuple[str, str, Callable[[], None]], ...] = (
            ("pause", "Pause", self.action_pause),
            ("resume", "Resume", self.action_resume),
            ("cancel_campaign", "Cancel", self.action_cancel_campaign),
            ("priority", "Change the priority of", self.action_priority),
        )
        for binding, title, run in entries:
            need, statuses = CAMPAIGN_ACTIONS[binding]
            if self.backend.may(need) and (statuses is None or status in statuses):
                yield f"{title} campaign {cid}", f"{need} (the campaign is {status})", run


# -- Campaigns -------------------------------------------------------------------------------

SORT_KEYS = [key for _, key in models.CAMPAIGN_COLUMNS]
#: what the Campaigns table's columns but the name take: their widths, padding, scrollbar
NAME_ROOM = 104


class CampaignsScreen(CampaignActions):
    """Every campaign, newest first: filter as you type, sort by any column."""

    LABEL = "Campaigns"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "filter", "Filter"),
        Binding("enter", "open", "Open"),
        Binding("s", "sort", "Sort"),
        Binding("S", "reverse", "Reverse"),
        *CAMPAIGN_BINDINGS,
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.sort = "id"
        self.descending = True
        self.campaigns: dict[int, tuple[str, int]] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Input(
            placeholder="Filter: name, wallet, channel, sender, status or id   ( / )",
            id="filter",
        )
        yield Static("", id="summary", classes="caption")
        yield LiveTable(models.CAMPAIGN_COLUMNS, id="campaigns")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#campaigns", LiveTable).focus()

    def params(self) -> Any:
        # the name column takes what the other columns leave of the screen's width
        width = max(24, self.size.width - NAME_ROOM)
        return (self.query_one("#filter", Input).value, self.sort, self.descending, width)

    def fetch(self, params: Any) -> models.CampaignList:
        text, sort, descending, width = params
        return models.campaign_list(self.backend, text, sort, descending, width)

    def show(self, data: models.CampaignList) -> None:
        self.campaigns = data.campaigns
        self.query_one("#campaigns", LiveTable).show(data.rows)
        arrow = "↓" if self.descending else "↑"
        shown = len(data.rows)
        scope = f"{shown:,} campaigns" if shown == data.total else f"{shown:,} of {data.total:,}"
        self.query_one("#summary", Static).update(Text(f"{scope} · sorted by {self.sort} {arrow}"))

    def selected_campaign(self) -> tuple[int, str, int] | None:
        key = self.query_one("#campaigns", LiveTable).selected_key
        if key is None:
            return None
        cid = int(key)
        status, priority = self.campaigns.get(cid, ("", 0))
        return cid, status, priority

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#filter")
    def filter_done(self) -> None:
        self.query_one("#campaigns", LiveTable).focus()

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_sort(self) -> None:
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]
        self.reload()

    def action_reverse(self) -> None:
        self.descending = not self.descending
        self.reload()

    @on(DataTable.HeaderSelected, "#campaigns")
    def header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort:
            self.descending = not self.descending
        else:
            self.sort = key
        self.reload()

    @on(DataTable.RowHighlighted, "#campaigns")
    def highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#campaigns")
    def action_open(self) -> None:
        selected = self.selected_campaign()
        if selected is not None:
            self.app.push_screen(CampaignScreen(self.backend, selected[0], self.every))

    def key_escape(self) -> None:
        self.query_one("#campaigns", LiveTable).focus()


# -- one campaign ----------------------------------------------------------------------------


class CampaignScreen(CampaignActions):
    """One campaign: totals, pacing timeline, deadline, sends per minute, its recipients."""

    LABEL = "Campaign"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("n", "next_page", "Next page"),
        Binding("b", "previous_page", "Prev. page"),
        Binding("e", "export", "Export CSV"),
        *CAMPAIGN_BINDINGS,
    ]

    def __init__(self, backend: Backend, campaign_id: int, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.campaign_id = campaign_id
        self.cache = models.DetailCache()
        #: the page shown: recipients after this position (None: from the first)
        self.after: int | None = None
        self.before: int | None = None
        self.detail: models.CampaignDetail | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="title", classes="caption")
        with Horizontal(id="panels"):
            yield PanelView(id="totals", classes="panel")
            yield PanelView(id="deadline", classes="panel")
            with Vertical(id="sends", classes="panel"):
                yield Sparkline([], id="spark")
                yield Static("", id="spark-caption")
        yield Static("", id="pacing", classes="caption")
        yield LiveTable(
            (
                ("Batch", "batch"),
                ("Size", "size"),
                ("Release", "release"),
                ("Done", "done"),
                ("State", "state"),
            ),
            id="timeline",
        )
        yield Static("", id="recipients-caption", classes="caption")
        yield LiveTable(models.RECIPIENT_COLUMNS, id="recipients")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#totals").border_title = "Totals"
        self.query_one("#deadline").border_title = "Deadline"
        self.query_one("#sends").border_title = "Sends per minute"
        self.query_one("#recipients", LiveTable).focus()

    def params(self) -> Any:
        return (self.after, self.before)

    def fetch(self, params: Any) -> models.CampaignDetail | None:
        after, before = params
        return models.campaign_detail(
            self.backend, self.campaign_id, self.cache, after=after, before=before
        )

    def show(self, data: models.CampaignDetail | None) -> None:
        if data is None:
            self.notify(f"campaign {self.campaign_id} is gone", severity="error")
            self.dismiss()
            return
        self.detail = data
        # keep showing this page on the next refreshes
        self.before = None
        self.after = None if not data.first_position else data.first_position - 1
        c = data.campaign
        self.sub_title = data.title
        status = c.status + (f" — {c.status_reason}" if c.status_reason else "")
        title = Text(status, style="bold")
        title.append(
            f"  ·  priority {c.priority} · wallet {c.wallet or '-'} · {c.channel} · "
            f"account {c.account or '-'}"
        )
        self.query_one("#title", Static).update(title)
        self.query_one("#totals", PanelView).show(data.totals)
        self.query_one("#deadline", PanelView).show(data.deadline)
        self.query_one("#spark", Sparkline).data = data.spark
        self.query_one("#spark-caption", Static).update(Text(data.spark_caption))
        self.query_one("#pacing", Static).update(Text(data.pacing))
        self.query_one("#timeline", LiveTable).show(data.timeline)
        self.query_one("#recipients-caption", Static).update(
            Text(f"{data.recipients_caption}   (n next page, b previous, e export CSV)")
        )
        self.query_one("#recipients", LiveTable).show(data.recipients)

    def selected_campaign(self) -> tuple[int, str, int] | None:
        if self.detail is None:
            return None
        c = self.detail.campaign
        return c.id, c.status, c.priority

    def action_back(self) -> None:
        self.dismiss()

    def action_next_page(self) -> None:
        if self.detail is None or self.detail.last_position is None:
            return
        if self.detail.last_position + 1 >= self.detail.campaign.recipients:
            self.notify("this is the last page", timeout=2)
            return
        self.after, self.before = self.detail.last_position, None
        self.reload()

    def action_previous_page(self) -> None:
        if self.detail is None or not self.detail.first_position:
            self.notify("this is the first page", timeout=2)
            return
        self.after, self.before = None, self.detail.first_position
        self.reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "export":
            return self.backend.may("export")
        return super().check_action(action, parameters)

    def action_export(self) -> None:
        if not self.backend.may("export"):
            self.notify(self.backend.refusal("export"), title="Refused", severity="error")
            return
        cid = self.campaign_id
        self.ask(
            FormDialog(
                f"Export the recipients of campaign {cid}",
                "Every recipient (D17) as CSV (;-separated, UTF-8); cells a spreadsheet would "
                "run as formulas are made safe.",
                [
                    Field(
                        "path",
                        "File",
                        value=f"campaign-{cid}-recipients.csv",
                        check=_writable,
                    )
                ],
                ok="Export",
            ),
            lambda values: self._export(Path(values["path"])),
        )

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, target: Path) -> None:
        rows = models.export_recipients(self.backend, self.campaign_id, target)
        self.post_message(ExportDone(str(target), rows))

    def on_export_done(self, message: ExportDone) -> None:
        self.notify(f"{message.rows:,} recipients written to {message.path}", title="Exported")

    def palette(self) -> Iterable[PaletteEntry]:
        yield from super().palette()
        if self.backend.may("export"):
            yield (
                f"Export the recipients of campaign {self.campaign_id}",
                "CSV, formula-safe",
                self.action_export,
            )


def _writable(value: str) -> str | None:
    if not value:
        return "a file name is required"
    path = Path(value).expanduser().resolve()
    if not path.parent.is_dir():
        return f"the folder {path.parent} does not exist"
    if path.exists():
        return f"{path} exists: an export never overwrites a file, choose another name"
    return None


# -- Queues ----------------------------------------------------------------------------------


class QueuesScreen(CampaignActions):
    """Per sender account: rates, in flight, queue, guard; the selected account's queue."""

    LABEL = "Queues"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        *CAMPAIGN_BINDINGS,
        Binding("o", "override", "Override guard"),
        Binding("u", "clear_override", "Clear override"),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.data: models.Queues | None = None
        self.account: str | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("Sender accounts", classes="caption")
        yield LiveTable(models.ACCOUNT_COLUMNS, id="accounts")
        yield Static("", id="queue-caption", classes="caption")
        yield LiveTable(models.QUEUE_COLUMNS, id="queue")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#accounts", LiveTable).focus()

    def fetch(self, params: Any) -> models.Queues:
        return models.queues(self.backend)

    def show(self, data: models.Queues) -> None:
        self.data = data
        accounts = self.query_one("#accounts", LiveTable)
        accounts.show(data.accounts)
        self._show_queue()

    def _show_queue(self) -> None:
        if self.data is None:
            return
        self.account = self.query_one("#accounts", LiveTable).selected_key
        rows = self.data.queues.get(self.account or "", [])
        self.query_one("#queue-caption", Static).update(
            Text(
                f"Queue of {self.account}: the campaign it sends now, then the ones waiting by "
                "priority (D11)"
                if self.account
                else "No sender account configured"
            )
        )
        self.query_one("#queue", LiveTable).show(rows)
        self.refresh_bindings()

    @on(DataTable.RowHighlighted, "#accounts")
    def account_highlighted(self) -> None:
        if self.query_one("#accounts", LiveTable).selected_key != self.account:
            self._show_queue()

    @on(DataTable.RowHighlighted, "#queue")
    def queue_highlighted(self) -> None:
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#accounts")
    def account_selected(self) -> None:
        self.query_one("#queue", LiveTable).focus()

    @on(DataTable.RowSelected, "#queue")
    def action_open(self) -> None:
        if self.focused is self.query_one("#accounts", LiveTable):
            self.query_one("#queue", LiveTable).focus()  # Enter on an account: to its queue
            return
        selected = self.selected_campaign()
        if selected is not None:
            self.app.push_screen(CampaignScreen(self.backend, selected[0], self.every))

    def selected_campaign(self) -> tuple[int, str, int] | None:
        if self.data is None:
            return None
        key = self.query_one("#queue", LiveTable).selected_key
        if key is None:
            return None
        cid = int(key)
        status, priority = self.data.campaigns.get(cid, ("", 0))
        return cid, status, priority

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("override", "clear_override"):
            need = "override" if action == "override" else "clear-override"
            if not self.backend.may(need):
                return False
            if self.account is None or self.data is None:
                return None
            if action == "clear_override" and not self.data.overridden.get(self.account):
                return None
            return True
        return super().check_action(action, parameters)

    def action_override(self) -> None:
        if not self.backend.may("override"):
            self.notify(self.backend.refusal("override"), title="Refused", severity="error")
            return
        name = self.account
        if name is None:
            return
        self.ask(
            FormDialog(
                f"Override the guard of {name}?",
                "The account keeps sending whatever its bounce and complaint rates (D16). The "
                "override, who made it and why are recorded and shown.",
                [Field("reason", "Reason (required)", check=required("a reason"))],
                ok="Override",
                danger=True,
            ),
            lambda values: self.act("override", f"account:{name}", {"reason": values["reason"]}),
        )

    def action_clear_override(self) -> None:
        if not self.backend.may("clear-override"):
            self.notify(self.backend.refusal("clear-override"), title="Refused", severity="error")
            return
        name = self.account
        if name is None:
            return
        self.ask(
            FormDialog(
                f"Clear the guard override of {name}?",
                "The guard applies again at its next check (every 5 minutes).",
                [Field("reason", "Reason (optional)")],
                ok="Clear",
                danger=True,
            ),
            lambda values: self.act(
                "clear-override", f"account:{name}", {"reason": values["reason"]}
            ),
        )

    def palette(self) -> Iterable[PaletteEntry]:
        yield from super().palette()
        if self.account is None:
            return
        if self.backend.may("override"):
            yield (
                f"Override the guard of {self.account}",
                "admin, with a reason (D16)",
                self.action_override,
            )
        if (
            self.backend.may("clear-override")
            and self.data
            and self.data.overridden.get(self.account)
        ):
            yield f"Clear the guard override of {self.account}", "admin", self.action_clear_override


# -- Sources ---------------------------------------------------------------------------------


class SourcesScreen(LiveScreen):
    """Each source's schedule and poll state; the files the selected one listed."""

    LABEL = "Sources"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "report", "Report"),
        Binding("v", "report", "Report", show=False),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.data: models.Sources | None = None
        self.source: str | None = None
        self._where: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("Sources", classes="caption")
        yield LiveTable(models.SOURCE_COLUMNS, id="sources")
        yield Static("", id="files-caption", classes="caption")
        yield LiveTable(models.FILE_COLUMNS, id="files")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#sources", LiveTable).focus()

    def params(self) -> Any:
        return self.source

    def describe(self, name: str) -> str:
        """Where a source reads (its plugin's description), worked out once."""
        if name not in self._where:
            settings = self.backend.config.sources[name]
            text = settings.kind
            plugins = self.backend.plugins
            if plugins is not None and settings.kind in plugins.source_kinds():
                try:
                    text = plugins.source_kinds()[settings.kind](settings).describe()
                except Exception as exc:  # a broken plugin must not break the screen
                    text = f"{settings.kind} ({exc})"
            # paths under the configuration's folder read better (and alike everywhere) relative
            self._where[name] = text.replace(f"{self.backend.config.root}/", "")
        return self._where[name]

    def fetch(self, params: Any) -> models.Sources:
        return models.sources(self.backend, params, self.describe)

    def show(self, data: models.Sources) -> None:
        self.data = data
        self.query_one("#sources", LiveTable).show(data.sources)
        self.source = data.source
        self.query_one("#files-caption", Static).update(
            Text(
                f"Files seen on {data.source}, newest first (Enter: the report)"
                if data.source
                else "No source configured"
            )
        )
        self.query_one("#files", LiveTable).show(data.files)

    @on(DataTable.RowHighlighted, "#sources")
    def source_highlighted(self) -> None:
        key = self.query_one("#sources", LiveTable).selected_key
        if key is not None and key != self.source:
            self.source = key
            self.reload()

    @on(DataTable.RowSelected, "#sources")
    def source_selected(self) -> None:
        self.query_one("#files", LiveTable).focus()

    @on(DataTable.RowSelected, "#files")
    def action_report(self) -> None:
        if self.focused is self.query_one("#sources", LiveTable):
            self.query_one("#files", LiveTable).focus()  # Enter on a source: to its files
            return
        path = self.query_one("#files", LiveTable).selected_key
        if path is None or self.data is None or path not in self.data.observations:
            self.notify("select a file first", severity="warning")
            return
        self._report(self.data.observations[path])

    @work(thread=True, group="report", exit_on_error=False)
    def _report(self, observation: Any) -> None:
        text = models.file_report(self.backend, observation)
        self.app.call_from_thread(self.app.push_screen, TextDialog(observation.path, text))

    def palette(self) -> Iterable[PaletteEntry]:
        path = self.query_one("#files", LiveTable).selected_key
        if path is not None:
            yield f"Report of {path}", "status, why, the ledger entry", self.action_report


# -- Suppressions ----------------------------------------------------------------------------


class SuppressionsScreen(LiveScreen):
    """Addresses never sent to (D4): search, filter by origin, add, remove."""

    LABEL = "Suppressions"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("slash", "search", "Search"),
        Binding("f", "origin", "Origin"),
        Binding("a", "add", "Add"),
        Binding("d", "remove", "Remove"),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.origin: str | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Input(placeholder="Search: part of an address   ( / )", id="search")
        yield Static("", id="counts", classes="caption")
        yield LiveTable(models.SUPPRESSION_COLUMNS, id="suppressions")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#suppressions", LiveTable).focus()

    def params(self) -> Any:
        return (self.query_one("#search", Input).value, self.origin)

    def fetch(self, params: Any) -> models.SuppressionList:
        text, origin = params
        return models.suppression_list(self.backend, text, origin)

    def show(self, data: models.SuppressionList) -> None:
        counts = Text()
        for origin, n in data.counts.items():
            style = "bold reverse" if origin == data.origin else ""
            counts.append(f" {origin} {n:,} ", style=style)
            counts.append(" ")
        counts.append(f"  showing: {data.origin or 'every origin'} (f)", style="italic")
        self.query_one("#counts", Static).update(counts)
        self.query_one("#suppressions", LiveTable).show(data.rows)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "add":
            return self.backend.may("suppress")
        if action == "remove":
            if not self.backend.may("unsuppress"):
                return False
            return None if self.query_one("#suppressions", LiveTable).selected_key is None else True
        return True

    @on(Input.Changed, "#search")
    def search_changed(self) -> None:
        self.reload()

    @on(Input.Submitted, "#search")
    def search_done(self) -> None:
        self.query_one("#suppressions", LiveTable).focus()

    @on(DataTable.RowHighlighted, "#suppressions")
    def highlighted(self) -> None:
        self.refresh_bindings()

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_origin(self) -> None:
        order: list[str | None] = [None, *ORIGINS]
        self.origin = order[(order.index(self.origin) + 1) % len(order)]
        self.reload()

    def action_add(self) -> None:
        if not self.backend.may("suppress"):
            self.notify(self.backend.refusal("suppress"), title="Refused", severity="error")
            return
        self.ask(
            FormDialog(
                "Suppress an address",
                "Nothing is sent to it again, on any campaign (D4).",
                [
                    Field(
                        "address",
                        "E-mail or phone number",
                        placeholder="ana@example.com or (11) 99999-0000",
                        check=required("an address"),
                    ),
                    Field("reason", "Reason (optional)"),
                ],
                ok="Suppress",
            ),
            lambda values: self.act(
                "suppress", f"address:{values['address']}", {"reason": values["reason"]}
            ),
        )

    def action_remove(self) -> None:
        if not self.backend.may("unsuppress"):
            self.notify(self.backend.refusal("unsuppress"), title="Refused", severity="error")
            return
        key = self.query_one("#suppressions", LiveTable).selected_key
        if key is None:
            self.notify("select a suppression first", severity="warning")
            return
        address = key.split(":", 1)[1]
        self.ask(
            FormDialog(
                f"Send to {address} again?",
                "The suppression is lifted; the audit log keeps what it was and why it was lifted.",
                [Field("reason", "Reason (required)", check=required("a reason"))],
                ok="Remove the suppression",
                danger=True,
            ),
            lambda values: self.act(
                "unsuppress", f"address:{address}", {"reason": values["reason"]}
            ),
        )

    def palette(self) -> Iterable[PaletteEntry]:
        if self.backend.may("suppress"):
            yield "Suppress an address", "never send to it again (D4)", self.action_add
        key = self.query_one("#suppressions", LiveTable).selected_key
        if key is not None and self.backend.may("unsuppress"):
            yield (
                f"Remove the suppression of {key.split(':', 1)[1]}",
                "with a reason",
                self.action_remove,
            )

"""The Sources screen: each source's poll state, the files it listed, a file's report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Footer, Static

from engine.publish.service import Publishing
from engine.store.files import Observation
from tui.backend import Backend
from tui.dialogs import TextDialog
from tui.format import Cell, Row, Styled, until, when
from tui.screens.live import LiveScreen, PaletteEntry
from tui.widgets import LiveTable, show_text

# -- the view model --------------------------------------------------------------------------

SOURCE_COLUMNS = (
    ("Source", "name"),
    ("Kind", "kind"),
    ("Schedule", "schedule"),
    ("Last poll", "last"),
    ("Next poll", "next"),
    ("Connection", "status"),
    ("Files", "files"),
    ("Where", "where"),
)
#: what the selected source's publishers wrote back to it (a list sync's exports, S2)
PUBLICATION_COLUMNS = (
    ("File", "path"),
    ("Publisher", "publisher"),
    ("Status", "status"),
    ("When", "when"),
    ("Size", "size"),
)
FILE_COLUMNS = (
    ("File", "path"),
    ("Size", "size"),
    ("First seen", "first"),
    ("Last seen", "last"),
    ("Status", "status"),
    ("Why", "why"),
)
#: what the collector's statuses mean to an operator (F8, N5, F10)
FILE_STATUS = {
    "new": "new (seen once)",
    "unstable": "still changing",
    "waiting": "waiting for its day",
    "incomplete": "waiting for its send's files",
    "imported": "imported",
    "rejected": "rejected",
    "duplicate": "duplicate",
    "not-mailing": "not a mailing",
    "not-triplet": "not a send's file",
    "result": "a result file",
    "companion": "with its file",
    "error": "error",
    "importing": "importing",
    "not-matching": "not a list file",
    "export": "an export",
}
FILE_STYLE = {
    "imported": "level--ok",
    "rejected": "level--late",
    "error": "level--late",
    "duplicate": "level--warn",
    "unstable": "level--warn",
    "waiting": "status--scheduled",
    "incomplete": "status--scheduled",
}


@dataclass(frozen=True)
class Sources:
    sources: list[Row]
    files: list[Row]
    #: path -> the observation, for the report view
    observations: dict[str, Observation]
    source: str | None
    #: what the selected source's publishers wrote back (newest first)
    publications: list[Row] = field(default_factory=list)
    #: the caption over them (None: the source publishes nothing: they are hidden)
    publishing: str | None = None


def sources(backend: Backend, selected: str | None, describe: Callable[[str], str]) -> Sources:
    """The Sources screen: the configured sources with their poll state, and the files the
    selected one listed (newest first)."""
    store = backend.store
    now = backend.now()
    states = store.files.source_states()
    counts = store.views.file_counts()
    names = list(backend.config.sources) + sorted(
        s for s in states if s not in backend.config.sources
    )
    rows: list[Row] = []
    for name in names:
        settings = backend.config.sources.get(name)
        st = states.get(name)
        if st is None:
            status: Cell = Styled("never polled", "muted")
        elif st.status == "ok":
            status = Styled("ok", "level--ok")
        else:
            status = Styled(f"{st.status}: {st.message or ''}".strip(": "), "level--late")
        if settings is not None and not settings.enabled:
            status = Styled("disabled", "muted")
        files = counts.get(name, {})
        rows.append(
            (
                name,
                (
                    name,
                    settings.kind if settings else "-",
                    settings.schedule.describe() if settings else "-",
                    when(backend, st.last_poll_at, "%d/%m %H:%M:%S") if st else "-",
                    _next_poll(backend, st.next_poll_at if st else None, now),
                    status,
                    ", ".join(f"{n} {s}" for s, n in sorted(files.items())) or "none",
                    describe(name) if settings else "not configured",
                ),
            )
        )
    source = selected if selected in names else (names[0] if names else None)
    seen = store.views.files_seen(source) if source else []
    file_rows: list[Row] = [
        (
            f.path,
            (
                f.path,
                f"{f.size:,}",
                when(backend, f.first_seen_at, "%d/%m %H:%M"),
                when(backend, f.last_seen_at, "%d/%m %H:%M"),
                Styled(FILE_STATUS.get(f.status, f.status), FILE_STYLE.get(f.status, "")),
                (f.message or "").splitlines()[0] if f.message else "",
            ),
        )
        for f in seen
    ]
    publications, publishing = _publications(backend, source)
    return Sources(rows, file_rows, {f.path: f for f in seen}, source, publications, publishing)


def _publications(backend: Backend, source: str | None) -> tuple[list[Row], str | None]:
    """The selected source's publications (a list sync's exports, S2), newest first, and the
    caption: when the next falls due."""
    settings = backend.config.sources.get(source) if source else None
    found = backend.store.publications.recent(20, source=source) if source else []
    if source is None or (not found and not (settings and settings.publish)):
        return [], None
    rows: list[Row] = []
    for p in found:
        pending = p.status != "published"
        rows.append(
            (
                str(p.id),
                (
                    p.path,
                    p.publisher,
                    Styled("waiting: retried every minute", "level--warn")
                    if pending
                    else Styled("published", "level--ok"),
                    when(backend, p.planned_at if pending else p.published_at, "%d/%m %H:%M"),
                    f"{p.size:,}" if p.size is not None else "",
                ),
            )
        )
    upcoming = []
    if settings is not None and backend.plugins is not None and settings.enabled:
        from engine.publish.service import Publishing

        publishing = Publishing(backend.store, backend.plugins, backend.config, backend.clock)
        try:
            upcoming = [
                at
                for p in publishing.publishers(settings)
                if (at := p.next_due(backend.now())) is not None
            ]
        except Exception:  # a broken plugin must not break the screen
            upcoming = []
    caption = f"Written back to {source} (exports, results), newest first"
    if upcoming:
        caption += f"; next: {when(backend, min(upcoming), '%d/%m %H:%M')}"
    return rows, caption


def _next_poll(backend: Backend, at: datetime | None, now: datetime) -> str:
    if at is None:
        return "-"
    return f"{when(backend, at, '%H:%M:%S')} ({until(now, at)})"


def file_report(backend: Backend, o: Observation) -> str:
    """What the operator sees for one listed file: its status, why, and the ledger entry
    (for a rejected file, what the published ``.erro.txt`` says)."""
    lines = [
        f"File: {o.path}",
        f"Source: {o.source}",
        f"Size: {o.size:,} bytes",
        f"First seen: {when(backend, o.first_seen_at, '%d/%m/%Y %H:%M:%S')}",
        f"Last seen: {when(backend, o.last_seen_at, '%d/%m/%Y %H:%M:%S')} "
        f"(the same on {o.stable_listings} listing(s))",
        f"Status: {FILE_STATUS.get(o.status, o.status)}" + (f" [{o.code}]" if o.code else ""),
    ]
    if o.message:
        lines += ["", "What was wrong and how to fix it:"]
        lines += [f"  - {line}" for line in o.message.splitlines()]
    if o.file_id is not None:
        entry = backend.store.files.get(o.file_id)
        if entry is not None:
            lines += [
                "",
                f"Ledger entry #{entry.id}: {entry.outcome} on "
                f"{when(backend, entry.created_at, '%d/%m/%Y %H:%M:%S')}",
                f"SHA-256: {entry.sha256 or '-'}",
            ]
            if entry.outcome == "rejected":
                settings = backend.config.sources.get(o.source)
                folder = settings.rejected_dir if settings else "rejected"
                stem = o.path.rsplit(".", 1)[0]
                lines.append(f"Report published as {folder}/{stem}.erro.txt")
            lines += _results(backend, o.source, entry.id)
    return "\n".join(lines)


def _results(backend: Backend, source: str, file_id: int) -> list[str]:
    """The campaign an imported file made and its result files: when due, what was
    published and when (the publishers' own account, T8)."""
    settings = backend.config.sources.get(source)
    if settings is None or backend.plugins is None:
        return []
    publishing = Publishing(backend.store, backend.plugins, backend.config, backend.clock)
    found = next(
        (r for r in publishing.overview(settings, limit=500) if r.file_id == file_id), None
    )
    if found is None:
        return []
    lines = ["", f"Campaign #{found.campaign_id} ({found.campaign}): {found.status}"]
    if found.owed:
        due = (
            when(backend, found.due_at, "%d/%m/%Y %H:%M")
            if found.due_at
            else "when the campaign ends"
        )
        lines.append(f"Results due: {due} ({found.owed} file(s))")
    if found.published:
        at = when(backend, found.published_at, "%d/%m/%Y %H:%M")
        lines.append(f"Results published {at}:")
        lines += [f"  - {path}" for path in found.published]
    return lines


# -- the screen ------------------------------------------------------------------------------


class SourcesScreen(LiveScreen):
    """Each source's schedule and poll state; the files the selected one listed."""

    LABEL = "Sources"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "report", "Report"),
        Binding("v", "report", "Report", show=False),
    ]

    def __init__(self, backend: Backend, every: float = 1.0) -> None:
        super().__init__(backend, every)
        self.data: Sources | None = None
        self.source: str | None = None
        self._where: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("Sources", classes="caption")
        yield LiveTable(SOURCE_COLUMNS, id="sources")
        yield Static("", id="publications-caption", classes="caption")
        yield LiveTable(PUBLICATION_COLUMNS, id="publications")
        yield Static("", id="files-caption", classes="caption")
        yield LiveTable(FILE_COLUMNS, id="files")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#sources", LiveTable).focus()
        for name in ("#publications-caption", "#publications"):
            self.query_one(name).display = False

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

    def fetch(self, params: Any) -> Sources:
        return sources(self.backend, params, self.describe)

    def show(self, data: Sources) -> None:
        self.data = data
        self.query_one("#sources", LiveTable).show(data.sources)
        self.source = data.source
        show_text(
            self.query_one("#files-caption", Static),
            Text(
                f"Files seen on {data.source}, newest first (Enter: the report)"
                if data.source
                else "No source configured"
            ),
        )
        self.query_one("#files", LiveTable).show(data.files)
        shown = data.publishing is not None
        show_text(self.query_one("#publications-caption", Static), Text(data.publishing or ""))
        caption = self.query_one("#publications-caption")
        if caption.display != shown:  # setting it, even unchanged, repaints
            caption.display = shown
        publications = self.query_one("#publications", LiveTable)
        if publications.display != shown:
            publications.display = shown
        publications.show(data.publications)

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
        text = file_report(self.backend, observation)
        self.app.call_from_thread(self.app.push_screen, TextDialog(observation.path, text))

    def palette(self) -> Iterable[PaletteEntry]:
        path = self.query_one("#files", LiveTable).selected_key
        if path is not None:
            yield f"Report of {path}", "status, why, the ledger entry", self.action_report

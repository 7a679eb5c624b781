"""The Campaign screen: one campaign's totals, pacing, deadline, sends per minute, recipients."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Sparkline, Static

from engine.campaign import Campaign
from engine.schedule import Batch, Schedule
from engine.sending.status import campaign_schedule, campaign_trouble
from engine.store.results import RecipientResult
from tui.backend import Backend
from tui.dialogs import Field, FormDialog
from tui.export import check_name, default_name, export_name, write_export
from tui.format import (
    NOT_SENDING,
    RATE_WINDOW,
    Cell,
    Panel,
    Row,
    Styled,
    bar,
    clock_time,
    rate_text,
    span,
    status_cell,
    until,
    when,
)
from tui.messages import ExportDone
from tui.screens.actions import CAMPAIGN_BINDINGS, CampaignActions
from tui.screens.live import PaletteEntry
from tui.widgets import LiveTable, PanelView, show_text

# -- the view model --------------------------------------------------------------------------

#: the sparkline: sends per minute over this many minutes
SPARK_MINUTES = 60
RECIPIENTS_PAGE = 100


@dataclass
class DetailCache:
    """What a campaign's screen keeps between refreshes: sends of minutes long past (they
    never change once counted)."""

    minutes: dict[tuple[int, datetime], int] = field(default_factory=dict)


@dataclass(frozen=True)
class CampaignDetail:
    campaign: Campaign
    #: the one schedule (``engine.schedule``), as ``campaign show`` computes it
    schedule: Schedule
    title: str
    totals: Panel
    deadline: Panel
    pacing: str
    timeline: list[Row]
    spark: list[float]
    spark_caption: str
    recipients: list[Row]
    first_position: int | None
    last_position: int | None
    recipients_caption: str
    #: why it is not done: held, its account paused, its errors by reason, retries waiting
    trouble: str = ""
    #: the batch the pacing table scrolls to: the first that expires, else the one sending
    focus_batch: int | None = None


def sends_per_minute(
    backend: Backend, campaign_id: int, now: datetime, cache: DetailCache
) -> tuple[list[int], int]:
    """Sends in each of the last ``SPARK_MINUTES`` minutes (the last one running), and in the
    last 60 seconds. Minutes that ended over two minutes ago are cached: only the newest
    windows are counted again, so a refresh reads a minute or two of events."""
    current = now.replace(second=0, microsecond=0)
    starts = [current - timedelta(minutes=SPARK_MINUTES - 1 - i) for i in range(SPARK_MINUTES)]
    stable = now - timedelta(minutes=2)
    wanted = [
        s
        for s in starts
        if (campaign_id, s) not in cache.minutes or s + timedelta(minutes=1) > stable
    ]
    windows = [(s, min(s + timedelta(minutes=1), now)) for s in wanted]
    windows.append((now - RATE_WINDOW, now))
    counts = backend.store.views.sends_in(windows, campaign_id=campaign_id)
    for s, n in zip(wanted, counts, strict=False):
        if s + timedelta(minutes=1) <= stable:
            cache.minutes[(campaign_id, s)] = n
    for key in [k for k in cache.minutes if k[0] == campaign_id and k[1] < starts[0]]:
        del cache.minutes[key]  # out of the window: a long session keeps an hour at most
    fresh = dict(zip(wanted, counts, strict=False))
    per_minute = [fresh.get(s, cache.minutes.get((campaign_id, s), 0)) for s in starts]
    return per_minute, counts[-1]


def campaign_detail(
    backend: Backend,
    campaign_id: int,
    cache: DetailCache,
    *,
    after: int | None = None,
    before: int | None = None,
    page: int = RECIPIENTS_PAGE,
    running: bool = True,
) -> CampaignDetail | None:
    """The Campaign screen: the campaign row (its counters), the batch seeks, a minute or
    two of events, and one page of recipients. Without a ``running`` engine nothing is
    projected (no finish, no "sending"): the screen says nothing is being sent."""
    store = backend.store
    now = backend.now()
    c = store.campaigns.get(campaign_id, content=False)
    if c is None:
        return None
    per_minute, last_minute = sends_per_minute(backend, c.id, now, cache)
    k = c.counters
    totals = Panel(
        [
            ("Status", status_cell(c.status)),
            ("Recipients", f"{c.recipients:,}"),
            ("Sent", f"{k.get('sent', 0):,}"),
            ("Remaining", f"{c.remaining:,}"),
            ("Read", f"{k.get('opened', 0):,}"),
            ("Cancelled", f"{k.get('cancelled', 0):,}"),
            ("Unsubscribed", f"{k.get('unsubscribed', 0):,}"),
            ("Bounces", f"{k.get('bounced', 0):,}"),
            ("Errors", f"{k.get('failed', 0):,}"),
            ("Clicks unique/total", f"{k.get('clicked', 0):,} / {k.get('clicks', 0):,}"),
            ("Suppressed/skipped", f"{k.get('suppressed', 0):,} / {k.get('skipped', 0):,}"),
            ("Expired", f"{k.get('expired', 0):,}"),
        ]
    )
    measured = last_minute / RATE_WINDOW.total_seconds()
    use_measured = c.status == "sending" and measured > 0
    schedule = campaign_schedule(
        store, backend.config, c, now, rate=measured if use_measured else None
    )
    deadline = deadline_panel(backend, c, now, schedule, measured=use_measured, running=running)
    released = schedule.released
    batches = schedule.batches
    first_open = min((b.index for b in batches if b.index <= released and b.open), default=None)
    timeline: list[Row] = []
    for b in batches:
        state = batch_state(c, b, released, first_open, now, running=running)
        same_day = backend.local(b.release_at).date() == backend.local(now).date()
        release = when(backend, b.release_at, "%H:%M:%S" if same_day else "%d/%m %H:%M")
        timeline.append(
            (
                str(b.index),
                (
                    str(b.index),
                    f"{b.size:,}",
                    release,
                    f"{bar(b.done, b.size)} {b.done:,}/{b.size:,}",
                    state,
                ),
            )
        )
    next_release = schedule.next_release
    pacing = pacing_text(c, schedule)
    if c.status in ("completed", "cancelled", "expired"):
        pacing += f" · finished {when(backend, c.finished_at)}"
    elif now < c.start_at:
        pacing += f" · starts {when(backend, c.start_at)} ({until(now, c.start_at)})"
    elif next_release is not None:
        pacing += (
            f" · next release: batch {next_release.index} at "
            f"{when(backend, next_release.release_at, '%H:%M:%S')} "
            f"({until(now, next_release.release_at)})"
        )
    rows = store.results.page(c.id, after=after, before=before, limit=page)
    peak = max(per_minute) if per_minute else 0
    first = rows[0].position if rows else None
    last = rows[-1].position if rows else None
    caption = (
        f"Recipients {first + 1:,}–{last + 1:,} of {c.recipients:,}"
        if first is not None and last is not None
        else f"Recipients: none here (of {c.recipients:,})"
    )
    title = f"Campaign {c.id} · {c.name}"
    late = [
        b.index
        for b in batches
        if b.index > released and c.deadline is not None and b.release_at >= c.deadline
    ]
    focus = late[0] if late else (first_open if first_open is not None else released or None)
    return CampaignDetail(
        campaign=c,
        schedule=schedule,
        title=title,
        totals=totals,
        deadline=deadline,
        pacing=pacing,
        timeline=timeline,
        spark=[float(n) for n in per_minute],
        spark_caption=f"last {SPARK_MINUTES} min · last minute {last_minute:,} · peak {peak:,}",
        recipients=[recipient_row(backend, r) for r in rows],
        first_position=first,
        last_position=last,
        recipients_caption=caption,
        trouble=trouble_text(backend, c, now),
        focus_batch=focus,
    )


def trouble_text(backend: Backend, c: Campaign, now: datetime) -> str:
    """Why the campaign is not done, in one or two lines (``campaign show``'s reasons): held
    and why, its account paused (breaker, guard) and until when, its errors by reason, and
    what waits for a retry with the next attempt. Empty when nothing is wrong."""
    t = campaign_trouble(backend.store, c, limit=3)
    parts: list[str] = []
    if c.status == "held":
        parts.append(f"HELD: {c.status_reason or 'no reason recorded'}")
    said = c.status == "held" and f"account {c.account}" in (c.status_reason or "")
    if t.account_paused and not said:
        back = f" (until {when(backend, t.account_until)})" if t.account_until else ""
        parts.append(f"account {c.account}: {t.account_paused}{back}")
    if t.errors:
        top = ", ".join(f"{e.reason} ×{e.count:,}" for e in t.errors[:3])
        parts.append(f"Errors {t.error_total:,}: {top}")
    if t.waiting:
        n = sum(w.count for w in t.waiting)
        at = f", next retry {until(now, t.next_retry_at)}" if t.next_retry_at else ""
        parts.append(f"{n:,} waiting for a retry ({t.waiting[0].reason}{at})")
    return " · ".join(parts)


def batch_state(
    c: Campaign,
    b: Batch,
    released: int,
    first_open: int | None,
    now: datetime,
    *,
    running: bool = True,
) -> Cell:
    """Where a batch is: done, being sent (or paused, held), queued behind an earlier one,
    or waiting for its release, which may fall after the deadline (D5, D8)."""
    if b.index <= released:
        if b.open == 0:
            return Styled("done", "level--ok")
        if b.index != first_open:
            return Styled(f"queued after batch {first_open}", "muted")
        if c.status == "sending":
            if not running:
                return Styled(NOT_SENDING, "level--warn")
            return Styled("sending", "status--sending")
        return Styled(c.status, f"status--{c.status}")
    if c.deadline is not None and b.release_at >= c.deadline:
        return Styled("released after the deadline: expires", "level--late")
    return Styled(f"releases {until(now, b.release_at)}", "muted")


def pacing_text(c: Campaign, schedule: Schedule) -> str:
    how = c.pacing.describe() if c.pacing else "no pacing: one batch"
    return f"Pacing: {how} · {schedule.released}/{c.batches} batches released"


def deadline_panel(
    backend: Backend,
    c: Campaign,
    now: datetime,
    p: Schedule,
    *,
    measured: bool,
    running: bool = True,
) -> Panel:
    """The deadline (``_LE``), time left, the projected finish and what would expire (D8).
    With no engine running there is no projection: "not sending: no engine running"."""
    rate = f"{rate_text(p.rate)} " + ("(last minute)" if measured else "(account limit)")
    finish = clock_time(backend, now, p.finish_at) if p.finish_at else "nothing left to send"
    if not running and c.status not in ("completed", "cancelled", "expired"):
        return Panel(
            [
                ("Deadline", when(backend, c.deadline) if c.deadline else "none"),
                ("Projected finish", Styled(NOT_SENDING, "level--warn")),
            ],
            "warn",
        )
    if c.status in ("completed", "cancelled", "expired"):
        return Panel(
            [
                ("Deadline", when(backend, c.deadline) if c.deadline else "none"),
                ("Finished", when(backend, c.finished_at)),
                ("Expired", f"{c.counters.get('expired', 0):,}"),
            ]
        )
    if c.deadline is None:
        return Panel(
            [
                ("Deadline", "none (_LE not given)"),
                ("Rate", rate),
                ("Projected finish", finish),
            ]
        )
    left = c.deadline - now
    lines: list[tuple[str, Cell]] = [
        ("Deadline", f"{clock_time(backend, now, c.deadline)} ({until(now, c.deadline)})"),
        ("Rate", rate),
        ("Projected finish", finish),
    ]
    if p.expired > 0:
        lines[2] = ("Projected finish", Styled(f"{finish}, after the deadline", "level--late"))
        lines.append(("Will expire", Styled(f"{p.expired:,} recipients", "level--late")))
        return Panel(lines, "late")
    if p.finish_at is not None and left > timedelta(0):
        slack = (c.deadline - p.finish_at) / left
        if slack < 0.1:
            lines.append(("Margin", Styled(f"{span(c.deadline - p.finish_at)}", "level--warn")))
            return Panel(lines, "warn")
    return Panel(lines)


RECIPIENT_COLUMNS = (
    ("Code", "code"),
    ("Address", "address"),
    ("Status", "status"),
    ("Sent at", "sent"),
    ("Read at", "read"),
    ("Not sent because", "reason"),
    ("Clicks", "clicks"),
    ("URLs clicked", "urls"),
    ("Unsub. campaign", "unsub_campaign"),
    ("Unsub. all", "unsub_all"),
)


def recipient_row(backend: Backend, r: RecipientResult) -> Row:
    reason = r.reason or ""
    return (
        str(r.position),
        (
            r.code or "-",
            r.address,
            status_cell(r.status),
            when(backend, r.sent_at, "%d/%m %H:%M:%S"),
            when(backend, r.opened_at, "%d/%m %H:%M:%S"),
            reason,
            str(r.clicks) if r.clicks else "",
            " ".join(r.urls),
            "yes" if r.unsubscribed == "campaign" else "",
            "yes" if r.unsubscribed == "all" else "",
        ),
    )


def export_recipients(
    backend: Backend,
    campaign_id: int,
    name: str,
    progress: Callable[[int], None] | None = None,
) -> tuple[Path, int]:
    """Write every recipient's results (D17) as ``name`` in the export folder (``tui.export``:
    a plain name only, never through a symbolic link, never over a file): the file `disparo
    campaign results --csv` writes (its columns, formula-safe cells, E2). Audited."""
    return write_export(backend, campaign_id, name, progress)


# -- the screen ------------------------------------------------------------------------------


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
        self.cache = DetailCache()
        #: the page shown: recipients after this position (None: from the first)
        self.after: int | None = None
        self.before: int | None = None
        self.detail: CampaignDetail | None = None
        #: the batch the pacing table last scrolled to
        self.focused_batch: int | None = None

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        yield Static("", id="title", classes="caption")
        yield Static("", id="trouble")
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
        yield LiveTable(RECIPIENT_COLUMNS, id="recipients")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#totals").border_title = "Totals"
        self.query_one("#deadline").border_title = "Deadline"
        self.query_one("#sends").border_title = "Sends per minute"
        self.query_one("#recipients", LiveTable).focus()

    def params(self) -> Any:
        return (self.after, self.before)

    def fetch(self, params: Any) -> CampaignDetail | None:
        after, before = params
        return campaign_detail(
            self.backend,
            self.campaign_id,
            self.cache,
            after=after,
            before=before,
            running=self.engine_running,
        )

    def show(self, data: CampaignDetail | None) -> None:
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
        show_text(self.query_one("#title", Static), title)
        self.query_one("#totals", PanelView).show(data.totals)
        self.query_one("#deadline", PanelView).show(data.deadline)
        spark = self.query_one("#spark", Sparkline)
        if spark.data != data.spark:
            spark.data = data.spark
        show_text(self.query_one("#spark-caption", Static), Text(data.spark_caption))
        show_text(self.query_one("#pacing", Static), Text(data.pacing))
        timeline = self.query_one("#timeline", LiveTable)
        timeline.show(data.timeline)
        if data.focus_batch is not None and data.focus_batch != self.focused_batch:
            # the expiring (else the current) batch in view; the operator's scrolling stays
            # until that batch changes
            self.focused_batch = data.focus_batch
            key = str(data.focus_batch)
            if key in timeline.keys:
                row = timeline.keys.index(key)
                # after the layout: the table's height is known only then
                self.call_after_refresh(timeline.move_cursor, row=row, animate=False, scroll=True)
        trouble = self.query_one("#trouble", Static)
        if trouble.display != bool(data.trouble):
            trouble.display = bool(data.trouble)
        show_text(trouble, data.trouble)
        show_text(
            self.query_one("#recipients-caption", Static),
            Text(f"{data.recipients_caption}   (n next page, b previous, e export CSV)"),
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
        folder = self.backend.config.export_folder
        name = default_name(cid, self.backend.local(self.backend.now()))
        self.ask(
            FormDialog(
                f"Export the recipients of campaign {cid}",
                "Every recipient (D17) as CSV (;-separated, UTF-8); cells a spreadsheet would "
                f"run as formulas are made safe (E2). Written into {folder} ([tui] "
                "export_folder): give a plain file name, not a path; an existing file is "
                "never replaced.",
                [Field("name", "File name", value=name, check=self._plain)],
                ok="Export",
            ),
            lambda values: self._export(values["name"]),
        )

    @work(thread=True, group="export", exit_on_error=False)
    def _export(self, name: str) -> None:
        target, rows = export_recipients(self.backend, self.campaign_id, name)
        self.post_message(ExportDone(str(target), rows))

    def _plain(self, value: str) -> str | None:
        problem = check_name(value.strip())
        if problem:
            return problem
        name = export_name(value)
        folder = self.backend.config.export_folder
        if (folder / name).is_symlink() or (folder / name).exists():
            return (
                f"{name} exists in {folder}: an export never overwrites a file, choose another name"
            )
        return None

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

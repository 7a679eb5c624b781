"""What each screen shows, built in a worker thread from the store's read models
(``store.views``): display-ready rows and panels, no widgets.

A refresh of any screen is one call here; ``tests/bench/bench_tui.py`` times them against a
store of 1,000 campaigns and 1,000,000 deliveries. Cells and how they are written are
``tui.format``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from engine.campaign import Campaign
from engine.publish.results import export_results
from engine.schedule import Batch, Schedule, live
from engine.sending.status import account_rates, campaign_schedule
from engine.store.accounts import AccountState
from engine.store.files import Observation
from engine.store.results import RecipientResult
from engine.store.suppressions import ORIGINS
from tui.backend import Backend
from tui.format import (
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

#: the sparkline: sends per minute over this many minutes
SPARK_MINUTES = 60
RECIPIENTS_PAGE = 100


# -- campaigns -------------------------------------------------------------------------------

CAMPAIGN_COLUMNS = (
    ("Id", "id"),
    ("Created", "created"),
    ("Name", "name"),
    ("Wallet", "wallet"),
    ("Channel", "channel"),
    ("Sender", "sender"),
    ("Recipients", "recipients"),
    ("Start", "start"),
    ("End", "end"),
    ("Status", "status"),
)


@dataclass(frozen=True)
class CampaignList:
    rows: list[Row]
    #: campaign id -> (status, priority): what the actions allow and start from
    campaigns: dict[int, tuple[str, int]]
    total: int


def campaign_list(
    backend: Backend,
    text: str = "",
    sort: str = "id",
    descending: bool = True,
    name_width: int = 60,
) -> CampaignList:
    """The Campaigns screen: one query on the campaigns table (their counters included).
    Names lose their ``mailing_`` prefix and are cut to ``name_width`` (the detail shows
    them whole); a campaign with work left shows how much of it is done."""
    found, total = backend.store.views.campaign_rows(text=text, sort=sort, descending=descending)
    rows: list[Row] = []
    for c in found:
        name = c.name.removeprefix("mailing_")
        if len(name) > name_width:
            name = name[: name_width - 1] + "…"
        status = status_cell(c.status)
        if c.status in ("sending", "paused", "held") and c.recipients:
            done = c.recipients - c.remaining
            status = Styled(f"{c.status} {100 * done // c.recipients}%", status.style)
        rows.append(
            (
                str(c.id),
                (
                    str(c.id),
                    when(backend, c.created_at),
                    name,
                    c.wallet or "-",
                    c.channel,
                    c.account or "-",
                    f"{c.recipients:,}",
                    when(backend, c.started_at or c.start_at),
                    when(backend, c.finished_at or c.deadline),
                    status,
                ),
            )
        )
    return CampaignList(rows, {c.id: (c.status, c.priority) for c in found}, total)


# -- one campaign ----------------------------------------------------------------------------


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
) -> CampaignDetail | None:
    """The Campaign screen: the campaign row (its counters), the batch seeks, a minute or
    two of events, and one page of recipients."""
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
    deadline = deadline_panel(backend, c, now, schedule, measured=use_measured)
    released = schedule.released
    batches = schedule.batches
    first_open = min((b.index for b in batches if b.index <= released and b.open), default=None)
    timeline: list[Row] = []
    for b in batches:
        state = batch_state(c, b, released, first_open, now)
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
    )


def batch_state(
    c: Campaign, b: Batch, released: int, first_open: int | None, now: datetime
) -> Cell:
    """Where a batch is: done, being sent (or paused, held), queued behind an earlier one,
    or waiting for its release, which may fall after the deadline (D5, D8)."""
    if b.index <= released:
        if b.open == 0:
            return Styled("done", "level--ok")
        if b.index != first_open:
            return Styled(f"queued after batch {first_open}", "muted")
        if c.status == "sending":
            return Styled("sending", "status--sending")
        return Styled(c.status, f"status--{c.status}")
    if c.deadline is not None and b.release_at >= c.deadline:
        return Styled("released after the deadline: expires", "level--late")
    return Styled(f"releases {until(now, b.release_at)}", "muted")


def pacing_text(c: Campaign, schedule: Schedule) -> str:
    how = c.pacing.describe() if c.pacing else "no pacing: one batch"
    return f"Pacing: {how} · {schedule.released}/{c.batches} batches released"


def deadline_panel(
    backend: Backend, c: Campaign, now: datetime, p: Schedule, *, measured: bool
) -> Panel:
    """The deadline (``_LE``), time left, the projected finish and what would expire (D8)."""
    rate = f"{rate_text(p.rate)} " + ("(last minute)" if measured else "(account limit)")
    finish = clock_time(backend, now, p.finish_at) if p.finish_at else "nothing left to send"
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
    target: Path,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write every recipient's results (D17) to ``target``: the file `disparo campaign results
    --csv` writes (its columns, ``store.campaigns.results``, formula-safe cells), streamed a
    chunk at a time into ``<target>.part``, renamed when complete. Never over a file that
    exists (``FileExistsError``); the export is in the audit log with who made it."""
    written = export_results(
        backend.store,
        campaign_id,
        target,
        backend.config.tz,
        overwrite=False,
        progress=progress,
    )
    backend.store.audit.record(
        backend.actor,
        "campaign.export",
        f"campaign:{campaign_id}",
        {"file": str(target.resolve()), "rows": written},
    )
    return written


# -- queues ----------------------------------------------------------------------------------

ACCOUNT_COLUMNS = (
    ("Account", "name"),
    ("Channel", "channel"),
    ("Limit", "limit"),
    ("Actual", "actual"),
    ("In flight", "in_flight"),
    ("Queued", "queued"),
    ("Current", "current"),
    ("Waiting", "waiting"),
    ("Bounces 24 h", "bounces"),
    ("Complaints 24 h", "complaints"),
    ("Guard", "guard"),
)
QUEUE_COLUMNS = (
    ("Id", "id"),
    ("Name", "name"),
    ("Status", "status"),
    ("Priority", "priority"),
    ("Remaining", "remaining"),
    ("Batches", "batches"),
    ("In flight", "in_flight"),
    ("Next", "next"),
)


@dataclass(frozen=True)
class Queues:
    accounts: list[Row]
    #: account -> the rows of its queue (current first, then waiting by priority)
    queues: dict[str, list[Row]]
    #: campaign id -> (status, priority)
    campaigns: dict[int, tuple[str, int]]
    #: account -> is the guard overridden
    overridden: dict[str, bool]
    guard: dict[str, str]


def queues(backend: Backend) -> Queues:
    """The Queues screen: accounts (their guard rows), active campaigns, the lease index and
    a minute of events per account."""
    now = backend.now()
    snap = backend.store.views.queues(now - RATE_WINDOW)
    names = list(backend.config.accounts)
    names += sorted(n for n in snap.accounts if n not in backend.config.accounts)
    names += sorted({c.account for c in snap.campaigns if c.account and c.account not in names})
    by_account: dict[str, list[Campaign]] = {n: [] for n in names}
    for c in snap.campaigns:
        if c.account:
            by_account.setdefault(c.account, []).append(c)
    rows: list[Row] = []
    queue_rows: dict[str, list[Row]] = {}
    overridden: dict[str, bool] = {}
    guard_states: dict[str, str] = {}
    for name in names:
        settings = backend.config.accounts.get(name)
        state = snap.accounts.get(name)
        mine = by_account.get(name, [])
        flying = sum(snap.in_flight.get(c.id, 0) for c in mine)
        current = _current(mine, snap.in_flight)
        waiting = [c for c in mine if c is not current]
        actual = snap.sent_recently.get(name, 0) / RATE_WINDOW.total_seconds()
        limit = (
            f"{settings.rate:g}/s" + (" sandbox" if settings.sandbox else "")
            if settings
            else Styled("not configured", "level--late")
        )
        bounce, complaint, guard = _guard_cells(backend, state, now)
        overridden[name] = bool(state and state.override_by)
        guard_states[name] = state.guard_state if state else "ok"
        rows.append(
            (
                name,
                (
                    name,
                    settings.channel if settings else (state.channel if state else "-"),
                    limit,
                    rate_text(actual),
                    f"{flying:,}",
                    f"{sum(c.remaining for c in mine):,}",
                    f"#{current.id}" if current else "-",
                    ", ".join(f"#{c.id}" for c in waiting) or "-",
                    bounce,
                    complaint,
                    guard,
                ),
            )
        )
        ordered = ([current] if current else []) + waiting
        queue_rows[name] = [
            (
                str(c.id),
                (
                    str(c.id),
                    c.name,
                    Styled("sending now", "status--sending")
                    if c is current and c.status == "sending"
                    else status_cell(c.status),
                    str(c.priority),
                    f"{c.remaining:,}",
                    f"{c.released_batches}/{c.batches}",
                    f"{snap.in_flight.get(c.id, 0):,}",
                    _next(backend, c, now, current),
                ),
            )
            for c in ordered
        ]
    return Queues(
        rows,
        queue_rows,
        {c.id: (c.status, c.priority) for c in snap.campaigns},
        overridden,
        guard_states,
    )


def _current(mine: list[Campaign], flying: dict[int, int]) -> Campaign | None:
    """What the account sends now: the campaign with deliveries in flight, else the one the
    dispatcher picks next (D11: highest priority, then oldest, among those sending)."""
    busy = [c for c in mine if flying.get(c.id)]
    if busy:
        return max(busy, key=lambda c: flying[c.id])
    sending = [c for c in mine if c.status == "sending"]
    return sending[0] if sending else None


def _next(backend: Backend, c: Campaign, now: datetime, current: Campaign | None) -> str:
    """What the campaign waits for."""
    if c.status == "scheduled" and c.start_at > now:
        return f"starts {until(now, c.start_at)}"
    if c.status in ("paused", "held"):
        return c.status_reason or c.status
    following = live(c, now, rate=1.0).next_release if c.pacing is not None else None
    if following is not None:
        return f"batch {following.index} {until(now, following.release_at)}"
    if current is not None and c is not current and c.status == "sending":
        return f"waits for #{current.id} (D11)"
    return ""


def _guard_cells(
    backend: Backend, state: AccountState | None, now: datetime
) -> tuple[Cell, Cell, Cell]:
    if state is None:
        return "-", "-", Styled("no state yet", "muted")
    rates = account_rates(backend.config, state)
    b: Cell = rates.bounce_text()
    k: Cell = rates.complaint_text()
    if rates.bounces_over:
        b = Styled(str(b), "level--late")
    if rates.complaints_over:
        k = Styled(str(k), "level--late")
    if state.override_by:
        guard: Cell = Styled(
            f"override by {state.override_by}: {state.override_reason or ''}".strip(),
            "level--warn",
        )
    elif state.guard_state == "paused":
        left = f" until {when(backend, state.paused_until)}" if state.paused_until else ""
        guard = Styled(f"paused{left}: {state.pause_reason or ''}", "level--late")
    else:
        checked = (
            f" (checked {span(now - state.checked_at)} ago)" if state.checked_at is not None else ""
        )
        guard = Styled(f"ok{checked}", "level--ok")
    return b, k, guard


# -- sources ---------------------------------------------------------------------------------

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
    "imported": "imported",
    "rejected": "rejected",
    "duplicate": "duplicate",
    "not-mailing": "not a mailing",
    "error": "error",
}
FILE_STYLE = {
    "imported": "level--ok",
    "rejected": "level--late",
    "error": "level--late",
    "duplicate": "level--warn",
    "unstable": "level--warn",
    "waiting": "status--scheduled",
}


@dataclass(frozen=True)
class Sources:
    sources: list[Row]
    files: list[Row]
    #: path -> the observation, for the report view
    observations: dict[str, Observation]
    source: str | None


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
    return Sources(rows, file_rows, {f.path: f for f in seen}, source)


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
    return "\n".join(lines)


# -- suppressions ----------------------------------------------------------------------------

SUPPRESSION_COLUMNS = (
    ("Address", "address"),
    ("Kind", "kind"),
    ("Origin", "origin"),
    ("Reason", "reason"),
    ("Campaign", "campaign"),
    ("By", "by"),
    ("When", "when"),
)


@dataclass(frozen=True)
class SuppressionList:
    rows: list[Row]
    counts: dict[str, int]
    origin: str | None


def suppression_list(backend: Backend, text: str, origin: str | None) -> SuppressionList:
    """The Suppressions screen: a search (newest first) and the count per origin."""
    store = backend.store
    found = store.suppressions.search(text, origin=origin, limit=500)
    counts = store.suppressions.counts()
    rows: list[Row] = [
        (
            f"{s.kind}:{s.address}",
            (
                s.address,
                s.kind,
                Styled(s.origin, f"origin--{s.origin}"),
                s.reason or "",
                f"#{s.campaign_id}" if s.campaign_id else "",
                s.created_by,
                when(backend, s.created_at),
            ),
        )
        for s in found
    ]
    return SuppressionList(rows, {o: counts.get(o, 0) for o in ORIGINS}, origin)

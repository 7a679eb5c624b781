"""``disparo import``, ``disparo sources``, ``disparo sources test`` and ``disparo run``."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from engine.cli.context import AppContext, app, fail
from engine.clock import local_today
from engine.config import Config
from engine.plugins.format import Format, FormatContext
from engine.plugins.source import Source, SourceError

if TYPE_CHECKING:
    # the importer (and the store under it) is imported by `disparo import`, so building the
    # command line (every `disparo` process does) stays light
    from engine.intake.importer import ImportReport

STATUS_STYLE = {
    "imported": "green",
    "rejected": "red",
    "duplicate": "yellow",
    "waiting": "cyan",
    "ignored": "dim",
    "unstable": "yellow",
    "not-mailing": "dim",
    "not-triplet": "dim",
    "result": "dim",
    "companion": "dim",
    "incomplete": "cyan",
    "refused": "red",
    "new": "",
    "ready": "",
}


def _report_rows(report: ImportReport) -> list[tuple[str, str]]:
    rows = [("file", report.path), ("outcome", report.outcome)]
    if report.problems:
        rows += [(f"problem [{p.rule}]", p.message) for p in report.problems]
    if report.outcome == "imported":
        rows += [
            ("wallet", report.wallet or "-"),
            ("rows read", f"{report.rows:,}"),
            ("contacts imported", f"{report.contacts:,} ({report.new_contacts:,} new)"),
            ("merged duplicates", f"{report.merged:,}"),
        ]
    if report.rejected_rows:
        total = sum(report.rejected_rows.values())
        detail = ", ".join(f"{code} {n:,}" for code, n in report.rejected_rows.most_common())
        rows.append(("rows rejected", f"{total:,} ({detail})"))
    if report.campaign_id is not None:
        rows += [
            ("campaign", f"#{report.campaign_id} ({report.channel})"),
            ("recipients", f"{report.recipients:,} in {report.batches} batch(es)"),
            ("suppressed", f"{report.suppressed:,}"),
            ("skipped (_x)", f"{report.skipped:,}"),
        ]
        if report.duplicate_addresses:
            rows.append(("same address twice", f"{report.duplicate_addresses:,}"))
        if report.held_reason:
            rows.append(("waiting for", report.held_reason))
    elif report.outcome == "imported":
        rows.append(("campaign", "none (no channel in the name, N21)"))
    return rows


def _report_json(report: ImportReport) -> dict[str, Any]:
    return {
        "file": report.path,
        "outcome": report.outcome,
        "wallet": report.wallet,
        "problems": [
            {"code": p.code, "rule": p.rule, "message": p.message} for p in report.problems
        ],
        "rows": report.rows,
        "contacts": report.contacts,
        "new_contacts": report.new_contacts,
        "merged": report.merged,
        "rejected_rows": dict(report.rejected_rows),
        "campaign_id": report.campaign_id,
        "channel": report.channel,
        "recipients": report.recipients,
        "batches": report.batches,
        "suppressed": report.suppressed,
        "skipped": report.skipped,
        "held_reason": report.held_reason,
    }


@click.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--wallet", help="Wallet for files whose name has no _c (and no folder).")
@click.option("--today", "today_text", metavar="YYYY-MM-DD", help="The processing day (N5).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_context
def import_command(
    ctx: click.Context,
    files: tuple[Path, ...],
    wallet: str | None,
    today_text: str | None,
    as_json: bool,
) -> None:
    """Import mailing FILES once, now (one transaction each), and create their campaigns.

    A relative path keeps its folder (BRAD/mailing_….csv imports into wallet BRAD). A file's
    e-mail body is the sibling <stem>.html when there is one. Exit status 1 when a file is
    rejected.
    """
    from engine.intake.importer import ImportReport, file_digest, import_file

    a = app(ctx)
    config = a.config
    store = a.store
    today = date.fromisoformat(today_text) if today_text else local_today(a.clock, config.tz)
    fmt_cls = a.plugins.formats()["mailing"]
    reports: list[ImportReport] = []
    failed = False
    for file in files:
        name = file.as_posix() if not file.is_absolute() else file.name
        fmt: Format = fmt_cls(
            FormatContext(
                config,
                "import",
                today,
                a.clock.now(),
                wallet=wallet,
                words=a.plugins.channel_words(),
            )
        )
        siblings = {p.name for p in file.parent.iterdir() if p.is_file()}
        listing = {f"{name.rsplit('/', 1)[0]}/{s}" if "/" in name else s for s in siblings}
        verdict = fmt.inspect(name, listing)
        if verdict.action != "import":
            failed = True
            messages = "; ".join(p.message for p in verdict.problems) or verdict.status
            report = ImportReport(name, "rejected", list(verdict.problems))
            reports.append(report)
            if not as_json:
                a.err.print(f"[red]{name}: not imported ({verdict.status}):[/] {messages}")
            continue
        companions = {c: file.parent / c.rsplit("/", 1)[-1] for c in verdict.companions}

        def advance(done: int, progress: Progress | None = None, task: Any = None) -> None:
            if progress is not None:
                progress.update(task, completed=done)

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=a.err,
            transient=True,
            disable=as_json,
        ) as progress:
            task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)
            report = import_file(
                store,
                fmt,
                source="import",
                path=name,
                spool=file,
                size=file.stat().st_size,
                mtime=datetime.fromtimestamp(file.stat().st_mtime, a.clock.now().tzinfo),
                sha256=file_digest(file),
                companions=companions,
                actor="cli",
                progress=partial(advance, progress=progress, task=task),
            )
        if report.rejected_csv is not None:
            target = file.with_name(file.stem + ".rejeitados.csv")
            report.rejected_csv.replace(target)
            report.rejected_csv = target
        reports.append(report)
        failed = failed or report.outcome != "imported"
        if not as_json:
            _print_report(a, report)
    if as_json:
        click.echo(json.dumps([_report_json(r) for r in reports], ensure_ascii=False, indent=2))
    ctx.exit(1 if failed else 0)


def _print_report(a: AppContext, report: ImportReport) -> None:
    style = {"imported": "green", "rejected": "red", "duplicate": "yellow"}[report.outcome]
    table = Table(
        show_header=False,
        title=Text(report.outcome.upper(), style=f"bold {style}"),
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column()
    for key, value in _report_rows(report):
        table.add_row(key, Text(value))  # Text: file names and messages are not markup
    if report.outcome == "duplicate":
        table.add_row("why", "the same file (name and content) was imported before (F10)")
    if report.rejected_csv is not None:
        table.add_row("rejected rows listed in", Text(str(report.rejected_csv)))
    a.console.print(table)


@click.group("sources", invoke_without_command=True)
@click.pass_context
def sources(ctx: click.Context) -> None:
    """The configured sources: schedule, last poll and the files they hold."""
    if ctx.invoked_subcommand is not None:
        return
    a = app(ctx)
    config = a.require_config()
    states = a.store.files.source_states()
    tz = config.tz
    table = Table(title="Sources", title_justify="left")
    for column in ("Source", "Kind", "Where", "Schedule", "Last poll", "Next poll", "Status"):
        table.add_column(column)
    for name, s in config.sources.items():
        src: Source = a.plugins.source_kinds()[s.kind](s)
        st = states.get(name)

        def t(v: datetime | None) -> str:
            return v.astimezone(tz).strftime("%d/%m %H:%M:%S") if v else "-"

        status = Text(
            st.status if st else "never polled",
            style="green" if st and st.status == "ok" else "red" if st else "dim",
        )
        where = escape(src.describe()) + (
            " [yellow](private hosts allowed)[/]" if s.allow_private else ""
        )
        table.add_row(
            name,
            s.kind,
            where,
            s.schedule.describe(),
            t(st.last_poll_at if st else None),
            t(st.next_poll_at if st else None),
            status,
        )
    a.console.print(table)
    _print_sends(a, config)
    files = a.store.files.observations(limit=50)
    if files:
        listing = Table(title="Files seen (newest first)", title_justify="left")
        for column in ("Source", "File", "Size", "Seen", "Status", "Why"):
            listing.add_column(column)
        for f in files:
            listing.add_row(
                f.source,
                Text(f.path),
                f"{f.size:,}",
                f.last_seen_at.astimezone(tz).strftime("%d/%m %H:%M"),
                Text(f.status, style=STATUS_STYLE.get(f.status, "")),
                Text((f.message or "")[:160]),
            )
        a.console.print(listing)


def _print_sends(a: AppContext, config: Config) -> None:
    """Per send (a file that made a campaign, or a send still waiting for its files): what is
    missing, the campaign, when the results are due and when they were published."""
    from engine.publish.service import Publishing

    tz = config.tz
    now = a.clock.now()

    def t(v: datetime | None) -> str:
        return v.astimezone(tz).strftime("%d/%m %H:%M") if v else "-"

    table = Table(title="Sends and results (newest first)", title_justify="left")
    for column in ("Source", "File", "Status", "Campaign", "Results due", "Published"):
        table.add_column(column)
    waiting: dict[tuple[str, str], list[str]] = {}
    for o in a.store.files.observations(limit=500):
        if o.status == "incomplete":  # a triplet send still missing files (T2)
            waiting.setdefault((o.source, o.message or ""), []).append(o.path)
    for (source, message), paths in waiting.items():
        table.add_row(
            source,
            Text(", ".join(sorted(paths))),
            Text("waiting", style="cyan"),
            Text(message),  # what is missing
            "-",
            "-",
        )
    publishing = Publishing(a.store, a.plugins, config, a.clock)
    for name, settings in config.sources.items():
        for r in publishing.overview(settings, limit=20):
            if r.published and not r.owed:
                due = "-"
            elif r.owed and r.due_at is None:
                due = "when it ends"
            elif r.owed and r.due_at is not None:
                due = "now" if r.due_at <= now else t(r.due_at)
            else:
                due = "-"
            published = f"{t(r.published_at)} ({len(r.published)} files)" if r.published else "-"
            table.add_row(
                name,
                Text(r.path),
                Text(f"imported {t(r.imported_at)}", style="green"),
                Text(f"#{r.campaign_id} {r.status}"),
                due,
                published,
            )
    if table.row_count:
        a.console.print(table)


@sources.command("test")
@click.argument("name")
@click.pass_context
def sources_test(ctx: click.Context, name: str) -> None:
    """Connect to source NAME, list its folder, and say what works or exactly what fails (F6)."""
    a = app(ctx)
    config = a.require_config()
    settings = config.sources.get(name)
    if settings is None:
        known = ", ".join(sorted(config.sources)) or "none configured"
        fail(f"no source named {name!r} (sources: {known})")
    source: Source = a.plugins.source_kinds()[settings.kind](settings)
    a.console.print(f"testing {name}: {source.describe()}")
    try:
        with source.session():
            files = source.list_files()
    except SourceError as exc:
        a.console.print(f"[bold red]FAILED[/] ({exc.category}): {escape(exc.describe())}")
        ctx.exit(1)
    a.console.print(f"[bold green]OK[/]: connected and listed {len(files)} file(s)")
    for f in files[:20]:
        a.console.print(f"  {f.path}  {f.size:,} bytes")
    if len(files) > 20:
        a.console.print(f"  … and {len(files) - 20} more")


@click.command("run")
@click.option(
    "--until-idle",
    is_flag=True,
    help="Poll every source, import what is ready, send everything due, then exit with a summary.",
)
@click.option(
    "--settle",
    type=float,
    default=2.0,
    show_default=True,
    help="Seconds between the two listings that show a new file is stable (F8).",
)
@click.pass_context
def run_command(ctx: click.Context, until_idle: bool, settle: float) -> None:
    """Run the engine: collect and import files on each source's schedule, send campaigns
    paced within each account's rate, and watch bounce rates (the guard); with [tracking],
    serve the tracking endpoint, and poll the bounce mailboxes ([mailboxes.NAME]).

    Stops cleanly on SIGTERM or Ctrl-C: in-flight messages finish, the rest waits for the
    next start.
    """
    from engine.service import Engine, configure_logging

    a = app(ctx)
    config = a.require_config()
    configure_logging(config)
    engine = Engine(a.store, a.plugins, config, a.clock)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, engine.stop.set)
        if until_idle:
            summary = await engine.run_until_idle(settle=settle)
            _print_run(a, summary)
        else:
            from engine.sending.status import describe_accounts

            a.console.print(
                f"disparo running: {len(config.sources)} source(s), "
                f"{len(config.accounts)} account(s); Ctrl-C stops"
            )
            for line in describe_accounts(config, a.plugins, a.clock):
                a.console.print(f"  {line}")
            await engine.run()

    asyncio.run(main())


def _print_campaigns(a: AppContext, summary: Any) -> None:
    if not summary.campaigns:
        return
    table = Table(title="Campaigns", title_justify="left")
    for column in ("Id", "Name", "Status", "Recipients", "Sent"):
        table.add_column(column)
    for cid, name, status, recipients, sent in summary.campaigns:
        table.add_row(str(cid), Text(name[:50]), status, f"{recipients:,}", f"{sent:,}")
    a.console.print(table)


def _print_run(a: AppContext, summary: Any) -> None:
    table = Table(title="Collection", title_justify="left")
    for column in ("Source", "Imported", "Rejected", "Waiting", "Still changing", "Status"):
        table.add_column(column)
    for poll in summary.polls:
        rejected = [r.path for r in poll.reports if r.outcome != "imported"] + poll.rejected_names
        table.add_row(
            poll.source,
            str(len(poll.imported)),
            str(len(rejected)),
            str(len(poll.waiting)),
            str(len(poll.unstable)),
            Text("ok", style="green") if poll.ok else Text(poll.error or "error", style="red"),
        )
    a.console.print(table)
    for poll in summary.polls:
        for report in poll.reports:
            _print_report(a, report)
    for box in summary.mailboxes:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(box.kinds.items()))
        a.console.print(
            Text(
                f"mailbox {box.name}: {box.message}" + (f" ({kinds})" if kinds else ""),
                style="" if box.ok else "red",
            )
        )
    _print_campaigns(a, summary)


COMMANDS = (import_command, sources, run_command)

"""``disparo import``, ``disparo sources``, ``disparo sources test`` and ``disparo run``."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from engine.cli.context import LOG_FORMAT_OPTION, AppContext, app, fail, file_progress
from engine.clock import local_today
from engine.config import Config
from engine.plugins.format import Format, FormatContext
from engine.plugins.source import Source, SourceError

if TYPE_CHECKING:
    # the importer (and the store under it) is imported by `disparo import`, and rich's
    # progress bars where one is shown, so building the command line (every `disparo` process
    # does) stays light
    from rich.progress import Progress

    from engine.intake.importer import ImportReport

log = logging.getLogger(__name__)

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
    if report.outcome == "imported" and report.removed is not None:
        rows.append(("left the list", f"{report.removed:,} (not in the file: replace mode, S1)"))
    if report.outcome == "imported" and report.opted_out is not None:
        rows.append(("opted out", f"{report.opted_out:,} address(es) suppressed (S1)"))
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
    elif report.outcome == "imported" and report.format == "mailing":
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
        "removed": report.removed,
        "opted_out": report.opted_out,
    }


@click.command("import")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--wallet", help="Wallet for files whose name has no _c (and no folder).")
@click.option("--today", "today_text", metavar="YYYY-MM-DD", help="The processing day (N5).")
@click.option(
    "--source",
    "source_name",
    metavar="SOURCE",
    help="Read FILES as that source's files (its format and settings: a list sync source "
    "imports into its list) and record them in its ledger.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable summary.")
@click.pass_context
def import_command(
    ctx: click.Context,
    files: tuple[Path, ...],
    wallet: str | None,
    today_text: str | None,
    source_name: str | None,
    as_json: bool,
) -> None:
    """Import mailing FILES once, now (one transaction each), and create their campaigns;
    with --source, import FILES as that source's (a list sync source's list files).

    A relative path keeps its folder (BRAD/mailing_….csv imports into wallet BRAD). A file's
    e-mail body is the sibling <stem>.html when there is one. Exit status 1 when a file is
    rejected.
    """
    from sqlalchemy import exc as sa_exc

    from engine.intake.faults import operational
    from engine.intake.importer import ImportReport, file_digest, import_file

    a = app(ctx)
    config = a.config
    if source_name is not None and source_name not in config.sources:
        known = ", ".join(sorted(config.sources)) or "none configured"
        fail(f"no source named {source_name} (sources: {known})")
    store = a.store
    today = date.fromisoformat(today_text) if today_text else local_today(a.clock, config.tz)
    format_name = config.sources[source_name].format if source_name else "mailing"
    fmt_cls = a.plugins.formats()[format_name]
    reports: list[ImportReport] = []
    failed = False
    for file in files:
        name = file.as_posix() if not file.is_absolute() else file.name
        fmt: Format = fmt_cls(
            FormatContext(
                config,
                source_name or "import",
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

        with file_progress(a, disable=as_json) as progress:
            task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)
            try:
                report = import_file(
                    store,
                    fmt,
                    source=source_name or "import",
                    path=name,
                    spool=file,
                    size=file.stat().st_size,
                    mtime=datetime.fromtimestamp(file.stat().st_mtime, a.clock.now().tzinfo),
                    sha256=file_digest(file),
                    companions=companions,
                    actor="cli",
                    progress=partial(advance, progress=progress, task=task),
                )
            except (OSError, sa_exc.DBAPIError) as exc:
                line = operational(exc, by_hand=True)
                if line is None:
                    raise
                fail(f"{name}: not imported: {line}", code=1)
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


def _numbered_twins(folder: Path, leaf: str) -> list[tuple[int, Path]]:
    """``a.csv`` and its numbered twins ``a.2.csv``, ``a.3.csv``… in ``folder`` (the collector
    gives a moved file a numbered twin's name when its own is taken)."""
    stem, dot, ext = leaf.rpartition(".")
    if not dot:
        stem, ext = leaf, ""
    found = [(1, folder / leaf)] if (folder / leaf).exists() else []
    for path in folder.glob(f"{stem}.*{'.' + ext if ext else ''}"):
        middle = path.name[len(stem) + 1 : len(path.name) - (len(ext) + 1 if ext else 0)]
        if middle.isdigit():
            found.append((int(middle), path))
    return sorted(found)


def _where_it_went(a: AppContext, source_name: str, report: ImportReport) -> list[tuple[str, Text]]:
    """Where a collected file went and its reports beside it: processed/ or rejected/ on its
    source, as the customer sees it (the spool copies are gone once it is settled)."""
    from engine.intake.reports import report_stem
    from engine.plugins.source import join

    settings = a.config.sources.get(source_name)
    if settings is None:
        return []
    source: Source = a.plugins.source_kinds()[settings.kind](settings)
    if not source.writable:
        return [
            (
                "file",
                Text(
                    f"left where it is on {source.describe()} (a read-only source: nothing is "
                    "moved or published there)"
                ),
            )
        ]
    folder = settings.processed_dir if report.outcome == "imported" else settings.rejected_dir
    moved = join(folder, report.path)
    reports = [".rejeitados.csv"] if report.rejected_csv is not None else []
    if report.outcome != "imported":
        reports.insert(0, ".erro.txt")
    root = getattr(source, "root", None)
    if isinstance(root, Path):  # a local folder: the very files, numbered twin or not
        target = root / moved
        twins = _numbered_twins(target.parent, target.name)
        if twins:
            target = twins[-1][1]
        rows = [("moved to", Text(str(target)))]
        stem = target.with_name(report_stem(target.name))
        for suffix in reports:
            label = "why (for the customer)" if suffix == ".erro.txt" else "rejected rows listed in"
            rows.append((label, Text(f"{stem}{suffix}")))
        return rows
    rows = [("moved to", Text(f"{moved} on {source.describe()}"))]
    for suffix in reports:
        label = "why (for the customer)" if suffix == ".erro.txt" else "rejected rows listed in"
        rows.append((label, Text(f"{report_stem(moved)}{suffix} beside it")))
    return rows


def _print_report(a: AppContext, report: ImportReport, source: str | None = None) -> None:
    """One file's summary; ``source`` names the source it was collected from (None for
    ``disparo import``, whose rejected rows are written beside the file given)."""
    style = {"imported": "green", "rejected": "red", "duplicate": "yellow"}[report.outcome]
    table = Table(
        show_header=False,
        title=Text(report.outcome.upper(), style=f"bold {style}"),
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for key, value in _report_rows(report):
        table.add_row(key, Text(value))  # Text: file names and messages are not markup
    if report.outcome == "duplicate":
        table.add_row("why", "the same file (name and content) was imported before (F10)")
    if source is not None:
        for label, where in _where_it_went(a, source, report):
            table.add_row(label, where)
    elif report.rejected_csv is not None:
        table.add_row("rejected rows listed in", Text(str(report.rejected_csv)))
    a.console.print(table)


@click.group("sources", invoke_without_command=True)
@click.pass_context
def sources(ctx: click.Context) -> None:
    """The configured sources: schedule, last poll and the files they hold, with why each
    file is where it is (the rule and the fix, in full)."""
    if ctx.invoked_subcommand is not None:
        return
    a = app(ctx)
    config = a.require_config()
    store = a.existing_store
    states = store.files.source_states()
    tz = config.tz
    table = Table(title="Sources", title_justify="left")
    for column in ("Source", "Kind", "Where", "Schedule", "Last poll", "Next poll", "Status"):
        table.add_column(column, overflow="fold")
    for name, s in config.sources.items():
        src: Source = a.plugins.source_kinds()[s.kind](s)
        st = states.get(name)

        def t(v: datetime | None) -> str:
            return v.astimezone(tz).strftime("%d/%m %H:%M:%S") if v else "-"

        status = Text(
            (st.status + (f": {st.message}" if st.message else "")) if st else "never polled",
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
    files = store.files.observations(limit=50)
    if files:
        listing = Table(title="Files seen (newest first)", title_justify="left")
        for column in ("Source", "File", "Size", "Seen", "Status"):
            listing.add_column(column, overflow="fold")
        # the reason is never cut: it says what to do (the rule, the fix, the day it waits for)
        listing.add_column("Why", overflow="fold", ratio=1, min_width=30)
        for f in files:
            listing.add_row(
                f.source,
                Text(f.path),
                f"{f.size:,}",
                f.last_seen_at.astimezone(tz).strftime("%d/%m %H:%M"),
                Text(f.status, style=STATUS_STYLE.get(f.status, "")),
                Text(f.message or ""),
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
    for o in a.existing_store.files.observations(limit=500):
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
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=None,
    help="Sender processes on this store (default: [engine] workers, 1). This process also "
    "collects, publishes and serves tracking; the others only send, and each sender account "
    "is sent by one process at a time. SIGTERM, SIGINT and SIGHUP reach them all; a worker "
    "that dies is reported and started again.",
)
@click.option("--sender", is_flag=True, hidden=True, help="(a worker of --workers: only send)")
@click.option(
    "--supervisor",
    type=int,
    default=None,
    hidden=True,
    help="(a worker of --workers: the pid of the process that started it; it stops when "
    "that process is gone)",
)
@LOG_FORMAT_OPTION
@click.pass_context
def run_command(
    ctx: click.Context,
    until_idle: bool,
    settle: float,
    workers: int | None,
    sender: bool,
    supervisor: int | None,
    log_format: str,
) -> None:
    """Run the engine: collect and import files on each source's schedule, send campaigns
    paced within each account's rate, and watch bounce rates (the guard); with [tracking],
    serve the tracking endpoint, and poll the bounce mailboxes ([mailboxes.NAME]).

    SIGTERM or Ctrl-C stops it cleanly: messages in flight finish (within
    engine.stop_timeout), every lease is released, the exit status is 0; a second signal
    stops at once. SIGHUP reads the configuration again (a file with problems is refused and
    the running configuration kept). With --until-idle the exit status is 1 when deliveries
    failed for a systemic reason (an account's channel failing) or a campaign cannot be sent
    as configured; the problems are printed.
    """
    import gc

    from engine.lifeline import die_with_parent, gone, parent_gone, watch_parent
    from engine.service import Engine, configure_logging

    # a SIGHUP before the engine's own handler is in place must not kill the process
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if supervisor is not None and not die_with_parent(supervisor):
        click.echo(gone(supervisor), err=True)  # before it started anything
        ctx.exit(0)
    a = app(ctx)
    config = a.require_config()
    count = workers or config.engine.workers
    a.preflight(
        config,
        listen=config.tracking.listen if config.tracking and not (until_idle or sender) else None,
    )
    configure_logging(config, log_format)
    engine = Engine(
        a.store,
        a.plugins,
        config,
        a.clock,
        mode="until-idle" if until_idle else "run",
        workers=count,
        sender=sender,
    )
    crew = None
    if count > 1 and not sender:
        from engine.cli.workers import Workers

        presence = engine.dispatcher.presence

        def given_up(slot: int, reason: str) -> None:  # said by `disparo status` (detail)
            presence.detail = {
                **presence.detail,
                "workers_given_up": [*presence.detail.get("workers_given_up", []), reason],
            }

        crew = Workers(
            config.path,
            count - 1,
            until_idle=until_idle,
            log_format=log_format,
            stop_timeout=config.engine.stop_timeout.total_seconds(),
            restart_limit=config.engine.worker_restarts,
            restart_window=config.engine.worker_restart_window.total_seconds(),
            on_give_up=given_up,
        )

    orphaned = False

    def stop(why: str) -> None:
        nonlocal orphaned
        if supervisor is not None and parent_gone(supervisor):
            # the kernel's SIGTERM (the parent died, kill -9 included) or the watch below
            if orphaned:
                return
            orphaned = True
            log.warning(
                "%s",
                gone(supervisor),
                extra={"event": "worker.orphaned", "supervisor": supervisor},
            )
            if engine.stop.is_set():  # stopping already: not a second stop (at once)
                return
            why = f"the supervising process {supervisor} is gone"
        engine.request_stop(why)
        if crew is not None:
            crew.forward(signal.SIGTERM)

    def reload() -> None:
        engine.request_reload()
        if crew is not None:
            crew.forward(signal.SIGHUP)

    async def main() -> Any:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop, "SIGTERM")
        loop.add_signal_handler(signal.SIGINT, stop, "SIGINT")
        loop.add_signal_handler(signal.SIGHUP, reload)
        watch = None
        if supervisor is not None:  # where the kernel sends no signal when it dies
            watch = asyncio.create_task(watch_parent(supervisor, lambda: stop("gone")))
        if crew is not None:
            await crew.start()
            engine.workers_done = crew.finish
        try:
            if until_idle:
                return await engine.run_until_idle(settle=settle)
            if not sender:
                _print_banner(a, config, log_format)
            # what start-up built lives as long as the process: out of the cyclic collector's
            # rounds (as `tracking serve`: each open allocates; a full round would walk every
            # module's objects)
            gc.freeze()
            await engine.run()
            return None
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            if watch is not None:
                watch.cancel()
            if crew is not None:
                await crew.finish()  # with --until-idle, done already (before publishing)

    from engine.web import ListenError

    try:
        summary = asyncio.run(main())
    except ListenError as exc:  # taken between the preflight's check and the start
        fail(exc.strerror or str(exc), code=2)
    if until_idle:
        if not sender:
            _print_run(a, summary)
        ctx.exit(1 if summary.failed else 0)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """The engines running on this store: where, since when, their last heartbeat, the sender
    accounts and bounce mailboxes each holds, the messages each has in flight. An engine
    whose heartbeat is older than its lease is not running (its work is rescued by the next
    engine that looks)."""
    from engine.sending.status import engine_json, engines_header

    a = app(ctx)
    now = a.clock.now()
    header = engines_header(a.existing_store, now)
    tz = a.config.tz
    if as_json:
        body = {
            "engines": [engine_json(e, now, tz) for e in header.running],
            "unresponsive": [engine_json(e, now, tz) for e in header.unresponsive],
        }
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if not header.running:
        a.console.print(Text(header.text, style="yellow"))
    else:
        table = Table(title=header.text, title_justify="left")
        for column in (
            "Engine",
            "Version",
            "Mode",
            "Started",
            "Heartbeat",
            "Accounts",
            "Mailboxes",
            "In flight",
        ):
            table.add_column(column)
        for e in header.running:
            table.add_row(
                Text(e.node),
                e.version,
                e.mode,
                e.started_at.astimezone(tz).strftime("%d/%m %H:%M:%S"),
                f"{(now - e.heartbeat_at).total_seconds():.0f} s ago",
                Text(", ".join(e.accounts) or "-"),
                Text(", ".join(e.mailboxes) or "-"),
                f"{e.in_flight:,}",
            )
        a.console.print(table)
    for e in header.running:
        for reason in e.detail.get("workers_given_up", []):
            a.console.print(Text(f"{e.node}: {reason}", style="red"))
    for e in header.unresponsive:
        a.console.print(
            Text(
                f"{e.node}: no heartbeat since "
                f"{e.heartbeat_at.astimezone(tz).strftime('%d/%m %H:%M:%S')}: it stopped "
                f"without saying so; the next engine rescues its {e.in_flight:,} claimed "
                "deliveries",
                style="red",
            )
        )


def _print_banner(a: AppContext, config: Config, log_format: str) -> None:
    """What runs, said once at start: on the console, or as a log record with JSON logs (so
    that a JSON log stream holds nothing but JSON)."""
    from engine.sending.status import describe_accounts

    head = f"disparo running: {len(config.sources)} source(s), {len(config.accounts)} account(s)"
    accounts = describe_accounts(config, a.plugins, a.clock)
    if log_format == "json":
        log.info(
            "%s",
            head,
            extra={
                "event": "engine.started",
                "sources": list(config.sources),
                "accounts": accounts,
            },
        )
        return
    a.console.print(f"{head}; Ctrl-C stops")
    for line in accounts:
        a.console.print(f"  {line}")


def _print_not_yet(a: AppContext, summary: Any) -> None:
    """Files left on their source for their date (N5), each with the reason in full: waiting
    for a later day, or dated a day that has passed."""
    for poll in summary.polls:
        waiting = set(poll.waiting)
        for f in a.existing_store.files.observations(poll.source):
            if f.path in waiting or (f.status == "ignored" and f.code == "not-today"):
                state = "waiting" if f.path in waiting else "not imported"
                a.console.print(
                    Text(f"{state}: {poll.source}: {f.path}: {f.message or f.status}", style="cyan")
                )


def _print_rejected_names(a: AppContext, poll: Any) -> None:
    """Files refused by their name alone (never downloaded): why, and where they went."""
    from engine.intake.importer import ImportReport

    if not poll.rejected_names:
        return
    # the ledger keeps why (newest first): the listing forgets a file once it moved
    seen: dict[str, Any] = {}
    for entry in a.existing_store.files.ledger(poll.source):
        seen.setdefault(entry.path, entry)
    for path in poll.rejected_names:
        table = Table(
            show_header=False, title=Text("REJECTED", style="bold red"), title_justify="left"
        )
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        table.add_row("file", Text(path))
        table.add_row("outcome", "rejected by its name")
        found = seen.get(path)
        for line in (found.message or "").splitlines() if found else []:
            table.add_row("problem", Text(line))
        for label, where in _where_it_went(a, poll.source, ImportReport(path, "rejected")):
            table.add_row(label, where)
        a.console.print(table)


def _print_campaigns(a: AppContext, summary: Any) -> None:
    if not summary.campaigns:
        return
    table = Table(title="Campaigns", title_justify="left")
    for column in ("Id", "Name", "Status", "Recipients", "Sent"):
        table.add_column(column, overflow="fold")
    for cid, name, status, recipients, sent in summary.campaigns:
        table.add_row(str(cid), Text(name), status, f"{recipients:,}", f"{sent:,}")
    a.console.print(table)


def _print_run(a: AppContext, summary: Any) -> None:
    table = Table(title="Collection", title_justify="left")
    columns = ("Source", "Imported", "Rejected", "Waiting", "Still changing", "Errors", "Status")
    for column in columns:
        table.add_column(column)
    for poll in summary.polls:
        rejected = [r.path for r in poll.reports if r.outcome != "imported"] + poll.rejected_names
        errors = len(poll.errors) + len(poll.refused)
        table.add_row(
            poll.source,
            str(len(poll.imported)),
            str(len(rejected)),
            str(len(poll.waiting)),
            str(len(poll.unstable)),
            Text(str(errors), style="red") if errors else "0",
            Text("ok", style="green") if poll.ok else Text(poll.error or "error", style="red"),
        )
    a.console.print(table)
    _print_not_yet(a, summary)
    for poll in summary.polls:
        for path in poll.errors:
            a.console.print(
                Text(
                    f"source {poll.source}: {path} could not be taken this poll; it is tried "
                    "again at the next (the reason: `disparo sources`)",
                    style="red",
                )
            )
        for path in poll.refused:
            a.console.print(
                Text(
                    f"source {poll.source}: {path} refused (a link or an unsafe name); the "
                    "reason: `disparo sources`",
                    style="red",
                )
            )
        _print_rejected_names(a, poll)
        for report in poll.reports:
            _print_report(a, report, poll.source)
    for box in summary.mailboxes:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(box.kinds.items()))
        a.console.print(
            Text(
                f"mailbox {box.name}: {box.message}" + (f" ({kinds})" if kinds else ""),
                style="" if box.ok else "red",
            )
        )
    _print_campaigns(a, summary)
    if summary.problems:
        a.console.print(Text("Problems", style="bold red"))
        for problem in summary.problems:
            a.console.print(Text(f"  {problem}", style="red"))
    if summary.interrupted:
        a.console.print(Text("stopped before everything due was sent", style="yellow"))


COMMANDS = (import_command, sources, run_command, status_command)

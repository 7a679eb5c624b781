"""``disparo mailboxes …`` (the bounce mailboxes) and ``disparo tracking …`` (the endpoint)."""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime

import click
from rich.table import Table
from rich.text import Text

from engine.cli.context import LOG_FORMAT_OPTION, AppContext, app, fail
from engine.config import MailboxSettings


def _t(a: AppContext, value: datetime | None) -> str:
    return value.astimezone(a.config.tz).strftime("%d/%m %H:%M:%S") if value else "-"


@click.group("mailboxes", invoke_without_command=True)
@click.pass_context
def mailboxes_command(ctx: click.Context) -> None:
    """Bounce mailboxes (IMAP, D14): last and next poll, status, reports handled and kept.

    Messages the poller cannot read (or that name no delivery of ours) stay in the mailbox,
    flagged `$DisparoUnparsed`, and are counted here under "kept".
    """
    if ctx.invoked_subcommand is not None:
        return
    a = app(ctx)
    config = a.require_config()
    if not config.mailboxes:
        a.console.print(
            "no [mailboxes.NAME] configured (see README, “Bounces by e-mail”)", markup=False
        )
        return
    states = a.existing_store.mailboxes.states()
    table = Table(title="Bounce mailboxes", title_justify="left")
    for column in (
        "Name",
        "Server",
        "Folder",
        "Every",
        "Last poll",
        "Next poll",
        "Handled",
        "Kept",
    ):
        table.add_column(column)
    table.add_column("Status")
    for name, s in config.mailboxes.items():
        state = states.get(name)
        kept = state.unparsed if state else 0
        status = (
            Text("disabled", style="dim")
            if not s.enabled
            else Text("not polled yet", style="dim")
            if state is None or state.status == "unknown"
            else Text(state.message or "ok", style="green")
            if state.status == "ok"
            else Text(state.message or "error", style="red")
        )
        table.add_row(
            name,
            f"{s.user}@{s.host}:{s.port} ({s.tls})",
            f"{s.folder} → {s.processed_folder}",
            f"{int(s.every.total_seconds())} s",
            _t(a, state.last_poll_at if state else None),
            _t(a, state.next_poll_at if state else None),
            f"{state.handled:,}" if state else "0",
            Text(f"{kept:,}", style="yellow" if kept else ""),
            status,
        )
    a.console.print(table)


def _mailbox(a: AppContext, name: str) -> MailboxSettings:
    config = a.require_config()
    found = config.mailboxes.get(name)
    if found is None:
        known = ", ".join(sorted(config.mailboxes)) or "none configured"
        fail(f"no mailbox named `{name}` in [mailboxes] (mailboxes: {known})")
    return found


@mailboxes_command.command("test")
@click.argument("name")
@click.pass_context
def mailboxes_test(ctx: click.Context, name: str) -> None:
    """Connect to mailbox NAME, log in and open its folder; say what failed in plain words."""
    from engine.feedback.mailbox import MailboxError, check_mailbox

    a = app(ctx)
    settings = _mailbox(a, name)
    try:
        message = check_mailbox(settings)
    except MailboxError as exc:
        fail(f"mailbox {name}: {exc}")
    a.console.print(Text(f"mailbox {name}: ok — {message}", style="green"))


@mailboxes_command.command("poll")
@click.argument("names", nargs=-1)
@click.pass_context
def mailboxes_poll(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Poll the mailboxes NAMES (default: every enabled one) once, now."""
    from engine.feedback.mailbox import MailboxPoller
    from engine.feedback.metrics import Metrics
    from engine.feedback.tracking import SignalWriter
    from engine.service import signer_for

    a = app(ctx)
    config = a.require_config()
    chosen = [_mailbox(a, n) for n in names] or [m for m in config.mailboxes.values() if m.enabled]
    signer = signer_for(config)
    if signer is None:
        fail("bounce mailboxes need [tracking] (its secret signs the VERP addresses)")

    async def main() -> list[tuple[str, bool, str]]:
        writer = SignalWriter(a.store, a.plugins, Metrics())
        writer.start()
        out = []
        try:
            for settings in chosen:
                poller = MailboxPoller(a.store, settings, a.clock, signer, writer.apply_many)
                r = await poller.poll()
                kinds = ", ".join(f"{k} {n}" for k, n in sorted(r.kinds.items()))
                out.append((r.name, r.ok, r.message + (f" ({kinds})" if kinds else "")))
        finally:
            await writer.close()
        return out

    failed = False
    for name, ok, message in asyncio.run(main()):
        a.console.print(Text(f"{name}: {message}", style="green" if ok else "red"))
        failed = failed or not ok
    if failed:
        raise SystemExit(1)


@click.group("tracking")
def tracking_command() -> None:
    """The tracking endpoint: opens, clicks, unsubscribes, Twilio and SES webhooks."""


@tracking_command.command("serve")
@click.option("--listen", help="host:port to bind (default: [tracking] listen).")
@LOG_FORMAT_OPTION
@click.pass_context
def tracking_serve(ctx: click.Context, listen: str | None, log_format: str) -> None:
    """Serve only the tracking endpoint (`disparo run` serves it too): for a web-facing
    process apart from the engine, both on the same store."""
    import gc

    from engine.feedback.metrics import Metrics
    from engine.feedback.tracking import Tracking
    from engine.service import configure_logging
    from engine.web import ListenError

    a = app(ctx)
    config = a.require_config()
    settings = config.tracking
    if settings is None:
        fail("[tracking] is not configured: add `public_url` and `secret_file` (see README)")
    if listen is not None:
        from engine.config.preflight import bind_problem

        problem = bind_problem(listen)
        if problem is not None:
            fail(f"--listen: {problem}", code=2)
    a.preflight(config, listen=None if listen is not None else settings.listen)
    configure_logging(config, log_format)

    async def main() -> str | None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tracking = Tracking(
            a.store,
            config,
            a.clock,
            plugins=a.plugins,
            metrics=Metrics(a.store),
            writer_process=True,  # its transactions never hold the endpoint's GIL
        )
        try:
            try:
                bound = await tracking.start(listen)
            except ListenError as exc:  # taken between the check above and now
                return exc.strerror or str(exc)
            a.console.print(
                f"tracking endpoint on http://{bound} (public URL {settings.public_url}); "
                "Ctrl-C stops"
            )
            # what start-up built lives as long as the process: out of the cyclic collector's
            # rounds (each open allocates; a full round would walk every module's objects)
            gc.freeze()
            await stop.wait()
        finally:
            await tracking.stop()
        return None

    problem = asyncio.run(main())
    if problem is not None:
        fail(problem, code=2)


COMMANDS = (mailboxes_command, tracking_command)

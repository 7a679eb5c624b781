"""``disparo check-name`` (N1–N21) and ``disparo plan`` (D5–D9)."""

from __future__ import annotations

import json
import math
from datetime import date, datetime, tzinfo

import click
from rich.table import Table
from rich.text import Text

from engine.cli.context import AppContext, app, fail
from engine.clock import local_now
from engine.config import Config
from engine.mailing_names import NameCheck, check_name
from engine.schedule import DEFAULT_RATE, Schedule, plan

_STATUS_STYLE = {"valid": "bold green", "invalid": "bold red", "not-mailing": "yellow"}


def _parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DD, got {value!r}") from None


def _parse_local(value: str | None, tz: tzinfo) -> datetime | None:
    if value is None:
        return None
    try:
        naive = datetime.strptime(value, "%Y-%m-%dT%H:%M")  # noqa: DTZ007 - local, zoned below
    except ValueError:
        raise click.BadParameter(f"expected YYYY-MM-DDTHH:MM (local time), got {value!r}") from None
    return naive.replace(tzinfo=tz)


def _checks(a: AppContext, names: tuple[str, ...], today: date | None) -> list[NameCheck]:
    config = a.config
    tz = config.tz
    if today is None:
        now = local_now(a.clock, tz).replace(tzinfo=None)
        today = now.date()
    else:
        # a chosen processing day: a deadline before that day has surely passed
        now = datetime.combine(today, datetime.min.time())
    return [
        check_name(
            n,
            today=today,
            now=now,
            default_subject=config.default_subject,
            words=a.plugins.channel_words(),
        )
        for n in names
    ]


@click.command("check-name")
@click.argument("names", nargs=-1, required=True)
@click.option("--today", "today_text", metavar="YYYY-MM-DD", help="The processing day (N5).")
@click.option("--json", "as_json", is_flag=True, help="One JSON array, as in the spec.")
@click.pass_context
def check_name_command(
    ctx: click.Context, names: tuple[str, ...], today_text: str | None, as_json: bool
) -> None:
    """Check mailing file names (rules N1–N21) and explain what each one would do.

    A name may carry its folder (BRAD/mailing_…csv): the folder is the wallet when the name
    has no _c. Exit status 0 when every name is valid (warnings allowed), else 1.
    """
    a = app(ctx)
    checks = _checks(a, names, _parse_day(today_text))
    if as_json:
        click.echo(json.dumps([c.as_json() for c in checks], ensure_ascii=False, indent=2))
    else:
        a.console.print(_table(checks))
    ctx.exit(0 if all(c.ok for c in checks) else 1)


def _summary(c: NameCheck) -> Text:
    m = c.mailing
    text = Text()
    if m is None:
        return text
    parts = [f"{m.date.strftime('%d/%m/%Y')} #{m.sequence}"]
    if m.description:
        parts.append(f"“{m.description}”")
    if m.hygiene:
        parts.append("hygiene")
    if m.whatsapp_number:
        parts.append(f"from {m.whatsapp_number}")
    if m.template:
        parts.append(f"template {m.template}")
    if m.sender:
        parts.append(f"sender {m.sender}")
    if m.subject:
        parts.append(f"subject “{m.subject}”")
    if m.start_at:
        parts.append(f"starts {m.start_at.strftime('%d/%m/%Y %H:%M')}")
    if m.pacing:
        parts.append(m.pacing.describe())
    if m.exclude_recent_hours is not None:
        parts.append(f"skip contacts active in {m.exclude_recent_hours} h")
    if m.replace_tags:
        parts.append("replace tags")
    if m.remove_other_wallets:
        parts.append("remove from other wallets")
    if m.deadline:
        parts.append(f"deadline {m.deadline.strftime('%d/%m/%Y %H:%M')}")
    text.append(", ".join(parts), style="dim")
    return text


def _table(checks: list[NameCheck]) -> Table:
    table = Table(show_lines=True, title="Mailing names", title_justify="left")
    table.add_column("File", overflow="fold", max_width=48)
    table.add_column("Status")
    table.add_column("Wallet")
    table.add_column("Channel")
    table.add_column("Details", overflow="fold")
    for c in checks:
        details = _summary(c)
        for p in c.errors:
            if details:
                details.append("\n")
            details.append("✗ ", style="red").append(p.code, style="bold red")
            details.append(f": {p.message}")
        for p in c.warnings:
            if details:
                details.append("\n")
            details.append("! ", style="yellow").append(p.code, style="bold yellow")
            details.append(f": {p.message}")
        channel = c.mailing.channel if c.mailing and c.mailing.channel else "import only"
        wallet = c.wallet or "-"
        if c.mailing and c.mailing.wallet is None and c.folder:
            wallet += " (folder)"
        table.add_row(
            Text(c.file),
            Text(c.status, style=_STATUS_STYLE[c.status]),
            wallet,
            channel if c.mailing else "-",
            details,
        )
    return table


def _account_rate(config: Config, check: NameCheck) -> tuple[float, str]:
    """D9: the rate of the account that would send it, chosen exactly as the importer chooses
    (D10, ``resolve_account``), else 10/s; and where it came from."""
    from engine.sending.accounts import resolve_account

    m = check.mailing
    assert m is not None and m.channel is not None
    name, why = resolve_account(config, m.channel, check.wallet, m.sender)
    if name is None:
        return DEFAULT_RATE, f"default: {why}"
    return config.accounts[name].rate, f"account {name}"


@click.command("plan")
@click.argument("name", required=False)
@click.option(
    "--source",
    "source_name",
    help="A source whose format paces every campaign itself (a triplet source's batch_size "
    "and batch_every, D6): plan one of its sends (NAME is then not needed).",
)
@click.option("--contacts", type=click.IntRange(min=0), required=True, help="Recipients.")
@click.option("--now", "now_text", metavar="YYYY-MM-DDTHH:MM", help="Local time of import.")
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Messages per second (default: the sender account's rate, else 10).",
)
@click.option("--json", "as_json", is_flag=True, help="JSON with D9's keys.")
@click.pass_context
def plan_command(
    ctx: click.Context,
    name: str | None,
    source_name: str | None,
    contacts: int,
    now_text: str | None,
    rate: float | None,
    as_json: bool,
) -> None:
    """Show how the campaign of mailing NAME (or of a send of --source SOURCE) would be
    paced, without sending (D5–D9).

    Lists each batch (size, release time, expected end at the rate), the expected finish,
    and how many recipients would expire at the deadline (_LE).
    """
    a = app(ctx)
    config = a.config
    tz = config.tz
    now = _parse_local(now_text, tz) or local_now(a.clock, tz)
    if source_name is not None:
        settings = config.sources.get(source_name)
        if settings is None:
            known = ", ".join(sorted(config.sources)) or "none configured"
            fail(f"no source named {source_name!r} (sources: {known})")
        if settings.format != "mailing":
            fmt = a.plugins.formats()[settings.format]
            how = "--rate"
            if rate is None:
                rate, how = _source_rate(config, settings.options.get("account"))
            pacing = fmt.source_pacing(settings)
            result = plan(contacts, now, pacing=pacing, rate=rate)
            title = f"Plan for a send of source {source_name} ({settings.format})"
            paced = pacing.describe() if pacing else "no pacing"
            caption = f"{paced}, {contacts} recipients, {rate:g} messages/s ({how}), times in {tz}"
            _print_plan(a, result, title, caption, None, contacts, as_json)
            return
    if name is None:
        fail("give the mailing NAME to plan (or --source SOURCE for a source that paces its sends)")
    check = check_name(
        name,
        today=now.date(),
        default_subject=config.default_subject,
        words=a.plugins.channel_words(),
    )
    if not check.ok or check.mailing is None:
        lines = "\n".join(f"  {p.code}: {p.message}" for p in check.errors)
        fail(f"{name} is not a valid mailing name:\n{lines}")
    m = check.mailing
    if m.channel is None:
        fail(f"{name} has no channel, so it only imports contacts and creates no campaign (N21)")
    source = "--rate"
    if rate is None:
        rate, source = _account_rate(config, check)
    start = now
    if m.start_at is not None:
        start = max(now, m.start_at.replace(tzinfo=tz))
    deadline = m.deadline.replace(tzinfo=tz) if m.deadline else None
    result = plan(contacts, start, pacing=m.pacing, rate=rate, deadline=deadline)
    caption = f"{m.channel}, {contacts} recipients, {rate:g} messages/s ({source}), times in {tz}"
    _print_plan(a, result, f"Plan for {check.file}", caption, deadline, contacts, as_json)


def _source_rate(config: Config, account: str | None) -> tuple[float, str]:
    """D9 for a send of a source: the rate of the source's ``account``, else of the only
    account, else 10/s."""
    if account is not None and account in config.accounts:
        return config.accounts[account].rate, f"account {account}"
    if len(config.accounts) == 1:
        only = next(iter(config.accounts.values()))
        return only.rate, f"account {only.name}"
    return DEFAULT_RATE, "default"


def _print_plan(
    a: AppContext,
    result: Schedule,
    title: str,
    caption: str,
    deadline: datetime | None,
    contacts: int,
    as_json: bool,
) -> None:
    tz = a.config.tz
    if as_json:
        click.echo(json.dumps(result.as_json(tz), indent=2))
        return

    def t(value: datetime) -> str:
        return value.astimezone(tz).strftime("%d/%m/%Y %H:%M:%S")

    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    table.add_column("Batch", justify="right")
    table.add_column("Size", justify="right")
    table.add_column("Released")
    table.add_column("Done (expected)")
    table.add_column("Note")
    for b in result.batches:
        if b.expired:
            note = Text("expired: released at or after the deadline", style="bold red")
        elif b.expiring:
            note = Text(f"{b.expiring} expire at the deadline", style="yellow")
        else:
            note = Text("")
        table.add_row(str(b.index), str(b.size), t(b.release_at), t(b.done_at), note)
    a.console.print(table)
    a.console.print(f"Starts    {t(result.start_at)}")
    if deadline:
        a.console.print(f"Deadline  {t(deadline)}")
    if result.finish_at is not None:
        a.console.print(f"Finishes  {t(result.finish_at)} (expected)")
    if result.expired:
        share = math.floor(100 * result.expired / contacts) if contacts else 0
        a.console.print(
            f"[bold red]{result.expired} recipients ({share}%) would expire at the deadline[/]"
        )
    elif contacts:
        a.console.print("[green]every recipient is sent before the deadline[/]")


COMMANDS = (check_name_command, plan_command)

"""``disparo campaign new`` and ``disparo campaign start``: campaigns composed by an operator
for groups, sent like file campaigns (pacing, deadline, guard, priority, suppressions)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from engine.actions import ROLES, actor
from engine.cli.campaigns import ROLE_OPTION, accounts_command, campaign
from engine.cli.context import AppContext, app, fail


def _when(a: AppContext, value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} `{value}` is not a time: write YYYY-MM-DDTHH:MM (local time, D2)")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=a.config.tz)


def _read(path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"{option} {path} cannot be read ({exc.strerror or exc}); give the template file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def require_operator(a: AppContext, role: str | None) -> str:
    """The acting role, if it may compose and start campaigns (operator or admin)."""
    acting = role or a.config.engine.role
    if ROLES.index(acting) < ROLES.index("operator"):
        fail(
            f"composing and starting campaigns needs the operator role or higher; you act as "
            f"{acting} (engine.role in the config, or --role)"
        )
    return acting


def address_kinds(a: AppContext) -> dict[str, str]:
    """Each channel's contact address (email | phone), from the channel plugins."""
    return {name: cls.address_kind for name, cls in a.plugins.channels().items()}


@campaign.command("new")
@click.option("--account", required=True, help="The sender account ([accounts.NAME]).")
@click.option("--group", "groups", multiple=True, required=True, help="A group (repeatable).")
@click.option("--subject", help="The e-mail subject (a template: {{ nome }}).")
@click.option(
    "--html",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The e-mail body (HTML template).",
)
@click.option(
    "--text",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The SMS text (template).",
)
@click.option("--template", help="The WhatsApp template ([templates.NAME]).")
@click.option("--name", help="The campaign's name (default: the subject).")
@click.option("--start", help="YYYY-MM-DDTHH:MM, local time (default: now) (D2).")
@click.option("--deadline", help="YYYY-MM-DDTHH:MM: nothing is sent at or after it (D8).")
@click.option("--pace", help="PERCENT/INTERVAL, e.g. 15/20m: 15 % every 20 minutes (D5).")
@click.option("--priority", type=int, default=0, show_default=True)
@click.option("--draft", is_flag=True, help="Keep it as a draft: `campaign start ID` starts it.")
@click.option("--json", "as_json", is_flag=True)
@ROLE_OPTION
@click.pass_context
def campaign_new(
    ctx: click.Context,
    account: str,
    groups: tuple[str, ...],
    subject: str | None,
    html: Path | None,
    text: Path | None,
    template: str | None,
    name: str | None,
    start: str | None,
    deadline: str | None,
    pace: str | None,
    priority: int,
    draft: bool,
    as_json: bool,
    role: str | None,
) -> None:
    """Compose a campaign for groups. Its audience is frozen when it starts: the groups'
    members minus suppressions (D3, D4). Prints its id ({"id": N} with --json)."""
    from engine.intake.compose import CampaignRequest, ComposeError, create

    a = app(ctx)
    config = a.require_config()
    require_operator(a, role)
    request = CampaignRequest(
        account=account,
        groups=list(groups),
        name=name,
        subject=subject,
        html=_read(html, "--html"),
        text=_read(text, "--text"),
        template=template,
        start=_when(a, start, "--start"),
        deadline=_when(a, deadline, "--deadline"),
        pace=pace,
        priority=priority,
        draft=draft,
        origin="operator",
    )
    try:
        campaign_id, _ = create(a.store, config, request, address_kinds(a), actor=actor())
    except ComposeError as exc:
        fail(
            "the campaign was not created: "
            # the request's fields are the API's names; the CLI's options are singular
            + "; ".join(f"--{_OPTIONS.get(p.field, p.field)}: {p.message}" for p in exc.problems)
        )
    _report(a, campaign_id, as_json)


#: the option of `campaign new` for a request field whose name differs
_OPTIONS = {"groups": "group"}


def _report(a: AppContext, campaign_id: int, as_json: bool) -> None:
    c = a.store.campaigns.get(campaign_id, content=False)
    assert c is not None
    if as_json:
        click.echo(json.dumps({"id": campaign_id}))
        return
    if c.status == "draft":
        a.console.print(
            f"[green]campaign {campaign_id} saved as a draft[/]: start it with "
            f"`{a.hint('campaign', 'start', str(campaign_id))}`"
        )
        return
    when = c.start_at.astimezone(a.config.tz).strftime("%d/%m/%Y %H:%M")
    a.console.print(
        f"[green]campaign {campaign_id}[/]: {c.recipients:,} recipient(s) "
        f"({c.counters.get('suppressed', 0):,} suppressed), {c.batches} batch(es), starts "
        f"{when}; follow it with `{a.hint('campaign', 'show', str(campaign_id))}`"
    )


@campaign.command("start")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@ROLE_OPTION
@click.pass_context
def campaign_start(ctx: click.Context, campaign_id: int, as_json: bool, role: str | None) -> None:
    """Start a draft: its audience is frozen now (its groups' members minus suppressions)."""
    from engine.store.groups import GroupError

    a = app(ctx)
    require_operator(a, role)
    try:
        a.existing_store.groups.start(campaign_id, actor=actor())
    except GroupError as exc:
        fail(str(exc))
    _report(a, campaign_id, as_json)


@click.group("api")
def api_command() -> None:
    """The send API ("Envios por API"): client systems create campaigns over HTTP."""


@api_command.command("serve")
@click.option("--listen", help="HOST:PORT to bind (default: [api] listen, 127.0.0.1:8081).")
@click.pass_context
def api_serve(ctx: click.Context, listen: str | None) -> None:
    """Serve the send API alone (`disparo run` serves it too when [api.clients] exist);
    Ctrl-C or SIGTERM stops it."""
    import asyncio
    import signal

    from engine.api import SendApi
    from engine.config.settings import check_listen

    a = app(ctx)
    config = a.require_config()
    if listen is not None and (problem := check_listen(listen)):
        fail(f"--listen: {problem}")
    if not config.api.clients:
        fail(
            "no API client is configured: add [api.clients.NAME] with `token_file` to "
            "disparo.toml (each client system has its own bearer token, F5)"
        )
    server = SendApi(a.store, config, address_kinds(a))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            bound = await server.start(listen)
        except OSError as exc:  # engine.web.ListenError: it names the setting and the fix
            fail(exc.strerror or str(exc), code=2)
        a.err.print(
            f"send API on http://{bound}/api/v1/ ({len(config.api.clients)} client(s)); "
            "Ctrl-C stops it"
        )
        try:
            await stop.wait()
        finally:
            await server.stop()

    asyncio.run(main())


@accounts_command.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def accounts_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One account's usage: its settings (no secret), messages sent per hour over the last
    24 hours, and its bounce and complaint rates against its limits (D14, D15)."""
    from rich.table import Table

    from engine.sending.usage import account_usage

    a = app(ctx)
    config = a.config
    settings = config.accounts.get(name)
    if settings is None:
        known = ", ".join(sorted(config.accounts)) or "none configured"
        fail(f"there is no account `{name}` (accounts: {known})")
    usage = account_usage(a.store, settings, a.clock.now())
    data = usage.as_json(config.tz)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    listing = Table(title=f"Account {name}", title_justify="left", show_header=False)
    listing.add_column("Setting")
    listing.add_column("Value", overflow="fold")
    for key, value in usage.settings.items():
        listing.add_row(key, "-" if value is None else str(value))
    a.console.print(listing)
    peak = max((h.sent for h in usage.hours), default=0) or 1
    hours = Table(title="Sent per hour (last 24 h)", title_justify="left")
    hours.add_column("Hour")
    hours.add_column("Sent", justify="right")
    hours.add_column("")
    for h in usage.hours:
        hours.add_row(
            h.start.astimezone(config.tz).strftime("%d/%m %H:00"),
            f"{h.sent:,}",
            "█" * max(0, round(30 * h.sent / peak)),
        )
    a.console.print(hours)
    r = usage.rates

    def verdict(over: bool) -> str:
        if over and r.judged:
            return "[bold red]over the limit[/]"
        if over:
            return f"[yellow]over, but under min_sample ({r.limits.min_sample})[/]"
        return "[green]ok[/]"

    a.console.print(
        f"24 h: {r.sent:,} sent; bounces {r.bounces:,} = {r.bounce_rate:.2f} % of "
        f"{r.limits.bounce_limit:g} % {verdict(r.bounces_over)}; complaints {r.complaints:,} = "
        f"{r.complaint_rate:.3f} % of {r.limits.complaint_limit:g} % "
        f"{verdict(r.complaints_over)} (D14, D15)"
    )


COMMANDS: tuple[Any, ...] = (api_command,)

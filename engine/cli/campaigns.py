"""``disparo campaigns``, ``disparo campaign …``, ``disparo accounts …`` and
``disparo suppressions …``: look at sending, and steer it."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from engine.actions import ROLES, Applied, actor, submit_and_apply
from engine.cli.context import AppContext, app, fail
from engine.cli.plaintable import print_table

if TYPE_CHECKING:
    # the store is imported by the commands that use it, so building the command line
    # (every `disparo` process does) stays light
    from engine.campaign import Campaign
    from engine.reads import Trouble
    from engine.schedule import Schedule

STATUS_STYLE = {
    "draft": "dim cyan",
    "scheduled": "cyan",
    "sending": "bold green",
    "paused": "yellow",
    "held": "bold yellow",
    "completed": "green",
    "cancelled": "dim",
    "expired": "red",
}


def _t(a: AppContext, value: datetime | None) -> str:
    return value.astimezone(a.config.tz).strftime("%d/%m/%Y %H:%M") if value else "-"


def campaign_json(a: AppContext, c: Campaign) -> dict[str, Any]:
    def t(value: datetime | None) -> str | None:
        return value.astimezone(a.config.tz).isoformat(timespec="seconds") if value else None

    return {
        "id": c.id,
        "name": c.name,
        "origin": c.origin,
        "wallet": c.wallet,
        "channel": c.channel,
        "account": c.account,
        "status": c.status,
        "reason": c.status_reason,
        "priority": c.priority,
        "created_at": t(c.created_at),
        "start_at": t(c.start_at),
        "deadline": t(c.deadline),
        "started_at": t(c.started_at),
        "finished_at": t(c.finished_at),
        "recipients": c.recipients,
        "remaining": c.remaining,
        "batches": c.batches,
        "released_batches": c.released_batches,
        "pacing": c.pacing.as_json() if c.pacing else None,
        **dict(c.counters),
    }


@click.command("campaigns")
@click.option("--status", type=click.Choice(list(STATUS_STYLE)), help="Only this status.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def campaigns_command(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """List campaigns, newest first."""
    a = app(ctx)
    reader = a.quick_reader  # the same query without SQLAlchemy when the store is at head
    if reader is not None:
        found = reader.recent_campaigns(limit, status=status)
    else:
        found = a.existing_store.campaigns.recent(limit, status=status)
    if as_json:
        click.echo(json.dumps([campaign_json(a, c) for c in found], ensure_ascii=False, indent=2))
        return
    table = Table(title="Campaigns", title_justify="left")
    for column in (
        "Id",
        "Created",
        "Name",
        "Origin",
        "Wallet",
        "Channel",
        "Sender",
        "Recipients",
        "Sent",
        "Start",
        "End",
        "Status",
    ):
        table.add_column(
            column,
            justify="right" if column in ("Id", "Recipients", "Sent") else "left",
            overflow="fold",
        )
    for c in found:
        table.add_row(
            str(c.id),
            _t(a, c.created_at),
            Text(c.name),
            c.origin,
            c.wallet or "-",
            c.channel,
            c.account or "-",
            f"{c.recipients:,}",
            f"{c.counters['sent']:,}",
            _t(a, c.started_at or c.start_at),
            _t(a, c.finished_at or c.deadline),
            Text(
                c.status
                + (f": {c.status_reason[:60]}" if c.status == "held" and c.status_reason else ""),
                style=STATUS_STYLE.get(c.status, ""),
            ),
        )
    print_table(a.console, table)


@click.group("campaign")
def campaign() -> None:
    """One campaign: show it, or pause, resume, cancel it, change its priority."""


def _get(a: AppContext, campaign_id: int) -> Campaign:
    c = a.existing_store.campaigns.get(campaign_id)
    if c is None:
        fail(f"there is no campaign {campaign_id} (see `{a.hint('campaigns')}`)")
    return c


@campaign.command("show")
@click.argument("campaign_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def campaign_show(ctx: click.Context, campaign_id: int, as_json: bool) -> None:
    """Totals (D18), the pacing timeline and the deadline of a campaign."""
    from engine.campaign import COUNTERS

    a = app(ctx)
    now = a.clock.now()
    reader = a.quick_reader  # the same queries without SQLAlchemy when the store is at head
    trouble: Trouble
    if reader is not None:
        from engine.reads import account_rate
        from engine.schedule import live

        found = reader.campaign(campaign_id)
        if found is None:
            fail(f"there is no campaign {campaign_id} (see `{a.hint('campaigns')}`)")
        c = found
        rate = account_rate(a.config, c)  # as status.campaign_schedule (D9, D10)
        schedule = live(c, now, rate=rate, open_by_batch=reader.open_by_batch(c))
        trouble = reader.trouble(c)
    else:
        from engine.sending.status import campaign_schedule, campaign_trouble

        c = _get(a, campaign_id)
        schedule = campaign_schedule(a.existing_store, a.config, c, now)
        trouble = campaign_trouble(a.existing_store, c)
    if as_json:
        body = (
            campaign_json(a, c)
            | {"schedule": schedule.as_json(a.config.tz)}
            | _trouble_json(a, trouble)
        )
        click.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    table = Table(show_header=False, title=f"Campaign {c.id}: {c.name}", title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = [
        (
            "status",
            Text(
                c.status + (f" — {c.status_reason}" if c.status_reason else ""),
                style=STATUS_STYLE.get(c.status, ""),
            ),
        ),
        ("wallet / channel / account", f"{c.wallet or '-'} / {c.channel} / {c.account or '-'}"),
        ("origin", c.origin),
        ("priority", str(c.priority)),
        ("created / start", f"{_t(a, c.created_at)} / {_t(a, c.start_at)}"),
        ("deadline", _t(a, c.deadline)),
        ("recipients", f"{c.recipients:,} (remaining {c.remaining:,})"),
    ]
    for key in COUNTERS:
        rows.append((key, f"{c.counters.get(key, 0):,}"))
    retrying = sum(w.count for w in trouble.waiting)
    rows.append(
        (
            "errors",
            Text(
                f"{trouble.error_total:,} (retried, failed or bounced attempts)",
                style="red" if trouble.error_total else "",
            ),
        )
    )
    if retrying:
        rows.append(("retrying", f"{retrying:,}; the next retry at {_t(a, trouble.next_retry_at)}"))
    if trouble.account_paused:
        rows.append(
            (
                "account",
                Text(
                    f"{c.account} sends nothing now: {trouble.account_paused}"
                    + (f" (until {_t(a, trouble.account_until)})" if trouble.account_until else ""),
                    style="bold yellow",
                ),
            )
        )
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else Text(str(value)))
    print_table(a.console, table)
    if trouble.waiting and not c.finished:
        why = Table(title="Not sent yet, because", title_justify="left")
        for column in ("Reason", "Deliveries", "Next retry"):
            why.add_column(column)
        for w in trouble.waiting:
            why.add_row(Text(w.reason), f"{w.count:,}", _t(a, w.next_at))
        print_table(a.console, why)
    if trouble.errors:
        errors = Table(title="Errors by reason", title_justify="left")
        for column in ("Outcome", "Reason", "Scope", "Count", "Last"):
            errors.add_column(column)
        for e in trouble.errors[:5]:
            errors.add_row(
                e.outcome,
                Text(e.reason),
                "the channel" if e.scope == "account" else "the recipient",
                f"{e.count:,}",
                _t(a, e.last_at),
            )
        if len(trouble.errors) > 5:
            errors.caption = f"and {len(trouble.errors) - 5} other reason(s): see --json"
        print_table(a.console, errors)
    _print_schedule(a, c, schedule)


def _trouble_json(a: AppContext, trouble: Trouble) -> dict[str, Any]:
    def t(value: datetime | None) -> str | None:
        return value.astimezone(a.config.tz).isoformat(timespec="seconds") if value else None

    return {
        "errors_total": trouble.error_total,
        "errors": [
            {
                "outcome": e.outcome,
                "reason": e.reason,
                "scope": e.scope,
                "count": e.count,
                "first_at": t(e.first_at),
                "last_at": t(e.last_at),
            }
            for e in trouble.errors
        ],
        "retrying": sum(w.count for w in trouble.waiting),
        "next_retry_at": t(trouble.next_retry_at),
        "not_sent_because": [
            {"reason": w.reason, "count": w.count, "next_retry_at": t(w.next_at)}
            for w in trouble.waiting
        ],
        "account_paused": (
            {"reason": trouble.account_paused, "until": t(trouble.account_until)}
            if trouble.account_paused
            else None
        ),
    }


def _print_schedule(a: AppContext, c: Campaign, schedule: Schedule) -> None:
    """The pacing timeline (D5–D8): each batch, when it is released, what is left of it."""
    if c.pacing is not None:
        a.console.print(
            f"Pacing: {c.pacing.describe()} · {schedule.released}/{c.batches} batches released"
        )
    if c.batches > 1:
        timeline = Table(title="Batches", title_justify="left")
        for column in ("Batch", "Size", "Released", "Left", "State"):
            timeline.add_column(column)
        for b in schedule.batches:
            if b.open == 0:
                state = "done"
            elif b.index <= schedule.released:
                state = "released"
            else:
                state = "waiting"
            if b.expired:
                state = "expires (after the deadline)"
            timeline.add_row(str(b.index), f"{b.size:,}", _t(a, b.release_at), f"{b.open:,}", state)
        print_table(a.console, timeline)
    if c.finished:
        return
    if c.status in ("held", "paused"):
        a.console.print(f"No projected finish while the campaign is {c.status}")
    elif schedule.finish_at is not None:
        behind = schedule.finish_at < a.clock.now()
        a.console.print(
            f"Projected finish {_t(a, schedule.finish_at)} at {schedule.rate:g}/s"
            + (" (behind: sends are failing or waiting)" if behind else "")
            + (f"; {schedule.expired:,} would expire at the deadline" if schedule.expired else "")
        )


@campaign.command("results")
@click.argument("campaign_id", type=int)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Write every recipient to this CSV file (`-` for standard output).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="JSON lines, one recipient per line (every recipient, or the first --limit).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="At most this many recipients. Default: 20 on screen, every one with --json; "
    "--csv always writes every recipient.",
)
@click.pass_context
def campaign_results(
    ctx: click.Context, campaign_id: int, csv_path: Path | None, as_json: bool, limit: int | None
) -> None:
    """Per-recipient results (D17): sent, delivered, first read, clicks and the URLs clicked,
    why it was not sent, unsubscribes (this campaign / all). `--csv` exports every recipient
    (`;`-separated, UTF-8 with BOM, formula-safe cells, E2)."""
    if csv_path is not None and (as_json or limit is not None):
        raise click.UsageError("--csv writes every recipient: give it without --json and --limit")
    from engine.publish.results import (  # here: the listings start without it
        RESULT_COLUMNS,
        result_row,
    )

    a = app(ctx)
    c = _get(a, campaign_id)
    store = a.existing_store
    if as_json:
        written = 0
        for chunk in store.results.all(c.id, chunk=min(limit or 5000, 5000)):
            for r in chunk:
                if limit is not None and written >= limit:
                    return
                row = dict(zip(RESULT_COLUMNS, result_row(r, a.config.tz), strict=True))
                row["urls_clicadas"] = list(r.urls)  # type: ignore[assignment]
                click.echo(json.dumps(row, ensure_ascii=False))
                written += 1
        return
    if csv_path is not None:
        _export_results(a, c, csv_path)
        return
    limit = limit or 20
    table = Table(title=f"Campaign {c.id}: first {limit} recipients", title_justify="left")
    for column in ("Code", "Address", "Status", "Sent", "Read", "Clicks", "Reason", "Unsub."):
        table.add_column(column, overflow="fold")
    shown = 0
    for chunk in store.results.all(c.id, chunk=max(1, min(limit, 5000))):
        for r in chunk:
            if shown >= limit:
                break
            cells = result_row(r, a.config.tz)
            table.add_row(
                Text(cells[0]),
                Text(r.address),
                Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                cells[5],
                cells[7],
                str(r.clicks),
                Text(r.reason or ""),
                "all" if r.unsubscribed_all else ("campaign" if r.unsubscribed_campaign else ""),
            )
            shown += 1
        if shown >= limit:
            break
    print_table(a.console, table)
    if c.recipients > shown:
        a.console.print(
            f"{c.recipients - shown:,} more; export them all with "
            f"`{a.hint('campaign', 'results', str(c.id), '--csv', 'results.csv')}`"
        )


def _export_results(a: AppContext, c: Campaign, path: Path) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from engine.publish.results import export_results, write_results

    err = a.err
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as progress:
        task = progress.add_task(f"campaign {c.id}", total=c.recipients)

        def advance(done: int) -> None:
            progress.update(task, completed=done)

        if str(path) == "-":
            write_results(a.existing_store, c.id, sys.stdout, a.config.tz, advance)
            return
        written = export_results(a.existing_store, c.id, path, a.config.tz, progress=advance)
    a.console.print(f"{written:,} recipients of campaign {c.id} written to {path}")


def _act(
    ctx: click.Context, action: str, target: str, args: dict[str, Any], role: str | None
) -> Applied:
    a = app(ctx)
    # a campaign exists only in a store that exists; an address or an account can be acted
    # on before anything ran (a suppression added ahead of the first campaign)
    store = a.existing_store if target.startswith("campaign:") else a.store
    applied = asyncio.run(
        submit_and_apply(
            store,
            actor=actor(),
            role=role or a.config.engine.role,
            action=action,
            target=target,
            args=args,
        )
    )
    if not applied.ok:
        fail(applied.message)
    a.console.print(f"[green]done:[/] {applied.message}")
    return applied


ROLE_OPTION = click.option(
    "--role",
    type=click.Choice(ROLES),
    help="Act with this role (default: engine.role in the config).",
)


@campaign.command("pause")
@click.argument("campaign_id", type=int)
@click.option("--reason", default="")
@ROLE_OPTION
@click.pass_context
def campaign_pause(ctx: click.Context, campaign_id: int, reason: str, role: str | None) -> None:
    """Stop sending a campaign (messages in flight finish)."""
    _act(ctx, "pause", f"campaign:{campaign_id}", {"reason": reason}, role)


@campaign.command("resume")
@click.argument("campaign_id", type=int)
@ROLE_OPTION
@click.pass_context
def campaign_resume(ctx: click.Context, campaign_id: int, role: str | None) -> None:
    """Resume a paused campaign (its pacing schedule shifts by the pause)."""
    _act(ctx, "resume", f"campaign:{campaign_id}", {}, role)


@campaign.command("cancel")
@click.argument("campaign_id", type=int)
@click.option("--reason", default="")
@ROLE_OPTION
@click.pass_context
def campaign_cancel(ctx: click.Context, campaign_id: int, reason: str, role: str | None) -> None:
    """Cancel a campaign: nothing more of it is sent."""
    _act(ctx, "cancel", f"campaign:{campaign_id}", {"reason": reason}, role)


@campaign.command("priority")
@click.argument("campaign_id", type=int)
@click.argument("priority", type=int)
@ROLE_OPTION
@click.pass_context
def campaign_priority(
    ctx: click.Context, campaign_id: int, priority: int, role: str | None
) -> None:
    """Set a campaign's priority (higher goes first; it takes its account over at the next
    batch boundary, D11)."""
    _act(ctx, "priority", f"campaign:{campaign_id}", {"priority": priority}, role)


@click.group("accounts", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def accounts_command(ctx: click.Context, as_json: bool) -> None:
    """Sender accounts: rate, in flight, 24 h bounce and complaint rates, guard state (D14)."""
    if ctx.invoked_subcommand is not None:
        return
    a = app(ctx)
    config = a.config
    from engine.rates import Rates

    configured = {n: s.channel for n, s in config.accounts.items()}
    since = a.clock.now() - timedelta(hours=24)
    reader = a.quick_reader  # the same queries without SQLAlchemy when the store is at head
    states = reader.account_states() if reader is not None else {}
    counts: Callable[[str], tuple[int, int, int]]
    if reader is not None and all(
        name in states and states[name].channel == channel for name, channel in configured.items()
    ):  # every configured account has its row already: nothing to write first
        flying = reader.in_flight()
        errors = reader.account_errors(since=since, limit=5)
        counts = partial(reader.account_counts, since=since)
    else:
        from engine.sending.status import account_errors

        store = a.existing_store
        store.accounts.sync(configured)
        states = store.accounts.states()
        flying = store.campaigns.in_flight()
        errors = account_errors(store, since=since)
        counts = partial(store.accounts.counts, since=since)
    rows: list[dict[str, Any]] = []
    for name, s in config.accounts.items():
        st = states[name]
        # counted now, not as of the guard's last check (every 5 minutes)
        rates = Rates(*counts(name), s.limits)
        rows.append(
            {
                "name": name,
                "channel": s.channel,
                "sandbox": s.sandbox,
                "rate": s.rate,
                "burst": s.burst,
                "in_flight": flying.get(name, 0),
                "sent_24h": rates.sent,
                "bounces_24h": rates.bounces,
                "complaints_24h": rates.complaints,
                "bounce_rate": round(rates.bounce_rate, 3),
                "bounce_limit": s.bounce_limit,
                "bounce_over": rates.bounces_over,
                "complaint_rate": round(rates.complaint_rate, 4),
                "complaint_limit": s.complaint_limit,
                "complaint_over": rates.complaints_over,
                "min_sample": s.min_sample,
                "guard": st.guard_state,
                "paused_until": _t(a, st.paused_until) if st.paused_until else None,
                "pause_reason": st.pause_reason,
                "override_by": st.override_by,
                "override_reason": st.override_reason,
                "checked_at": _t(a, st.checked_at) if st.checked_at else None,
                "breaker": st.breaker_state,
                "breaker_reason": st.breaker_reason,
                "breaker_since": _t(a, st.breaker_opened_at) if st.breaker_open else None,
                "breaker_retry_at": _t(a, st.breaker_retry_at) if st.breaker_open else None,
                "breaker_failures": st.breaker_failures,
                "breaker_threshold": s.breaker_failures,
                "recent_errors": [
                    {
                        "outcome": e.outcome,
                        "reason": e.reason,
                        "scope": e.scope,
                        "count": e.count,
                        "last_at": _t(a, e.last_at),
                    }
                    for e in errors.get(name, [])
                ],
            }
        )
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="Sender accounts", title_justify="left")
    for column in (
        "Account",
        "Channel",
        "Rate",
        "In flight",
        "Sent 24 h",
        "Bounces",
        "Complaints",
        "Guard",
        "Channel",
    ):
        table.add_column(column, overflow="fold")
    for r in rows:
        guard = Text(r["guard"], style="green" if r["guard"] == "ok" else "bold red")
        if r["guard"] == "paused":
            guard.append(f" until {r['paused_until']}: {r['pause_reason']}")
        if r["override_by"]:
            guard = Text(
                f"override by {r['override_by']}: {r['override_reason']}", style="bold yellow"
            )
        table.add_row(
            r["name"] + (" (sandbox)" if r["sandbox"] else ""),
            r["channel"],
            f"{r['rate']:g}/s (burst {r['burst']})",
            str(r["in_flight"]),
            f"{r['sent_24h']:,}",
            f"{r['bounce_rate']:.2f} % / {r['bounce_limit']:g} %",
            f"{r['complaint_rate']:.3f} % / {r['complaint_limit']:g} %",
            guard,
            Text(
                f"paused since {r['breaker_since']}: {r['breaker_reason']}; next try "
                f"{r['breaker_retry_at']}",
                style="bold red",
            )
            if r["breaker"] == "open"
            else Text("ok", style="green"),
        )
    print_table(a.console, table)
    failing = [(r["name"], e) for r in rows for e in r["recent_errors"][:3]]
    if failing:
        listing = Table(
            title="Most frequent errors (reasons seen in the last 24 h)", title_justify="left"
        )
        for column in ("Account", "Outcome", "Reason", "Count", "Last"):
            listing.add_column(column)
        for name, e in failing:
            listing.add_row(name, e["outcome"], Text(e["reason"]), f"{e['count']:,}", e["last_at"])
        print_table(a.console, listing)


@accounts_command.command("override")
@click.argument("name")
@click.option("--reason", help="Why the guard is overridden (required, D16).")
@click.option("--clear", is_flag=True, help="Remove the override: the guard applies again.")
@ROLE_OPTION
@click.pass_context
def accounts_override(
    ctx: click.Context, name: str, reason: str | None, clear: bool, role: str | None
) -> None:
    """Admin: keep account NAME sending whatever the guard says (D16), or --clear that."""
    if not clear and not reason:
        fail("give --reason (an override is recorded with who did it and why, D16) or --clear")
    _act(
        ctx,
        "clear-override" if clear else "override",
        f"account:{name}",
        {"reason": reason or ""},
        role,
    )


@click.group("suppressions", invoke_without_command=True)
@click.option("--search", "text", default="", help="Part of an address.")
@click.option(
    "--origin", type=click.Choice(["bounce", "complaint", "unsubscribe", "stop", "manual"])
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=200, show_default=True, help="Newest first."
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def suppressions_command(
    ctx: click.Context, text: str, origin: str | None, limit: int, as_json: bool
) -> None:
    """Addresses never sent to (D4): list, add, remove."""
    if ctx.invoked_subcommand is not None:
        return
    a = app(ctx)
    found = a.existing_store.suppressions.search(text, origin=origin, limit=limit)
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "kind": s.kind,
                        "address": s.address,
                        "origin": s.origin,
                        "reason": s.reason,
                        "campaign_id": s.campaign_id,
                        "by": s.created_by,
                        "at": _t(a, s.created_at),
                    }
                    for s in found
                ],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table(title="Suppressions", title_justify="left")
    for column in ("Address", "Origin", "Reason", "By", "When"):
        table.add_column(column, overflow="fold")
    for s in found:
        table.add_row(
            Text(s.address), s.origin, Text(s.reason or ""), s.created_by, _t(a, s.created_at)
        )
    print_table(a.console, table)


@suppressions_command.command("add")
@click.argument("address")
@click.option("--reason", default="")
@ROLE_OPTION
@click.pass_context
def suppressions_add(ctx: click.Context, address: str, reason: str, role: str | None) -> None:
    """Never send to ADDRESS (an e-mail or a phone number)."""
    _act(ctx, "suppress", f"address:{address}", {"reason": reason}, role)


@suppressions_command.command("remove")
@click.argument("address")
@click.option("--reason", required=True, help="Why the suppression is lifted.")
@ROLE_OPTION
@click.pass_context
def suppressions_remove(ctx: click.Context, address: str, reason: str, role: str | None) -> None:
    """Send to ADDRESS again."""
    _act(ctx, "unsuppress", f"address:{address}", {"reason": reason}, role)


COMMANDS = (campaigns_command, campaign, accounts_command, suppressions_command)

"""``disparo groups …``: named sets of contacts, fed by hand, by a CSV file or by an HTTP
endpoint (G1–G3)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table
from rich.text import Text

from engine.actions import actor
from engine.cli.context import AppContext, app, fail, file_progress

if TYPE_CHECKING:
    from rich.progress import Progress

    from engine.store.groups import Group


def _t(a: AppContext, value: datetime | None) -> str | None:
    return value.astimezone(a.config.tz).isoformat(timespec="seconds") if value else None


def group_json(a: AppContext, g: Group) -> dict[str, Any]:
    """A group as ``groups --json`` shows it."""
    feed = a.config.groups.get(g.name)
    return {
        "name": g.name,
        "members": g.members,
        "suppressed": g.suppressed,
        "source": g.source,
        "feed": feed.schedule.describe() if feed else None,
        "synced_at": _t(a, g.synced_at),
        "sync_status": g.sync_status,
        "sync_message": g.sync_message,
        "next_sync_at": _t(a, g.next_sync_at),
        "created_at": _t(a, g.created_at),
        "updated_at": _t(a, g.updated_at),
    }


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", name):
        fail(
            f"`{name}` is not a group name: use letters, digits, `_`, `-` and `.` (at most "
            "100), e.g. parceiros-sp"
        )


@click.group("groups", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def groups_command(ctx: click.Context, as_json: bool) -> None:
    """Groups of contacts: members, suppressed members, where they come from, last sync."""
    if ctx.invoked_subcommand is not None:
        return
    a = app(ctx)
    store = a.store
    for name in a.config.groups:
        store.groups.ensure(name, source="http")
    found = store.groups.all()
    if as_json:
        click.echo(json.dumps([group_json(a, g) for g in found], ensure_ascii=False, indent=2))
        return
    if not found:
        a.console.print(f"No groups yet: `{a.hint('groups', 'create', 'NAME')}` makes one.")
        return
    table = Table(title="Groups", title_justify="left")
    for column in ("Group", "Members", "Suppressed", "Source", "Synced", "Sync"):
        table.add_column(column, justify="right" if column in ("Members", "Suppressed") else "left")
    for g in found:
        j = group_json(a, g)
        sync = Text("-")
        if g.sync_status == "error":
            sync = Text(f"failed: {g.sync_message}", style="bold red")
        elif g.sync_status == "ok":
            sync = Text("ok", style="green")
        table.add_row(
            g.name,
            f"{g.members:,}",
            f"{g.suppressed:,}",
            g.source + (f" ({j['feed']})" if j["feed"] else ""),
            (j["synced_at"] or "-").replace("T", " "),
            sync,
        )
    a.console.print(table)


@groups_command.command("create")
@click.argument("name")
@click.pass_context
def groups_create(ctx: click.Context, name: str) -> None:
    """Create an empty group."""
    from engine.store.groups import GroupError

    _check_name(name)
    a = app(ctx)
    try:
        a.store.groups.create(name, actor=actor())
    except GroupError as exc:
        fail(str(exc))
    a.console.print(
        f"[green]group {name} created[/]: add members with "
        f"`{a.hint('groups', 'add', name, 'ADDRESS…')}` or "
        f"`{a.hint('groups', 'import', name, 'FILE.csv')}`"
    )


def _require(a: AppContext, name: str) -> None:
    if a.store.groups.get(name) is None:
        fail(
            f"there is no group `{name}` (see `{a.hint('groups')}`; create it with "
            f"`{a.hint('groups', 'create', name)}`)"
        )


@groups_command.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def groups_import(ctx: click.Context, name: str, file: Path, as_json: bool) -> None:
    """Add the contacts of a CSV file to a group (delimiter and encoding detected, N22;
    headers by alias, N23; address hygiene, N26)."""
    from engine.clock import local_today
    from engine.intake.groupfile import import_group_file
    from engine.plugins.format import FileRejected, FormatContext

    a = app(ctx)
    if not file.is_file():
        fail(f"{file} is not a file that can be read; give the path of the CSV file")
    _require(a, name)
    config = a.config
    fmt = a.plugins.formats()["mailing"](
        FormatContext(
            config,
            "groups",
            local_today(a.clock, config.tz),
            a.clock.now(),
            words=a.plugins.channel_words(),
        )
    )

    def advance(done: int, progress: Progress, task: Any) -> None:
        progress.update(task, completed=done)

    try:
        with file_progress(a, disable=as_json) as progress:
            task = progress.add_task(f"importing {file.name}", total=file.stat().st_size)
            report = import_group_file(
                a.store,
                fmt,
                name,
                file,
                actor=actor(),
                progress=partial(advance, progress=progress, task=task),
            )
    except FileRejected as exc:
        fail(f"{file.name}: not imported: " + "; ".join(p.message for p in exc.problems))
    rejected = sum(report.rejected.values())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "group": name,
                    "rows": report.rows,
                    "imported": report.imported,
                    "rejected": dict(report.rejected),
                    "members": report.members,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    a.console.print(
        f"[green]{file.name}:[/] {report.imported:,} of {report.rows:,} row(s) added to group "
        f"{name}, now {report.members:,} member(s)"
    )
    if rejected:
        a.console.print(f"[yellow]{rejected:,} row(s) refused:[/]")
        for bad in report.examples:
            a.console.print(Text(f"  line {bad.line}: {bad.reason} ({bad.rule})"))


def _rows_for(a: AppContext, addresses: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Addresses (e-mails or phones) as staged rows, after hygiene; fails naming every bad one."""
    from engine.addresses import normalise_email, normalise_phone

    rows: list[tuple[Any, ...]] = []
    bad: list[str] = []
    for i, raw in enumerate(addresses):
        if "@" in raw:
            checked = normalise_email(raw)
            kind = "email"
        else:
            checked = normalise_phone(raw)
            kind = "phone"
        if checked.value is None:
            if kind == "phone" and any(ch.isalpha() for ch in raw):
                # letters and no @: neither form; say both (an e-mail was likely meant)
                bad.append(
                    f"`{raw.strip()}` is neither an e-mail address (it has no @) nor a phone number"
                )
            else:
                bad.append(str(checked.error))
            continue
        email = checked.value if kind == "email" else None
        phone = checked.value if kind == "phone" else None
        rows.append(
            (i + 1, f"{kind}:{checked.value.lower()}", None, None, email, phone, "{}", None, None)
        )
    if bad:
        fail("nothing changed: " + "; ".join(bad) + " (N26)")
    return rows


@groups_command.command("add")
@click.argument("name")
@click.argument("addresses", nargs=-1, required=True)
@click.pass_context
def groups_add(ctx: click.Context, name: str, addresses: tuple[str, ...]) -> None:
    """Add members by e-mail address or phone number."""
    a = app(ctx)
    _require(a, name)
    rows = _rows_for(a, addresses)
    with a.store.groups.session() as session:
        session.stage(rows)
        members = session.write_members(name, replace=False, source="manual", actor=actor())
    a.console.print(f"[green]group {name}:[/] {members:,} member(s)")


@groups_command.command("remove")
@click.argument("name")
@click.argument("addresses", nargs=-1, required=True)
@click.pass_context
def groups_remove(ctx: click.Context, name: str, addresses: tuple[str, ...]) -> None:
    """Take members out by e-mail address or phone number."""
    a = app(ctx)
    _require(a, name)
    identities = [str(r[1]) for r in _rows_for(a, addresses)]
    removed = a.store.groups.remove(name, identities, actor=actor())
    group = a.store.groups.get(name)
    left = group.members if group else 0
    a.console.print(f"[green]group {name}:[/] {removed:,} removed, {left:,} member(s) left")


@groups_command.command("show")
@click.argument("name")
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--per-page", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def groups_show(ctx: click.Context, name: str, page: int, per_page: int, as_json: bool) -> None:
    """A group and one page of its members, in order."""
    a = app(ctx)
    group = a.store.groups.get(name)
    if group is None:
        fail(f"there is no group `{name}` (see `{a.hint('groups')}`)")
    members = a.store.groups.members(name, offset=(page - 1) * per_page, limit=per_page)
    pages = max(1, -(-group.members // per_page))
    if as_json:
        click.echo(
            json.dumps(
                {
                    **group_json(a, group),
                    "page": page,
                    "pages": pages,
                    "items": [
                        {
                            "position": m.position,
                            "name": m.name,
                            "email": m.email,
                            "phone": m.phone,
                            "suppressed": m.suppressed,
                        }
                        for m in members
                    ],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table(
        title=f"Group {name}: {group.members:,} member(s), {group.suppressed:,} suppressed — "
        f"page {page} of {pages}",
        title_justify="left",
    )
    for column in ("#", "Name", "E-mail", "Phone", "Suppressed"):
        table.add_column(column)
    for m in members:
        table.add_row(
            str(m.position),
            Text(m.name or "-"),
            Text(m.email or "-"),
            m.phone or "-",
            Text("yes", style="red") if m.suppressed else "",
        )
    a.console.print(table)
    if page < pages:
        a.console.print(f"next: `{a.hint('groups', 'show', name, '--page', str(page + 1))}`")


@groups_command.command("sync")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def groups_sync(ctx: click.Context, name: str, as_json: bool) -> None:
    """Sync an HTTP-fed group now ([groups.NAME]): every page, then the members replaced in
    one transaction; on any failure the group keeps its members (G2)."""
    from engine.intake.groupfeed import FeedError, sync_group

    a = app(ctx)
    config = a.require_config()
    settings = config.groups.get(name)
    if settings is None:
        fed = ", ".join(sorted(config.groups)) or "none"
        fail(
            f"group `{name}` has no feed: add [groups.{name}] with `url_env` or `url_file` to "
            f"disparo.toml (fed groups: {fed}) (G1)"
        )
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[records]} record(s)"),
        console=a.err,
        transient=True,
        disable=as_json,
    ) as progress:
        task = progress.add_task(f"syncing {name}", total=None, records=0)

        def advance(page: int, pages: int, records: int) -> None:
            progress.update(task, completed=page, total=pages, records=f"{records:,}")

        try:
            result = asyncio.run(sync_group(a.store, config, settings, a.clock, progress=advance))
        except FeedError as exc:
            fail(f"group {name}: the sync failed, the group keeps its members: {exc}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "group": name,
                    "members": result.members,
                    "records": result.records,
                    "rejected": result.rejected,
                    "pages": result.pages,
                },
                indent=2,
            )
        )
        return
    a.console.print(
        f"[green]group {name} synced:[/] {result.members:,} member(s) from {result.records:,} "
        f"record(s) in {result.pages} page(s)"
        + (f", {result.rejected:,} refused (not a valid e-mail)" if result.rejected else "")
    )


COMMANDS = (groups_command,)

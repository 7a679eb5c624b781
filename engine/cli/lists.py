"""``disparo lists``: each list (wallet), its members, the sources that feed it, the last file
imported into it and the last export written from it (S1, S2)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from engine.cli.context import AppContext, app

#: how many of the newest publications are read to find each list's last export
RECENT = 5000


@dataclass
class Feed:
    """A source feeding a list: a list sync source (``list = "…"``)."""

    source: str
    format: str
    mode: str | None
    exports: tuple[str, ...]
    folder: str | None
    next_export: datetime | None


@dataclass
class ListView:
    code: str
    members: int = 0
    removed: int = 0
    created_at: datetime | None = None
    last_import: dict[str, Any] | None = None
    last_export: dict[str, Any] | None = None
    pending_exports: int = 0
    feeds: list[Feed] = field(default_factory=list)


def gather(a: AppContext) -> list[ListView]:
    """Every list the store knows and every list a source feeds, by code."""
    from engine.publish.service import Publishing

    config = a.config
    store = a.existing_store
    now = a.clock.now()
    views: dict[str, ListView] = {}
    for s in store.lists.summaries():
        view = views.setdefault(s.code, ListView(s.code))
        view.members, view.removed, view.created_at = s.members, s.removed, s.created_at
        if s.last_import_path is not None:
            view.last_import = {
                "file": s.last_import_path,
                "source": s.last_import_source,
                "at": s.last_import_at,
            }
    publishing = Publishing(store, a.plugins, config, a.clock)
    for settings in config.sources.values():
        code = settings.options.get("list")
        if not isinstance(code, str):
            continue
        exports = settings.options.get("exports") or {}
        upcoming = [
            when
            for p in (publishing.publishers(settings) if settings.enabled else [])
            if (when := p.next_due(now)) is not None
        ]
        views.setdefault(code, ListView(code)).feeds.append(
            Feed(
                settings.name,
                settings.format,
                settings.options.get("mode"),
                tuple(exports.get("files", ())),
                exports.get("folder"),
                min(upcoming) if upcoming else None,
            )
        )
    for p in reversed(store.publications.recent(RECENT)):  # oldest first: the newest wins
        code = p.detail.get("list") if isinstance(p.detail, dict) else None
        found = views.get(code) if isinstance(code, str) else None
        if found is None:
            continue
        if p.status == "published":
            found.last_export = {"file": p.path, "source": p.source, "at": p.published_at}
        else:
            found.pending_exports += 1
    return [views[code] for code in sorted(views)]


def _iso(a: AppContext, value: datetime | None) -> str | None:
    return value.astimezone(a.config.tz).isoformat(timespec="seconds") if value else None


def _short(a: AppContext, value: datetime | None) -> str:
    return value.astimezone(a.config.tz).strftime("%d/%m/%Y %H:%M") if value else "-"


def as_json(a: AppContext, v: ListView) -> dict[str, Any]:
    def stamped(found: dict[str, Any] | None) -> dict[str, Any] | None:
        return {**found, "at": _iso(a, found["at"])} if found else None

    return {
        "list": v.code,
        "members": v.members,
        "removed": v.removed,
        "created_at": _iso(a, v.created_at),
        "last_import": stamped(v.last_import),
        "last_export": stamped(v.last_export),
        "pending_exports": v.pending_exports,
        "sources": [
            {
                "source": f.source,
                "format": f.format,
                "mode": f.mode,
                "exports": list(f.exports),
                "folder": f.folder,
                "next_export": _iso(a, f.next_export),
            }
            for f in v.feeds
        ],
    }


@click.command("lists")
@click.option("--json", "json_out", is_flag=True, help="A JSON array, one object per list.")
@click.pass_context
def lists_command(ctx: click.Context, json_out: bool) -> None:
    """The lists (wallets): members now and those a list sync took out, the sources that feed
    each (mode, exports, the next export), the last file imported into it and the last export
    written from it."""
    a = app(ctx)
    views = gather(a)
    if json_out:
        click.echo(json.dumps([as_json(a, v) for v in views], ensure_ascii=False, indent=2))
        return
    if not views:
        a.console.print("no list yet: files imported into a wallet, or a source's `list`, make one")
        return
    table = Table(title="Lists", title_justify="left")
    for column in ("List", "Members", "Fed by", "Last import", "Last export", "Next export"):
        table.add_column(
            column, overflow="fold", justify="right" if column == "Members" else "left"
        )
    for v in views:
        members = f"{v.members:,}" + (f" ({v.removed:,} left)" if v.removed else "")
        fed = "\n".join(
            f"{f.source} ({f.mode or f.format})"
            + (f": {', '.join(f.exports)} → {f.folder}/" if f.exports else "")
            for f in v.feeds
        )
        imported = (
            f"{v.last_import['file']} ({v.last_import['source']}), {_short(a, v.last_import['at'])}"
            if v.last_import
            else "-"
        )
        exported = (
            f"{v.last_export['file']} ({v.last_export['source']}), {_short(a, v.last_export['at'])}"
            if v.last_export
            else "-"
        )
        if v.pending_exports:
            exported += f"\n{v.pending_exports} waiting to be written (retried every minute)"
        upcoming = [f.next_export for f in v.feeds if f.next_export is not None]
        table.add_row(
            Text(v.code),
            members,
            Text(fed or "-"),
            Text(imported),
            Text(exported),
            _short(a, min(upcoming)) if upcoming else "-",
        )
    a.console.print(table)


COMMANDS = (lists_command,)

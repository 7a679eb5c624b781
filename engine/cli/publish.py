"""``disparo publish``: write back to the sources what their publishers owe now."""

from __future__ import annotations

import json

import click
from rich.table import Table
from rich.text import Text

from engine.cli.context import app, fail


@click.command("publish")
@click.argument("sources", nargs=-1)
@click.option("--dry-run", is_flag=True, help="List what is due; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="A JSON array, one object per publication.")
@click.pass_context
def publish_command(
    ctx: click.Context, sources: tuple[str, ...], dry_run: bool, as_json: bool
) -> None:
    """Publish what is due now on every source with publishers (or the SOURCES named):
    result files, exports. Each is written once (a ledger), under a temporary name renamed
    when complete. Naming SOURCES also runs their exports now, off their schedule (a list
    sync's export already due is that run; otherwise a new one, `…_2.csv` when the day has
    one). Exits 1 when a publication failed (it is tried again on the next run)."""
    from engine.publish.service import Publishing

    a = app(ctx)
    config = a.require_config()
    unknown = [s for s in sources if s not in config.sources]
    if unknown:
        known = ", ".join(sorted(config.sources)) or "none configured"
        fail(f"no source named {', '.join(unknown)} (sources: {known})")
    quiet = [s for s in sources if not config.sources[s].publish]
    if quiet:
        fail(
            f'source {", ".join(quiet)} publishes nothing: add `publish = ["…"]` to its '
            f"table (`{a.hint('plugins')}` lists the publishers)"
        )
    publishing = Publishing(a.store, a.plugins, config, a.clock)
    outcomes = publishing.publish(sources or None, dry_run=dry_run, on_demand=bool(sources))
    if as_json:
        click.echo(json.dumps([o.__dict__ for o in outcomes], ensure_ascii=False, indent=2))
    elif not outcomes:
        a.console.print("nothing is due")
    else:
        table = Table(title="Due" if dry_run else "Published", title_justify="left")
        for column in ("Source", "Publisher", "File", "Status", "Size"):
            table.add_column(column, justify="right" if column == "Size" else "left")
        for o in outcomes:
            status = Text(o.status, style="green" if o.status == "published" else "")
            if o.status == "failed":
                status = Text(f"failed: {o.message}", style="bold red")
            size = f"{o.size:,}" if o.status == "published" else ""
            table.add_row(o.source, o.publisher, Text(o.path), status, size)
        a.console.print(table)
    if any(o.status == "failed" for o in outcomes):
        ctx.exit(1)


COMMANDS = (publish_command,)

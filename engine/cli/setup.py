"""Commands that set disparo up: ``init``, ``plugins``, ``db upgrade``, ``db status``."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from engine.cli.context import app, fail
from engine.config import CONFIG_NAME, write_starter


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False), default=".")
@click.option("--force", is_flag=True, help="Overwrite an existing disparo.toml.")
@click.pass_context
def init(ctx: click.Context, directory: Path, force: bool) -> None:
    """Write a commented starter disparo.toml into DIRECTORY, with the folders it names."""
    a = app(ctx)
    try:
        made = write_starter(directory, force=force)
    except FileExistsError:
        fail(f"{directory / CONFIG_NAME} already exists; use --force to overwrite it")
    for path in made:
        kind = "folder" if path.is_dir() else "file"
        a.console.print(f"[green]created[/] {kind} {path}")
    config = directory / CONFIG_NAME
    a.console.print(
        f"\nNext: edit {escape(str(config))}, check it with "
        f"`{escape(a.hint('config', 'check', config=config))}`, then try "
        f"`{escape(a.hint('check-name', 'mailing_DDMMYY_001_cWALLET.csv', config=config))}`"
    )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List the loaded plugins and what each one registers."""
    a = app(ctx)
    infos = a.plugins.describe()
    if as_json:
        data = [
            {
                "name": i.name,
                "distribution": i.distribution,
                "version": i.version,
                "module": i.module,
                "hooks": i.hooks,
                "registers": [{"registry": r.registry, "name": r.name} for r in i.registered],
            }
            for i in infos
        ]
        click.echo(json.dumps(data, indent=2))
        return
    table = Table(title="Loaded plugins", title_justify="left")
    table.add_column("Plugin", style="bold")
    table.add_column("From")
    table.add_column("Hooks")
    table.add_column("Registers")
    for i in infos:
        origin = f"{i.distribution} {i.version}" if i.distribution else i.module
        registers = "\n".join(f"{r.registry} [cyan]{r.name}[/]" for r in i.registered) or "-"
        table.add_row(i.name, origin, "\n".join(i.hooks), registers)
    a.console.print(table)
    if not infos:
        a.console.print("[yellow]no plugins loaded[/] (check DISPARO_PLUGINS)")


@click.group()
def db() -> None:
    """The database schema (SQLite by default, or PostgreSQL)."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations (also done automatically at every start)."""
    a = app(ctx)
    store = a.store  # opening migrates
    a.console.print(f"[green]database at revision {store.revision()}[/] (newest known)")


@db.command("status")
@click.pass_context
def db_status(ctx: click.Context) -> None:
    """Show the database's schema revision against the newest this version knows (it never
    creates a database: with none, it says so and exits 2)."""
    a = app(ctx)
    from engine.store import migrate
    from engine.store.db import create_db_engine

    url = a.database_url()
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        a.no_database(f"{url.database} does not exist")
    engine = create_db_engine(url)
    try:
        current = migrate.current_revision(engine)
    finally:
        engine.dispose()
    head = migrate.head_revision()
    state = (
        "[green]up to date[/]"
        if current == head
        else f"[yellow]needs `{escape(a.hint('db', 'upgrade'))}`[/]"
    )
    a.console.print(f"database revision {current or '(empty)'}, newest {head}: {state}")


@click.group("config")
def config_command() -> None:
    """The configuration file: check it, or print its reference."""


@config_command.command("check")
@click.pass_context
def config_check(ctx: click.Context) -> None:
    """Check the configuration completely, as `disparo run` does before it starts, without
    starting anything: every key, every file it names (present, readable; secrets private),
    every secret (environment variables set). Exit 0 when it is fine, 2 with one line per
    problem otherwise. (The tracking port is checked by `disparo run` itself.)"""
    a = app(ctx)
    config = a.require_config()
    a.preflight(config)
    parts = [
        f"{len(config.sources)} source(s)",
        f"{len(config.accounts)} account(s)",
        f"{len(config.wallets)} wallet(s)",
        f"{len(config.mailboxes)} mailbox(es)",
        f"[tracking] on {config.tracking.listen}" if config.tracking else "no [tracking]",
    ]
    a.console.print(
        f"[green]{escape(str(a.found_config))}: ok[/] ({escape(', '.join(parts))}); every file "
        "it names is there and readable, every secret can be read"
    )


@config_command.command("reference")
@click.pass_context
def config_reference(ctx: click.Context) -> None:
    """Print the configuration reference (Markdown): every key of every section, with its
    kind, default and what it does, for the plugins loaded here (docs/configuration.md is
    the same for disparo's own plugins)."""
    from engine.config.reference import render_reference

    click.echo(render_reference(app(ctx).plugins), nl=False)


COMMANDS = (init, plugins, db, config_command)

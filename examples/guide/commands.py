"""A command (the example of docs/plugins.md): ``disparo e164 NUMBER…`` prints each number
as disparo sends to it, or why it cannot."""

from __future__ import annotations

import click

from engine import hookimpl
from engine.addresses import normalise_phone


@click.command("e164")
@click.argument("numbers", nargs=-1, required=True)
def e164(numbers: tuple[str, ...]) -> None:
    """Print NUMBERS in E.164, as disparo sends to them (or why not)."""
    for number in numbers:
        checked = normalise_phone(number, mobile=True)
        click.echo(f"{number}: {checked.value or checked.error}")


@click.command("sending")
@click.pass_context
def sending(ctx: click.Context) -> None:
    """List the campaigns this store is sending now."""
    from engine.cli.context import command_context

    disparo = command_context(ctx)
    campaigns = disparo.existing_store.campaigns.recent(status="sending")
    for campaign in campaigns:
        disparo.console.print(f"{campaign.id} {campaign.name} ({campaign.channel})")
    if not campaigns:
        disparo.console.print("nothing is sending")


@hookimpl
def register_commands(cli: click.Group) -> None:
    cli.add_command(e164)
    cli.add_command(sending)

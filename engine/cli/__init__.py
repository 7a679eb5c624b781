"""The ``disparo`` command line (click + rich)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from engine import __version__
from engine.cli.context import AppContext, fail
from engine.config import ENV_VAR
from engine.plugins import PluginError, load_plugins


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"The configuration file. Default: ${ENV_VAR}, else ./disparo.toml.",
)
@click.version_option(__version__, prog_name="disparo")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """disparo: turn dropped contact files into paced e-mail, SMS and WhatsApp campaigns.

    Files named like mailing_DDMMYY_SEQ[_PARAMS].csv say what to do; `disparo check-name`
    explains a name, `disparo plan` shows how it would be paced.
    """
    ctx.obj = AppContext(config_path)


def _register_builtin_commands() -> None:
    from engine.cli import (
        campaigns,
        collect,
        compose,
        feedback,
        groups,
        lists,
        names,
        publish,
        setup,
    )

    for command in (
        *setup.COMMANDS,
        *names.COMMANDS,
        *collect.COMMANDS,
        *campaigns.COMMANDS,
        *feedback.COMMANDS,
        *publish.COMMANDS,
        *groups.COMMANDS,
        *compose.COMMANDS,  # `campaign new` and `campaign start` join the `campaign` group
        *lists.COMMANDS,
    ):
        cli.add_command(command)


_register_builtin_commands()


def build_cli() -> click.Group:
    """The root group with the commands plugins add (``register_commands``)."""
    load_plugins().add_commands(cli)
    return cli


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        group = build_cli()
    except PluginError as exc:
        fail(str(exc), code=2)
    group.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="disparo")


__all__ = ["build_cli", "cli", "main"]

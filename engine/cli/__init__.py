"""The ``disparo`` command line (click + rich)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

import engine
from engine.cli.context import AppContext, fail
from engine.config import ENV_VAR
from engine.plugins import PluginError, load_plugins

#: each built-in command's name -> the modules of ``engine.cli`` that define it (their
#: ``COMMANDS``; ``compose`` adds ``campaign new`` and ``campaign start`` to the ``campaign``
#: group): a command's module is imported when it runs, not at every start (issue 16, goal 7;
#: a test checks this table against the modules)
BUILTIN_COMMANDS: dict[str, tuple[str, ...]] = {
    "init": ("setup",),
    "plugins": ("setup",),
    "db": ("setup",),
    "config": ("setup",),
    "check-name": ("names",),
    "plan": ("names",),
    "import": ("collect",),
    "sources": ("collect",),
    "run": ("collect",),
    "status": ("collect",),
    "campaigns": ("campaigns",),
    "campaign": ("campaigns", "compose"),
    "accounts": ("campaigns",),
    "suppressions": ("campaigns",),
    "mailboxes": ("feedback",),
    "tracking": ("feedback",),
    "publish": ("publish",),
    "groups": ("groups",),
    "api": ("compose",),
    "lists": ("lists",),
}


class DisparoGroup(click.Group):
    """The root group: disparo's own commands are imported on first use (``--help`` imports
    them all); a plugin's command of the same name wins, as when they were all added first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: the modules of ``engine.cli`` imported so far
        self.imported: set[str] = set()

    def _import(self, modules: tuple[str, ...]) -> None:
        for name in modules:
            if name in self.imported:
                continue
            self.imported.add(name)
            module = importlib.import_module(f"engine.cli.{name}")
            for command in module.COMMANDS:
                if command.name not in self.commands:
                    self.add_command(command)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._import(BUILTIN_COMMANDS.get(cmd_name, ()))
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        for modules in BUILTIN_COMMANDS.values():
            self._import(modules)
        return super().list_commands(ctx)


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``--version``: as click's ``version_option`` prints it, the version looked up only
    then (``engine.__version__`` reads the distribution's metadata)."""
    if not value or ctx.resilient_parsing:
        return
    click.echo(f"disparo, version {engine.__version__}", color=ctx.color)
    ctx.exit()


@click.group(
    cls=DisparoGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help=f"The configuration file. Default: ${ENV_VAR}, else ./disparo.toml.",
)
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show the version and exit.",
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """disparo: turn dropped contact files into paced e-mail, SMS and WhatsApp campaigns.

    Files named like mailing_DDMMYY_SEQ[_PARAMS].csv say what to do; `disparo check-name`
    explains a name, `disparo plan` shows how it would be paced.
    """
    ctx.obj = AppContext(config_path)


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

"""Registers `disparo tui` through the plugin manager (the engine never imports the UI).

Textual is imported only when the command runs, so loading plugins (every ``disparo``
command does) stays as light as it was.
"""

from __future__ import annotations

import gc
import importlib
import logging
from pathlib import Path
from typing import Any

import click

from engine import hookimpl
from engine.actions import ROLES


@click.command("tui")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The configuration file (as `disparo --config`).",
)
@click.option(
    "--engine",
    "with_engine",
    is_flag=True,
    help="Also run the engine in this process: collect, send, guard (stopped cleanly on quit).",
)
@click.option(
    "--role",
    type=click.Choice(ROLES),
    help="What this session may do (default: engine.role in the config, else operator).",
)
@click.pass_context
def tui_command(
    ctx: click.Context, config_path: Path | None, with_engine: bool, role: str | None
) -> None:
    """The terminal UI: campaigns, queues, sources and suppressions, live from the store.

    It attaches to the store of a running engine (or of none: actions are then applied by
    the UI itself); with --engine it runs the engine too. Who acts is $DISPARO_ACTOR, else
    the system user; every action is in the audit log.
    """
    from engine.cli.context import AppContext, app
    from engine.service import Engine, ZonedFormatter
    from tui.app import DisparoApp, LogBuffer
    from tui.backend import Backend, default_actor

    a = AppContext(config_path) if config_path is not None else app(ctx)
    config = a.require_config() if with_engine else a.config
    if with_engine:
        # as `disparo run`: secrets readable and the tracking port free, before the UI starts
        a.preflight(config, listen=config.tracking.listen if config.tracking else None)
    backend = Backend(
        # without the engine the UI only attaches to a store: it never creates one
        a.store if with_engine else a.existing_store,
        config,
        a.clock,
        role=role or config.engine.role,
        actor=default_actor(),
        plugins=a.plugins,
        engine=with_engine,
    )
    engine = None
    log = None
    if with_engine:
        # the engine logs into the UI's log view: the terminal is the UI's
        log = LogBuffer()
        log.setFormatter(
            ZonedFormatter(config.tz, "%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
        root = logging.getLogger()
        root.handlers[:] = [log]
        root.setLevel(config.engine.log_level.upper())
        logging.getLogger("alembic").setLevel(logging.WARNING)
        engine = Engine(a.store, a.plugins, config, a.clock)
    ui = DisparoApp(backend, engine=engine, log=log)
    # what is loaded by now (the libraries, the configuration, the store) lives as long as the
    # process: the collector's full passes skip it from here on, so a refresh, which makes
    # thousands of short-lived rows, does not pay for walking it (a full pass every ~14
    # Campaigns refreshes took 45 ms of 65 at 1,000 campaigns, issue 16 goal 7)
    gc.collect()
    gc.freeze()
    ui.run()


class LazyCommand(click.Command):
    """A command whose module is imported only when it runs or shows its help (``ssh-serve``
    pulls in asyncssh: every ``disparo`` process, each SSH session's TUI included, would
    pay for it otherwise)."""

    def __init__(self, name: str, target: str, short_help: str) -> None:
        super().__init__(name, short_help=short_help, help=short_help)
        self.target = target
        self._real: click.Command | None = None

    def real(self) -> click.Command:
        if self._real is None:
            module, _, attr = self.target.partition(":")
            self._real = getattr(importlib.import_module(module), attr)
        return self._real

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        return self.real().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self.real().invoke(ctx)

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        return self.real().get_params(ctx)

    def get_help(self, ctx: click.Context) -> str:
        return self.real().get_help(ctx)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add the `tui` and `ssh-serve` commands."""
    cli.add_command(tui_command)
    cli.add_command(
        LazyCommand(
            "ssh-serve",
            "tui.ssh:ssh_serve",
            "Serve the terminal UI over SSH to authorised keys (one PTY and process per session).",
        )
    )

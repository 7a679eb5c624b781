"""What every command shares: the configuration, plugins, store and clock, loaded lazily."""

from __future__ import annotations

import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from engine.clock import Clock, RealClock
from engine.config import Config, ConfigError, SecretError, find_config, load_config
from engine.plugins import Plugins, load_plugins

if TYPE_CHECKING:
    # the store (SQLAlchemy) is imported by the commands that open it: `disparo --help`,
    # `disparo plugins`, `disparo check-name`… start without it
    from sqlalchemy.engine import URL

    from engine.store import Store


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print an error in the house style and exit with ``code``."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/] {escape(message)}"
    )
    sys.exit(code)


class AppContext:
    """Lazily loaded state of one CLI invocation (``ctx.obj``)."""

    def __init__(self, config_path: Path | None, clock: Clock | None = None) -> None:
        self.config_path = config_path
        self.clock: Clock = clock or RealClock()
        self.console = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    @cached_property
    def plugins(self) -> Plugins:
        return load_plugins()

    @cached_property
    def found_config(self) -> Path | None:
        return find_config(self.config_path)

    @cached_property
    def config(self) -> Config:
        """The configuration, or the built-in defaults when there is no file."""
        try:
            return load_config(self.found_config, plugins=self.plugins)
        except ConfigError as exc:
            lines = "\n".join(f"  {p}" for p in exc.problems)
            fail(f"the configuration has problems:\n{lines}", code=2)

    def require_config(self) -> Config:
        """The configuration; exit with advice when there is no file."""
        if self.found_config is None:
            fail(
                "no configuration found: pass --config, set DISPARO_CONFIG, or run "
                "`disparo init` to write disparo.toml here",
                code=2,
            )
        return self.config

    def database_url(self) -> URL:
        """The database URL with its password (from the secret reference) filled in."""
        from engine.store.db import database_url

        engine = self.config.engine
        password = None
        if engine.database_password is not None:
            try:
                password = engine.database_password.reveal()
            except SecretError as exc:
                fail(str(exc), code=2)
        return database_url(engine.database_url, password)

    @cached_property
    def store(self) -> Store:
        """The store of the configuration, migrated to the current schema."""
        from engine.store import Store

        url = self.database_url()
        try:
            store = Store.open(url, clock=self.clock)
        except Exception as exc:  # connection refused, bad credentials, locked file…
            fail(f"cannot open the database {url.render_as_string(hide_password=True)}: {exc}")
        context = click.get_current_context(silent=True)
        if context is not None:  # close its connections when the command is done
            context.find_root().call_on_close(store.close)
        return store


def app(ctx: click.Context) -> AppContext:
    obj = ctx.find_object(AppContext)
    if obj is None:  # a command invoked without the root group (tests)
        obj = AppContext(None)
        ctx.obj = obj
    return obj

"""What every command shares: the configuration, plugins, store and clock, loaded lazily."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click
from rich.console import Console
from rich.markup import escape

from engine.clock import Clock, RealClock
from engine.config import (
    CONFIG_NAME,
    ENV_VAR,
    LOG_FORMAT_ENV,
    LOG_FORMATS,
    Config,
    ConfigError,
    ConfigProblem,
    SecretError,
    find_config,
    load_config,
)
from engine.config.preflight import listen_problem, secret_problems
from engine.plugins import Plugins, load_plugins

if TYPE_CHECKING:
    from rich.progress import Progress

    # the store (SQLAlchemy) is imported by the commands that open it: `disparo --help`,
    # `disparo plugins`, `disparo check-name`… start without it
    from sqlalchemy.engine import URL

    from engine.reads import QuickReader
    from engine.store import Store


#: ``--log-format`` of the commands that keep running and log (``run``, ``tracking serve``)
LOG_FORMAT_OPTION = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    envvar=LOG_FORMAT_ENV,
    show_envvar=True,
    help="text: one line per record, times with their UTC offset; json: one JSON object per "
    "line (time, level, logger, message and the record's fields) for journald or Loki.",
)

#: the width of a console that is not a terminal (a pipe, a file, journald): nothing wraps
UNWRAPPED = 100_000


def make_console(*, stderr: bool = False) -> Console:
    """A console for the CLI. On a terminal, tables fit its width (long cells wrap inside
    them, never cut); anywhere else (a pipe, a file, journald, CI) nothing is wrapped or cut
    at all, whatever $COLUMNS says: a line is one line, whole."""
    stream = sys.stderr if stderr else sys.stdout
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, highlight=False, width=UNWRAPPED, soft_wrap=True)


def invoked_as() -> str:
    """This ``disparo`` as it was typed, for hints that work as printed: its path when it was
    run by path (``.venv/bin/disparo`` after ``make demo``: not on PATH), else ``disparo``."""
    typed = sys.argv[0] if sys.argv else ""
    if Path(typed).name == "disparo" and os.sep in typed:
        return typed
    return "disparo"


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print an error in the house style and exit with ``code``."""
    make_console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    sys.exit(code)


def fail_problems(problems: Sequence[ConfigProblem], *, code: int = 2) -> NoReturn:
    """Print each problem as one line (file, key, what is wrong, the fix) and exit."""
    err = make_console(stderr=True)
    for problem in problems:
        err.print(f"[bold red]error:[/] {escape(str(problem))}", soft_wrap=True)
    sys.exit(code)


class AppContext:
    """Lazily loaded state of one CLI invocation (``ctx.obj``)."""

    def __init__(self, config_path: Path | None, clock: Clock | None = None) -> None:
        self.config_path = config_path
        self.clock: Clock = clock or RealClock()
        self.console = make_console()
        self.err = make_console(stderr=True)

    def hint(self, *args: str, config: Path | None = None) -> str:
        """A ``disparo`` command line to suggest, as it can be typed here: the program as it
        was invoked, and ``--config`` when one was given (or ``config``)."""
        chosen = config or self.config_path
        words = [*(("--config", str(chosen)) if chosen else ()), *args]
        return " ".join([invoked_as(), *(shlex.quote(w) for w in words)])

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
            fail_problems(exc.problems)

    def require_config(self) -> Config:
        """The configuration; exit with advice when there is no file."""
        if self.found_config is None:
            fail(
                "no configuration found: pass --config, set DISPARO_CONFIG, or run "
                f"`{self.hint('init')}` to write disparo.toml here",
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

    def preflight(self, config: Config, *, listen: str | None = None) -> None:
        """Before a command that keeps running says it runs: every secret the configuration
        names can be read now, and ``listen`` (the tracking endpoint's address) can be bound.
        Each problem is one line; the command exits 2 before it starts anything."""
        problems = secret_problems(config)
        if listen is not None:
            problem = listen_problem(config, listen)
            if problem is not None:
                problems.append(problem)
        if problems:
            fail_problems(problems)

    @cached_property
    def store(self) -> Store:
        """The store of the configuration, migrated to the current schema (created when
        there is none yet: for the commands that write, such as ``run`` and ``import``)."""
        return self._open_store(self.database_url(), create=True)

    @cached_property
    def quick_reader(self) -> QuickReader | None:
        """The store's read-only queries without SQLAlchemy (``engine.reads``), for a command
        that only looks: None when that path cannot serve this store (no database yet, its
        schema not at head, a connection refused…): then use ``existing_store``, which
        migrates, explains or reports as it always did (issue 16, goal 7)."""
        from engine.reads import QuickReader

        engine = self.config.engine
        password = None
        if engine.database_password is not None:
            try:
                password = engine.database_password.reveal()
            except SecretError:
                return None  # existing_store says what is wrong
        reader = QuickReader.open(engine.database_url, password)
        context = click.get_current_context(silent=True)
        if reader is not None and context is not None:
            context.find_root().call_on_close(reader.close)
        return reader

    @cached_property
    def existing_store(self) -> Store:
        """The store, for a command that only looks (or acts on what is there): it is never
        created as a side effect. With no database yet, exit 2 saying so and how one is made."""
        url = self.database_url()
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if database in ("", ":memory:") or not Path(database).is_file():
                self.no_database(f"{database or url} does not exist")
        return self._open_store(url, create=False)

    def no_database(self, what: str) -> NoReturn:
        """Exit 2: there is no database (``what`` says which), with how one is made."""
        if self.found_config is None:
            where = (
                f"no {CONFIG_NAME} here ({Path.cwd()}), so the built-in defaults apply; run "
                f"this where your {CONFIG_NAME} is, or pass --config FILE (or set "
                f"{ENV_VAR}); `{self.hint('init')}` writes a starter configuration"
            )
        else:
            upgrade = self.hint("db", "upgrade", config=self.found_config)
            where = (
                f"it is created by `{upgrade}` (and by `run` and `import`); if you meant "
                f"another database, check engine.database_url in {self.found_config}"
            )
        fail(f"no database yet: {what}; {where}", code=2)

    def _open_store(self, url: URL, *, create: bool) -> Store:
        from engine.store import Store, migrate

        shown = url.render_as_string(hide_password=True)
        try:
            store = Store.open(url, clock=self.clock, upgrade=create)
            # at head (the usual case) one query says so, without Alembic (issue 16, goal 7)
            if not create and not migrate.at_head(store.engine):
                if store.revision() is None:  # an empty database (PostgreSQL): not ours yet
                    store.close()
                    self.no_database(f"{shown} has no disparo tables")
                store.upgrade()  # pending migrations, as at every start
        except SystemExit:
            raise
        except Exception as exc:  # connection refused, bad credentials, locked file…
            # the driver's own words, in one line (not SQLAlchemy's "Background on this error")
            orig = getattr(exc, "orig", None) or exc
            said = " ".join(str(orig).split()) or type(orig).__name__
            fail(f"cannot open the database {shown}: {said}")
        context = click.get_current_context(silent=True)
        if context is not None:  # close its connections when the command is done
            context.find_root().call_on_close(store.close)
        return store


def file_progress(a: AppContext, *, disable: bool = False) -> Progress:
    """The progress bar of a file read by a command (bytes read, time left), on stderr and
    gone when done; ``disable`` for machine-readable output."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=a.err,
        transient=True,
        disable=disable,
    )


def command_context(ctx: click.Context) -> AppContext:
    """What a plugin's command (``register_commands``) uses to reach disparo, stable for
    ``PLUGIN_API`` 1: ``.config`` (the configuration, checked as every command checks it),
    ``.require_config()`` (exit 2 with advice when there is no ``disparo.toml``),
    ``.existing_store`` (the store, never created: exit 2 saying how one is made when there
    is none), ``.store`` (the store, created and migrated if needed: for commands that write),
    ``.clock``, ``.plugins``, ``.console`` and ``.err`` (rich consoles for stdout and stderr,
    unwrapped when not a terminal) and ``.hint(*args)`` (a ``disparo`` command line to
    suggest). ``--config`` and ``DISPARO_CONFIG`` are honoured as for disparo's own commands;
    the store is closed when the command ends. Errors: ``engine.cli.context.fail(message)``.
    """
    return app(ctx)


def app(ctx: click.Context) -> AppContext:
    obj = ctx.find_object(AppContext)
    if obj is None:  # a command invoked without the root group (tests)
        obj = AppContext(None)
        ctx.obj = obj
    return obj

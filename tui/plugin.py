"""Registers `disparo tui` through the plugin manager (the engine never imports the UI)."""

from __future__ import annotations

import click

from engine import hookimpl


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add the `tui` command (filled in by the terminal UI)."""

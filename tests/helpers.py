"""Small builders shared by the tests: configs (the test kit's ``write_config``), mailing
names, a collector on a test clock."""

from __future__ import annotations

from pathlib import Path

import click

from engine.clock import TestClock
from engine.config import Config, load_config
from engine.intake.collector import Collector
from engine.plugins import load_plugins
from engine.sending.dispatcher import Dispatcher
from engine.store import Store
from engine.testing import write_config
from engine.testing.eventually import GiveUp, eventually

__all__ = ["CSV", "TODAY", "collector", "load", "name", "parse_command", "tick", "write_config"]

#: the test clock's day (2026-11-23 12:00 UTC is 09:00 in São Paulo)
TODAY = "231126"


def load(path: Path) -> Config:
    return load_config(path, plugins=load_plugins())


def collector(store: Store, config: Config, clock: TestClock) -> Collector:
    return Collector(store, load_plugins(), config, clock)


def senders_settled(dispatcher: Dispatcher) -> bool:
    """Has every sender taken its last wake-up, sent what it took (the channel's real I/O
    answered) and stored the outcome, and does it wait for the next wake-up?

    Exact only with ``store.inline`` set: the only awaits are then the channel's and the
    clock's, so a sender between a wake-up and its next chunk never looks idle.
    """
    for sender in dispatcher.senders.values():
        if sender.task is None:
            return False
        if sender.task.done():
            error = None if sender.task.cancelled() else sender.task.exception()
            raise GiveUp(f"the sender for {sender.name} stopped: {error!r}")
        confirming = sender._confirming
        if not sender.idle.is_set() or sender.wake.is_set():
            return False
        if confirming is not None and not confirming.done():
            return False
    return True


async def tick(dispatcher: Dispatcher, clock: TestClock, seconds: float = 1) -> None:
    """One tick with real peers on a test clock: tick, let the senders finish what the tick
    started (their I/O runs on this loop in real time), then move the clock on."""
    await dispatcher.tick()
    await eventually(
        lambda: senders_settled(dispatcher), what="the senders to finish what the tick started"
    )
    await clock.advance(seconds)


def name(seq: int, params: str = "", day: str = TODAY) -> str:
    """``mailing_231126_001_<params>.csv``."""
    tail = f"_{params}" if params else ""
    return f"mailing_{day}_{seq:03d}{tail}.csv"


CSV = "nome;telefone;email;cpf;cidade\nAna;(11) 99887-7665;ana@example.com;111;São Paulo\n"


def parse_command(args: list[str]) -> click.Command:
    """Resolve ``disparo ARGS`` as click would (every group, then the command, its options and
    arguments parsed and checked) without running anything; return the command reached."""
    from engine.cli import build_cli

    command: click.Command = build_cli()
    name, parent, rest = "disparo", None, list(args)
    while True:
        try:
            context = command.make_context(name, rest, parent=parent)
        except click.exceptions.Exit:  # --help, --version
            return command
        if not isinstance(command, click.Group):
            return command
        rest = [*context._protected_args, *context.args]
        if not rest:
            return command
        found, sub, rest = command.resolve_command(context, rest)
        assert sub is not None and found is not None, args
        command, name, parent = sub, found, context

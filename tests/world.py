"""A world for dispatch tests: the test kit's ``World`` (a store and a test clock that run
days in milliseconds, a dispatcher, files imported as the collector would) with the kit's
``Scripted`` channel standing in for the SMS channels (the Twilio plugin is blocked), and
helpers to import mailings of phone numbers.

The scripted channel stands in for a provider only where the provider is not the subject: it
records what it is asked to send, at what (clock) time, and answers from a script. Channel
behaviour against real peers (SMTP, Twilio's API) is tested in test_channels.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from engine.clock import TestClock
from engine.intake.importer import ImportReport
from engine.plugins import load_plugins
from engine.store import Store
from engine.testing import Record, Registers, Scripted
from engine.testing import World as KitWorld


class SmsLong(Scripted):
    name = "sms-long"
    file_word = "smslong"


class SmsShort(Scripted):
    name = "sms-short"
    file_word = "smsshort"


def phones(n: int, start: int = 0) -> list[str]:
    return [f"+55119{i:08d}" for i in range(start, start + n)]


class World(KitWorld):
    def import_(
        self, params: str, numbers: list[str], *, seq: int | None = None, wallet: str = "BRAD"
    ) -> ImportReport:
        path = self.mailing_name(seq or self.files + 1, f"c{wallet}", params)
        rows = "".join(f"P{i};{p}\n" for i, p in enumerate(numbers))
        report = self.import_file(path, "nome;telefone\n" + rows)
        assert report.outcome == "imported", report.problems
        return report

    def sends(self, campaign_id: int | None = None) -> list[Record]:
        return Scripted.sends(campaign_id)


def make_world(
    tmp_path: Path,
    store: Store,
    clock: TestClock,
    *,
    accounts: dict[str, dict[str, Any]] | None = None,
    wallets: dict[str, dict[str, Any]] | None = None,
) -> Iterator[World]:
    """Register the scripted channels, write a config, and give a world (a generator for
    fixtures: it unregisters the plugin afterwards)."""
    Scripted.reset()
    plugins = load_plugins()
    plugins.register(Registers(SmsLong, SmsShort), "scripted")
    try:
        yield World.open(
            tmp_path,
            plugins,
            store=store,
            clock=clock,
            accounts=accounts or {"sms": {"channel": "sms-long", "rate": 10}},
            wallets=wallets or {"BRAD": {"sms_template": "Oi {{ nome }}"}},
        )
    finally:
        plugins.unregister("scripted")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)

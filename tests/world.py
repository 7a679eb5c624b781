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
from typing import Any, ClassVar

from engine.campaign import Campaign
from engine.clock import TestClock
from engine.intake.importer import ImportReport
from engine.plugins import load_plugins
from engine.plugins.channel import CampaignProblem, DeliveryInfo, SendResult
from engine.store import Store
from engine.testing import Record, Registers, Scripted
from engine.testing import World as KitWorld


class SmsLong(Scripted):
    """The kit's scripted channel as ``sms-long``; ``broken`` makes every send raise it after
    recording it (a broken channel), ``problem`` makes ``prepare`` refuse every campaign with
    it (``CampaignProblem``), ``prepared`` counts ``prepare`` calls."""

    name = "sms-long"
    file_word = "smslong"
    broken: ClassVar[Exception | None] = None
    problem: ClassVar[str | None] = None
    prepared: ClassVar[int] = 0

    @classmethod
    def reset(cls) -> None:
        super().reset()
        SmsLong.broken = SmsLong.problem = None
        SmsLong.prepared = 0

    def prepare(self, campaign: Campaign) -> Any:
        SmsLong.prepared += 1
        if SmsLong.problem is not None:
            raise CampaignProblem(SmsLong.problem)
        return super().prepare(campaign)

    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        result = await super().send(prepared, delivery)
        if SmsLong.broken is not None:
            raise SmsLong.broken
        return result


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
    SmsLong.reset()
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

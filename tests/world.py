"""A world for dispatch tests: a store and a test clock that run days in milliseconds, a
scripted channel registered through the plugin hook, and helpers to import mailings and
drive the engine.

The scripted channel stands in for a provider only where the provider is not the subject: it
records what it is asked to send, at what (clock) time, and answers from a script. Channel
behaviour against real peers (SMTP, Twilio's API) is tested in test_channels.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import sqlalchemy as sa

from engine import hookimpl
from engine.addresses import Checked, normalise_phone
from engine.campaign import Campaign
from engine.clock import TestClock, local_today
from engine.config import Config, load_config
from engine.intake.importer import ImportReport, file_digest, import_file
from engine.plugins import Plugins, load_plugins
from engine.plugins.channel import CampaignProblem, Channel, DeliveryInfo, SendResult, Sent
from engine.plugins.format import FormatContext
from engine.sending.dispatcher import Dispatcher
from engine.store import Store
from engine.store import schema as t
from tests.helpers import write_config


@dataclass
class Record:
    at: datetime
    account: str
    campaign_id: int
    delivery_id: int
    address: str


class Scripted(Channel):
    """Records sends; answers ``Sent`` unless the script says otherwise for an address.

    ``broken`` makes every send raise it (a broken channel); ``problem`` makes ``prepare``
    refuse every campaign with it (``CampaignProblem``); ``prepared`` counts ``prepare``."""

    name = "sms-long"
    address_kind = "phone"
    log: ClassVar[list[Record]] = []
    script: ClassVar[dict[str, list[SendResult]]] = {}
    broken: ClassVar[Exception | None] = None
    problem: ClassVar[str | None] = None
    prepared: ClassVar[int] = 0

    def normalise(self, address: str) -> Checked:
        return normalise_phone(address, mobile=True)

    def prepare(self, campaign: Campaign) -> Campaign:
        Scripted.prepared += 1
        if Scripted.problem is not None:
            raise CampaignProblem(Scripted.problem)
        return campaign

    async def send(self, prepared: Campaign, delivery: DeliveryInfo) -> SendResult:
        address = self.normalise(delivery.address).value or delivery.address
        Scripted.log.append(
            Record(
                self.context.clock.now(),
                self.account.name,
                delivery.campaign_id,
                delivery.id,
                address,
            )
        )
        if Scripted.broken is not None:
            raise Scripted.broken
        queue = Scripted.script.get(address)
        if queue:
            return queue.pop(0)
        return Sent(provider_id=f"P{delivery.id}")


class ScriptedShort(Scripted):
    name = "sms-short"


class ScriptedPlugin:
    @hookimpl
    def register_channels(self, register: Any) -> None:
        register(Scripted)
        register(ScriptedShort)


def phones(n: int, start: int = 0) -> list[str]:
    return [f"+55119{i:08d}" for i in range(start, start + n)]


@dataclass
class World:
    store: Store
    clock: TestClock
    config: Config
    plugins: Plugins
    folder: Path
    dispatchers: list[Dispatcher] = field(default_factory=list)
    files: int = 0

    @property
    def dispatcher(self) -> Dispatcher:
        if not self.dispatchers:
            self.dispatchers.append(
                Dispatcher(
                    self.store,
                    self.plugins,
                    self.config,
                    self.clock,
                    node="node-a",
                    tick_seconds=1.0,
                )
            )
        return self.dispatchers[0]

    def import_(
        self, params: str, numbers: list[str], *, seq: int | None = None, wallet: str = "BRAD"
    ) -> ImportReport:
        self.files += 1
        seq = seq or self.files
        day = local_today(self.clock, self.config.tz)
        path = f"mailing_{day:%d%m%y}_{seq:03d}_c{wallet}_{params}.csv"
        spool = self.folder / f"in-{self.files}.csv"
        spool.write_text("nome;telefone\n" + "".join(f"P{i};{p}\n" for i, p in enumerate(numbers)))
        fmt = self.plugins.formats()["mailing"](
            FormatContext(self.config, "drop", day, self.clock.now())
        )
        report = import_file(
            self.store,
            fmt,
            source="drop",
            path=path,
            spool=spool,
            size=spool.stat().st_size,
            mtime=None,
            sha256=file_digest(spool),
        )
        assert report.outcome == "imported", report.problems
        return report

    async def run(self, seconds: float, *, step: float = 1.0) -> None:
        """Tick every dispatcher once a (clock) step for ``seconds``."""
        elapsed = 0.0
        while elapsed < seconds:
            for d in self.dispatchers or [self.dispatcher]:
                await d.tick()
            await self.clock.advance(step)
            elapsed += step

    async def stop(self) -> None:
        for d in self.dispatchers:
            await d.shutdown()

    def statuses(self, campaign_id: int) -> dict[str, int]:
        with self.store.read() as c:
            return dict(
                c.execute(
                    sa.select(t.deliveries.c.status, sa.func.count())
                    .where(t.deliveries.c.campaign_id == campaign_id)
                    .group_by(t.deliveries.c.status)
                ).all()
            )

    def campaign(self, campaign_id: int) -> Any:
        found = self.store.campaigns.get(campaign_id)
        assert found is not None
        return found

    def sends(self, campaign_id: int | None = None) -> list[Record]:
        return [r for r in Scripted.log if campaign_id is None or r.campaign_id == campaign_id]


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
    Scripted.log = []
    Scripted.script = {}
    Scripted.broken = None
    Scripted.problem = None
    Scripted.prepared = 0
    plugins = load_plugins()
    plugins.register(ScriptedPlugin(), "scripted")
    try:
        config = load_config(
            write_config(
                tmp_path,
                accounts=accounts or {"sms": {"channel": "sms-long", "rate": 10}},
                wallets=wallets or {"BRAD": {"sms_template": "Oi {{ nome }}"}},
            ),
            plugins=plugins,
        )
        store.inline = True
        folder = tmp_path / "files"
        folder.mkdir(exist_ok=True)
        yield World(store, clock, config, plugins, folder)
    finally:
        plugins.unregister("scripted")


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)

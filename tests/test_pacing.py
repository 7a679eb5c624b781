"""Pacing exact from the first second (D10), on the test clock: a channel whose connections
take time to open (as an SMTP pool's do) must not bunch the first messages of a campaign at
the provider. Every sliding 1-second window of arrivals holds at most rate + burst, the
campaign's start included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from engine.clock import TestClock
from engine.plugins import load_plugins, reset_plugins
from engine.plugins.channel import DeliveryInfo, SendResult
from engine.store import Store
from engine.testing import Registers, Scripted
from tests.world import World, phones

CONNECT = 0.3  # seconds (clock) to open one connection to the provider


class Pooled(Scripted):
    """A provider reached through a pool of ``concurrency`` connections, each taking
    ``CONNECT`` seconds to open; a message arrives (is recorded) when it goes out on one."""

    name = "sms-pool"
    file_word = "smspool"
    arrivals: ClassVar[list[datetime]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle = 0
        self.opened = 0

    async def _open(self, n: int) -> None:
        self.opened += n
        await self.context.clock.sleep(CONNECT)
        self.idle += n

    async def ready(self, sends: int) -> None:
        missing = min(sends, self.concurrency) - self.opened
        if missing > 0:
            await self._open(missing)

    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        if self.idle == 0:
            await self._open(1)
        self.idle -= 1
        try:
            return await super().send(prepared, delivery)
        finally:
            self.idle += 1
            await asyncio.sleep(0)


@pytest.fixture
def pooled(
    tmp_path: Path, store: Store, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    monkeypatch.setenv("DISPARO_BLOCK_PLUGINS", "twilio")
    reset_plugins()
    Scripted.reset()
    plugins = load_plugins()
    plugins.register(Registers(Pooled), "pooled")

    def world(**account: Any) -> World:
        return World.open(
            tmp_path,
            plugins,
            store=store,
            clock=clock,
            accounts={"sms": {"channel": "sms-pool", **account}},
            wallets={"BRAD": {"sms_template": "Oi {{ nome }}"}},
        )

    try:
        yield world
    finally:
        plugins.unregister("pooled")


def busiest_second(times: list[datetime]) -> int:
    """The most arrivals in any window [t, t + 1 s) starting at an arrival."""
    times = sorted(times)
    worst = j = 0
    for i, at in enumerate(times):
        while j < len(times) and (times[j] - at).total_seconds() < 1:
            j += 1
        worst = max(worst, j - i)
    return worst


@pytest.mark.parametrize(("rate", "burst"), [(20, 1), (20, 20), (50, 5)])
async def test_d10_rate_plus_burst_at_the_provider_from_the_first_second(
    pooled: Any, rate: int, burst: int
) -> None:
    world = pooled(rate=rate, burst=burst, concurrency=16)
    cid = world.import_("smspool", phones(4 * rate)).campaign_id
    try:
        await world.run(8, step=0.05)
    finally:
        await world.close()
    times = [r.at for r in Scripted.sends(cid)]
    assert len(times) == 4 * rate  # all sent, at the rate
    # the first second at the provider too: the connections open before the tokens are taken
    assert busiest_second(times) <= rate + burst, (
        f"D10: {busiest_second(times)} messages reached the provider within one second "
        f"(rate {rate} + burst {burst} allowed)"
    )

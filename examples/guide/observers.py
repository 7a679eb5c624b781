"""Observer hooks (the example of docs/plugins.md): a tally of what happened to deliveries
and campaigns, kept in memory."""

from __future__ import annotations

from collections import Counter

from engine import hookimpl
from engine.events import CampaignEvent, DeliveryEvent


class Tally:
    """Counts delivery events by kind and keeps each campaign's last status."""

    def __init__(self) -> None:
        self.deliveries: Counter[str] = Counter()
        self.statuses: dict[int, str] = {}

    @hookimpl
    async def delivery_event(self, event: DeliveryEvent) -> None:
        # called once per stored event, on the engine's loop: keep it quick
        self.deliveries[event.kind] += 1

    @hookimpl
    def campaign_event(self, event: CampaignEvent) -> None:
        if event.kind == "status" and event.status is not None:
            self.statuses[event.campaign_id] = event.status


# registered as an object (an entry point may name it: "tally = examples.guide.observers:tally")
tally = Tally()

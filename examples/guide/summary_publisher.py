"""A publisher: a summary file per completed campaign (the publisher example of
docs/plugins.md)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from engine import hookimpl
from engine.plugins.publisher import Publication, Publisher


class CampaignSummaries(Publisher):
    """``resultados/<id>.resumo.txt``: a completed campaign's totals, once per campaign."""

    name = "campaign-summary"

    def due(self, now: datetime) -> Iterator[Publication]:
        store = self.context.store
        for campaign in store.campaigns.recent(status="completed"):
            yield Publication(
                key=f"campaign-{campaign.id}",  # once per campaign (per source)
                path=f"resultados/{campaign.id}.resumo.txt",
                detail={"campaign_id": campaign.id},
            )

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        campaign = self.context.store.campaigns.get(publication.detail["campaign_id"])
        assert campaign is not None
        lines = [f"campanha;{campaign.name}"]
        lines += [f"{k};{v}" for k, v in sorted(campaign.counters.items())]
        out.write(("\n".join(lines) + "\n").encode("utf-8"))


@hookimpl
def register_publishers(register: Any) -> None:
    register(CampaignSummaries)

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from engine import hookimpl
from engine.plugins.publisher import Publication, Publisher


class CampaignSummaries(Publisher):
    """``resultados/<id>.resumo.txt``: the totals of each completed campaign made from a file
    of the source, once per campaign."""

    name = "campaign-summary"

    def due(self, now: datetime) -> Iterator[Publication]:
        reads = self.context.reads  # the stable read façade (plugin API)
        for made in reads.file_campaigns(self.source.name, finished=True):
            if made.status == "completed":
                yield Publication(
                    key=f"campaign-{made.campaign_id}",  # once per campaign (per source)
                    path=f"resultados/{made.campaign_id}.resumo.txt",
                    # file_id: `disparo sources` shows the publication beside its file
                    detail={"campaign_id": made.campaign_id, "file_id": made.file_id},
                )

    def write(self, publication: Publication, out: IO[bytes]) -> None:
        campaign = self.context.reads.campaign(publication.detail["campaign_id"])
        assert campaign is not None
        lines = [f"campanha;{campaign.name}"]
        lines += [f"{k};{v}" for k, v in sorted(campaign.counters.items())]
        out.write(("\n".join(lines) + "\n").encode("utf-8"))


@hookimpl
def register_publishers(register: Any) -> None:
    register(CampaignSummaries)

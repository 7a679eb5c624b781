"""The publishers' read façade (``PublishContext.reads``, plugin API v1) over the store's
queries: campaigns made from a source's files, what recipients did, who did not get the
message and why, and the per-recipient results file (D17)."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from datetime import datetime, tzinfo
from typing import IO

from engine.campaign import Campaign
from engine.plugins.publisher import (
    FileCampaign,
    Interaction,
    InteractionKind,
    NotSent,
    Publication,
)
from engine.publish.results import write_results
from engine.store import Store
from engine.store.outcomes import Undelivered


class StoreReads:
    """``PublishReads`` on a store (times come back in UTC; ``tz`` is for the results file)."""

    def __init__(self, store: Store, tz: tzinfo) -> None:
        self.store = store
        self.tz = tz

    def file_campaigns(
        self, source: str, *, finished: bool = False, limit: int | None = None
    ) -> list[FileCampaign]:
        return [
            FileCampaign(
                r.file_id, r.path, r.imported_at, r.campaign_id, r.name, r.status, r.finished_at
            )
            for r in self.store.outcomes.file_campaigns(source, finished=finished, limit=limit)
        ]

    def campaign(self, campaign_id: int) -> Campaign | None:
        return self.store.campaigns.get(campaign_id)

    def interactions(
        self, campaign_id: int, kind: InteractionKind, *, first: bool = False
    ) -> Iterator[Interaction]:
        o = self.store.outcomes
        if kind == "open":
            found = (
                o.first_opens(campaign_id)
                if first
                # a click counts as an open when no open came first (images blocked), as the
                # campaign's counters count it: every first open is an open too
                else heapq.merge(
                    o.opens(campaign_id), o.inferred_opens(campaign_id), key=lambda r: r[1]
                )
            )
            for address, at in found:
                yield Interaction("open", at, address)
        elif kind == "click":
            for address, at, url in o.clicks(campaign_id, first=first):
                yield Interaction("click", at, address, url)
        elif kind == "unsubscribe":
            for address, at in o.unsubscribes(campaign_id):
                yield Interaction("unsubscribe", at, address)
        else:
            raise ValueError(f"unknown interaction {kind!r} (open, click or unsubscribe)")

    def not_sent(self, campaign_id: int) -> Iterator[NotSent]:
        o = self.store.outcomes
        campaign = self.store.campaigns.get(campaign_id, content=False)
        if campaign is None:
            return
        fallback = campaign.finished_at or self.store.clock.now()
        for chunk in o.undelivered(campaign_id):
            suppressed = [d.address.lower() for d in chunk if d.status == "suppressed"]
            origins = o.suppression_origins(campaign.address_kind, suppressed)
            for d in chunk:
                yield _not_sent(d, origins, fallback)
        file_id = o.file_of(campaign_id)
        if file_id is not None:
            for _line, address, _code, reason, at in o.rejected_rows(file_id):
                yield NotSent(address, at, "invalid", reason)

    def write_results(self, campaign_id: int, out: IO[str]) -> int:
        return write_results(self.store, campaign_id, out, self.tz)

    def published(self, source: str, publisher: str) -> list[Publication]:
        return [
            Publication(p.key, p.path, p.detail, p.published_at)
            for p in self.store.publications.of(source, publisher)
        ]


def _not_sent(d: Undelivered, origins: dict[str, str], fallback: datetime) -> NotSent:
    at = d.reported_at or d.finished_at or d.sent_at or fallback
    if d.status == "suppressed":
        return NotSent(d.address, at, "suppressed", origins.get(d.address.lower(), d.error or ""))
    if d.status == "failed":
        return NotSent(d.address, at, "soft-bounce" if d.reported_soft else "failed", d.error or "")
    if d.status in ("bounced", "skipped", "expired", "cancelled"):
        return NotSent(d.address, at, d.status, d.error or "")
    # pending or claimed in a campaign that is over: it was never sent
    return NotSent(d.address, at, "cancelled", d.error or f"not sent ({d.status})")

"""Campaign reads for people (the CLI and the UI): lists, one campaign, queues per account."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from engine.store.base import Queries
from engine.store.dispatch import _CAMPAIGN_COLUMNS, CampaignState, _campaign
from engine.store.schema import campaigns, contacts, deliveries, events, links, wallets


class Campaigns(Queries):
    def _select(self) -> sa.Select[tuple[object, ...]]:
        return sa.select(*_CAMPAIGN_COLUMNS).select_from(
            campaigns.outerjoin(wallets, wallets.c.id == campaigns.c.wallet_id)
        )

    def recent(
        self, limit: int = 200, *, status: str | None = None, text: str | None = None
    ) -> list[CampaignState]:
        """Newest first; ``text`` matches the name, wallet or channel."""
        query = self._select().order_by(campaigns.c.id.desc()).limit(limit)
        if status:
            query = query.where(campaigns.c.status == status)
        if text:
            like = f"%{text}%"
            query = query.where(
                sa.or_(
                    campaigns.c.name.ilike(like),
                    wallets.c.code.ilike(like),
                    campaigns.c.channel.ilike(like),
                )
            )
        with self.store.read() as c:
            return [_campaign(r) for r in c.execute(query)]

    def get(self, campaign_id: int) -> CampaignState | None:
        with self.store.read() as c:
            row = c.execute(self._select().where(campaigns.c.id == campaign_id)).first()
        return _campaign(row) if row else None

    def in_flight(self) -> Counter[str]:
        """Deliveries claimed right now, per account."""
        query = (
            sa.select(campaigns.c.account, sa.func.count())
            .select_from(deliveries.join(campaigns, campaigns.c.id == deliveries.c.campaign_id))
            .where(
                deliveries.c.status == "claimed",
                deliveries.c.lease_until.is_not(None),  # the partial index
                campaigns.c.status.in_(("sending", "paused", "held")),
            )
            .group_by(campaigns.c.account)
        )
        with self.store.read() as c:
            return Counter({str(a): int(n) for a, n in c.execute(query) if a})

    def results(self, campaign_id: int, *, chunk: int = 5000) -> Iterator[list[RecipientResult]]:
        """Per-recipient results (D17) in the campaign's order, ``chunk`` rows at a time.

        Keyset pagination on (campaign, position) — the unique index — so a million-row
        export reads each row once and never holds more than one chunk; the URLs clicked
        come from the click events of the chunk's deliveries (the (delivery, kind) index).
        """
        with self.store.read() as c:
            urls = dict(
                c.execute(
                    sa.select(links.c.position, links.c.url).where(
                        links.c.campaign_id == campaign_id
                    )
                ).all()
            )
        after = -1
        while True:
            query = (
                sa.select(
                    deliveries.c.id,
                    deliveries.c.position,
                    deliveries.c.address,
                    deliveries.c.status,
                    deliveries.c.provider_status,
                    deliveries.c.sent_at,
                    deliveries.c.delivered_at,
                    deliveries.c.opened_at,
                    deliveries.c.clicked_at,
                    deliveries.c.complained_at,
                    deliveries.c.unsubscribed,
                    deliveries.c.unsubscribed_at,
                    deliveries.c.error,
                    contacts.c.external_key,
                    contacts.c.identity,
                    contacts.c.name,
                )
                .select_from(
                    deliveries.outerjoin(contacts, contacts.c.id == deliveries.c.contact_id)
                )
                .where(deliveries.c.campaign_id == campaign_id, deliveries.c.position > after)
                .order_by(deliveries.c.position)
                .limit(chunk)
            )
            with self.store.read() as c:
                rows = c.execute(query).all()
                clicked = [r.id for r in rows if r.clicked_at is not None]
                clicks: dict[int, list[int]] = {}
                for start in range(0, len(clicked), 900):
                    for delivery_id, detail in c.execute(
                        sa.select(events.c.delivery_id, events.c.detail)
                        .where(
                            events.c.delivery_id.in_(clicked[start : start + 900]),
                            events.c.kind == "click",
                        )
                        .order_by(events.c.id)
                    ):
                        link = (detail or {}).get("link")
                        if isinstance(link, int):
                            clicks.setdefault(delivery_id, []).append(link)
            if not rows:
                return
            out = []
            for r in rows:
                positions = clicks.get(r.id, [])
                seen: list[str] = []
                for p in positions:
                    url = urls.get(p)
                    if url is not None and url not in seen:
                        seen.append(url)
                out.append(
                    RecipientResult(
                        position=r.position,
                        delivery_id=r.id,
                        code=r.external_key or r.identity,
                        name=r.name,
                        address=r.address,
                        status=r.status,
                        provider_status=r.provider_status,
                        sent_at=r.sent_at,
                        delivered_at=r.delivered_at,
                        opened_at=r.opened_at,
                        clicked_at=r.clicked_at,
                        clicks=len(positions),
                        urls=tuple(seen),
                        complained_at=r.complained_at,
                        unsubscribed=r.unsubscribed,
                        unsubscribed_at=r.unsubscribed_at,
                        reason=None if r.status in ("sent", "delivered") else (r.error or None),
                    )
                )
            yield out
            after = rows[-1].position
            if len(rows) < chunk:
                return


@dataclass(frozen=True)
class RecipientResult:
    """One recipient's result (D17)."""

    position: int
    delivery_id: int
    code: str | None
    name: str | None
    address: str
    status: str
    provider_status: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    clicks: int
    urls: tuple[str, ...]
    complained_at: datetime | None
    unsubscribed: str | None  # campaign | all
    unsubscribed_at: datetime | None
    reason: str | None  # why it was not sent (or bounced), for the ones not sent

    @property
    def unsubscribed_campaign(self) -> bool:
        return self.unsubscribed in ("campaign", "all")

    @property
    def unsubscribed_all(self) -> bool:
        return self.unsubscribed == "all"

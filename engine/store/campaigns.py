"""Campaign reads for people (the CLI and the UI): lists, one campaign, queues per account."""

from __future__ import annotations

from collections import Counter

import sqlalchemy as sa

from engine.store.base import Queries
from engine.store.dispatch import _CAMPAIGN_COLUMNS, CampaignState, _campaign
from engine.store.schema import campaigns, deliveries, wallets


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

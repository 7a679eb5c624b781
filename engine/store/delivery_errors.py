"""Errors by reason, per campaign and sender account: every retry, failure and bounce the
dispatcher confirms is counted here in the same transaction, under its reason with what
varies per recipient taken out, so ``campaign show``, ``/metrics`` and the UI read a few rows
instead of counting deliveries or events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.campaign import ACTIVE
from engine.reads import REASON_LENGTH as REASON_LENGTH
from engine.reads import ErrorCount as ErrorCount
from engine.reads import Waiting as Waiting
from engine.reads import error_count as _count
from engine.reads import errors_by_account, waiting_from
from engine.reads import reason_key as reason_key
from engine.store.base import Queries
from engine.store.schema import campaigns, deliveries, delivery_errors

#: outcomes that are errors
ERROR_OUTCOMES = ("retry", "failed", "bounced")

#: where each database's INSERT … ON CONFLICT lives (imported at use: a SQLite store never
#: loads the PostgreSQL dialect)
_DIALECT_MODULES = {
    "postgresql": "sqlalchemy.dialects.postgresql",
    "sqlite": "sqlalchemy.dialects.sqlite",
}


@dataclass(frozen=True)
class Counted:
    """One outcome to count (the dispatcher's confirmation)."""

    outcome: str
    reason: str
    scope: str


def for_campaign_select(campaign_id: Any, limit: Any) -> sa.Select[Any]:
    """A campaign's errors by reason, most frequent first (``error_count`` reads a row)."""
    return (
        sa.select(delivery_errors)
        .where(delivery_errors.c.campaign_id == campaign_id)
        .order_by(delivery_errors.c.count.desc(), delivery_errors.c.last_at.desc())
        .limit(limit)
    )


def waiting_select(campaign_id: Any) -> sa.Select[Any]:
    """(last error, deliveries, earliest next attempt) of a campaign's pending deliveries
    that were tried (``waiting_from`` reads them)."""
    return (
        sa.select(
            deliveries.c.error,
            sa.func.count().label("n"),
            sa.func.min(deliveries.c.next_attempt_at).label("next_at"),
        )
        .where(
            deliveries.c.campaign_id == campaign_id,
            deliveries.c.next_attempt_at.is_not(None),  # the partial index of retries
            deliveries.c.status.in_(("pending", "claimed")),
            deliveries.c.error.is_not(None),
        )
        .group_by(deliveries.c.error)
    )


def for_accounts_select(since: Any | None = None) -> sa.Select[Any]:
    """Errors by account and reason over every campaign (reasons seen since ``since`` when
    given), by account, most frequent first (``errors_by_account`` reads them)."""
    total = sa.func.sum(delivery_errors.c.count)
    query = (
        sa.select(
            delivery_errors.c.account,
            delivery_errors.c.outcome,
            delivery_errors.c.reason,
            sa.func.max(delivery_errors.c.scope).label("scope"),
            total.label("count"),
            sa.func.min(delivery_errors.c.first_at).label("first_at"),
            sa.func.max(delivery_errors.c.last_at).label("last_at"),
        )
        .group_by(delivery_errors.c.account, delivery_errors.c.outcome, delivery_errors.c.reason)
        .order_by(delivery_errors.c.account, total.desc())
    )
    if since is not None:
        query = query.where(delivery_errors.c.last_at >= since)
    return query


class DeliveryErrors(Queries):
    """Counting errors by reason, and reading the counts."""

    def add(
        self,
        campaign_id: int,
        account: str,
        found: Iterable[Counted],
        *,
        conn: Connection | None = None,
    ) -> None:
        """Count these outcomes (grouped by outcome and reason) in the caller's transaction."""
        grouped: dict[tuple[str, str], tuple[str, int]] = {}
        for f in found:
            key = (f.outcome, reason_key(f.reason))
            scope, n = grouped.get(key, (f.scope, 0))
            grouped[key] = (f.scope if f.scope == "account" else scope, n + 1)
        if not grouped:
            return
        now = self.store.clock.now()
        rows = [
            {
                "campaign_id": campaign_id,
                "account": account,
                "outcome": outcome,
                "reason": reason,
                "scope": scope,
                "count": n,
                "first_at": now,
                "last_at": now,
            }
            for (outcome, reason), (scope, n) in grouped.items()
        ]
        with self._writing(conn) as c:
            # the dialect's own INSERT … ON CONFLICT, imported for the database in use
            insert: Any = import_module(_DIALECT_MODULES[c.dialect.name]).insert(delivery_errors)
            c.execute(
                insert.on_conflict_do_update(
                    index_elements=["campaign_id", "account", "outcome", "reason"],
                    set_={
                        "count": delivery_errors.c.count + insert.excluded.count,
                        "last_at": insert.excluded.last_at,
                        "scope": insert.excluded.scope,
                    },
                ),
                rows,
            )

    def for_campaign(self, campaign_id: int, *, limit: int = 10) -> list[ErrorCount]:
        """A campaign's errors by reason, most frequent first."""
        with self.store.read() as c:
            return [_count(r._mapping) for r in c.execute(for_campaign_select(campaign_id, limit))]

    def for_accounts(
        self, *, since: datetime | None = None, limit: int = 10
    ) -> dict[str, list[ErrorCount]]:
        """Per sender account, its errors by reason over every campaign (optionally only
        reasons seen since ``since``), most frequent first, at most ``limit`` each."""
        with self.store.read() as c:
            return errors_by_account(
                (r._mapping for r in c.execute(for_accounts_select(since))), limit
            )

    def waiting(self, campaign_id: int, *, limit: int = 5) -> list[Waiting]:
        """Why what is not sent yet is not: pending deliveries that were tried, grouped by
        their last error, most first, with the earliest next attempt of each."""
        with self.store.read() as c:
            return waiting_from(c.execute(waiting_select(campaign_id)), limit)

    def retrying(self, now: datetime) -> dict[str, tuple[int, datetime | None]]:
        """Per sender account: deliveries of open campaigns that failed and wait for a retry
        after ``now``, and when the first of them is tried again."""
        query = (
            sa.select(
                campaigns.c.account,
                sa.func.count(),
                sa.func.min(deliveries.c.next_attempt_at),
            )
            .select_from(deliveries.join(campaigns, campaigns.c.id == deliveries.c.campaign_id))
            .where(
                deliveries.c.next_attempt_at.is_not(None),  # the partial index of retries
                deliveries.c.next_attempt_at > now,
                deliveries.c.status == "pending",
                campaigns.c.status.in_(ACTIVE),
                campaigns.c.account.is_not(None),
            )
            .group_by(campaigns.c.account)
        )
        with self.store.read() as c:
            return {
                str(account): (int(n), at if isinstance(at, datetime) else None)
                for account, n, at in c.execute(query)
            }

    def totals(self, campaign_ids: Sequence[int]) -> dict[int, int]:
        """Per campaign, how many errors (of every outcome) were counted."""
        if not campaign_ids:
            return {}
        with self.store.read() as c:
            return {
                int(cid): int(n)
                for cid, n in c.execute(
                    sa.select(delivery_errors.c.campaign_id, sa.func.sum(delivery_errors.c.count))
                    .where(delivery_errors.c.campaign_id.in_(list(campaign_ids)))
                    .group_by(delivery_errors.c.campaign_id)
                )
            }

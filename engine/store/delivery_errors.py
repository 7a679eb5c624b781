"""Errors by reason, per campaign and sender account: every retry, failure and bounce the
dispatcher confirms is counted here in the same transaction, under its reason with what
varies per recipient taken out, so ``campaign show``, ``/metrics`` and the UI read a few rows
instead of counting deliveries or events."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.campaign import ACTIVE
from engine.reads import ErrorCount as ErrorCount
from engine.reads import error_count as _count
from engine.reads import errors_by_account
from engine.store.base import Queries
from engine.store.schema import campaigns, deliveries, delivery_errors

#: outcomes that are errors
ERROR_OUTCOMES = ("retry", "failed", "bounced")
_EMAIL = re.compile(r"<?[^\s<>@,;]+@[^\s<>@,;]+>?")
_PHONE = re.compile(r"<?(?<![\w.])\+?\d[\d ()-]{7,}\d>?")
_SPACE = re.compile(r"\s+")
REASON_LENGTH = 300

#: where each database's INSERT … ON CONFLICT lives (imported at use: a SQLite store never
#: loads the PostgreSQL dialect)
_DIALECT_MODULES = {
    "postgresql": "sqlalchemy.dialects.postgresql",
    "sqlite": "sqlalchemy.dialects.sqlite",
}


def reason_key(reason: str | None) -> str:
    """The reason as counted: addresses and phone numbers become ``<address>`` and
    ``<number>`` (a 550 for ana@x and one for bia@y are the same reason), one line, at most
    300 characters."""
    text = _SPACE.sub(" ", reason or "unknown").strip() or "unknown"
    text = _PHONE.sub("<number>", _EMAIL.sub("<address>", text))
    return text[: REASON_LENGTH - 1] + "…" if len(text) > REASON_LENGTH else text


@dataclass(frozen=True)
class Waiting:
    """Deliveries not sent yet because of one reason (their last error), and when the first
    of them is tried again."""

    reason: str
    count: int
    next_at: datetime | None


@dataclass(frozen=True)
class Counted:
    """One outcome to count (the dispatcher's confirmation)."""

    outcome: str
    reason: str
    scope: str


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
        query = (
            sa.select(delivery_errors)
            .where(delivery_errors.c.campaign_id == campaign_id)
            .order_by(delivery_errors.c.count.desc(), delivery_errors.c.last_at.desc())
            .limit(limit)
        )
        with self.store.read() as c:
            return [_count(dict(r._mapping)) for r in c.execute(query)]

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
        query = (
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
        merged: dict[str, tuple[int, datetime | None]] = {}
        with self.store.read() as c:
            for error, n, next_at in c.execute(query):
                key = reason_key(error)
                count, first = merged.get(key, (0, None))
                if next_at is not None and not isinstance(next_at, datetime):
                    next_at = None
                soonest = min((t for t in (first, next_at) if t is not None), default=None)
                merged[key] = (count + int(n), soonest)
        ordered = sorted(merged.items(), key=lambda kv: -kv[1][0])[:limit]
        return [Waiting(reason, n, at) for reason, (n, at) in ordered]

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

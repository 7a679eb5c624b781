"""Campaigns in the store: the one mapping of a row to a ``Campaign``, the reads of the CLI,
the UI and the dispatcher, and the changes of state (D1) with their audit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.campaign import FINISHED, Campaign, Content
from engine.reads import campaign_from, in_flight_by_account
from engine.schedule import Pacing
from engine.store.base import Queries
from engine.store.schema import audit_log, campaigns, deliveries, wallets

#: delivery states that still need work
OPEN = ("pending", "claimed")

#: every column of a campaign but its content, and the wallet's code
ROW_COLUMNS: list[Any] = [
    *(c for c in campaigns.c if c.name not in Content.__dataclass_fields__),
    wallets.c.code.label("wallet"),
]
#: ... and its content too
FULL_COLUMNS: list[Any] = [*campaigns.c, wallets.c.code.label("wallet")]
FROM = campaigns.outerjoin(wallets, wallets.c.id == campaigns.c.wallet_id)


def pacing_columns(pacing: Pacing | None) -> dict[str, Any]:
    """A ``Pacing`` as the campaign's columns (the only place it is written)."""
    if pacing is None:
        return {"pacing_kind": None, "pacing_value": None, "pacing_interval_s": None}
    return {
        "pacing_kind": pacing.kind,
        "pacing_value": pacing.value,
        "pacing_interval_s": int(pacing.interval.total_seconds()),
    }


def campaign_columns(c: Campaign) -> dict[str, Any]:
    """A new ``Campaign`` as the values of its row (the store sets ids and counters)."""
    content = c.content
    return {
        "mailing_id": c.mailing_id,
        "name": c.name,
        "channel": c.channel,
        "account": c.account,
        "origin": c.origin,
        "address_kind": c.address_kind,
        "status": c.status,
        "status_reason": c.status_reason,
        "priority": c.priority,
        "start_at": c.start_at,
        "deadline": c.deadline,
        "exclude_recent_hours": c.exclude_recent_hours,
        "subject": content.subject,
        "body": content.body,
        "template": content.template,
        "whatsapp_number": content.whatsapp_number,
        "sender": content.sender,
        "from_name": content.from_name,
        "reply_to": content.reply_to,
        "settings": dict(content.settings),
        **pacing_columns(c.pacing),
    }


def campaign_select(campaign_id: Any, *, content: bool = True) -> sa.Select[Any]:
    """One campaign, with its content unless ``content=False`` (``campaign_from`` reads it)."""
    columns = FULL_COLUMNS if content else ROW_COLUMNS
    return sa.select(*columns).select_from(FROM).where(campaigns.c.id == campaign_id)


def recent_select(limit: Any, status: Any | None = None) -> sa.Select[Any]:
    """The newest campaigns first, without their content, ``status`` ones only when given:
    ``Campaigns.recent``'s statement, and the one ``engine.reads`` runs compiled (with bind
    parameters for ``limit`` and ``status``) for ``disparo campaigns``."""
    query = sa.select(*ROW_COLUMNS).select_from(FROM).order_by(campaigns.c.id.desc())
    if status is not None:
        query = query.where(campaigns.c.status == status)
    return query.limit(limit)


def in_flight_select() -> sa.Select[Any]:
    """(account, deliveries claimed right now) (``in_flight_by_account`` reads them)."""
    return (
        sa.select(campaigns.c.account, sa.func.count())
        .select_from(deliveries.join(campaigns, campaigns.c.id == deliveries.c.campaign_id))
        .where(
            deliveries.c.status == "claimed",
            deliveries.c.lease_until.is_not(None),  # the partial index
            campaigns.c.status.in_(("sending", "paused", "held")),
        )
        .group_by(campaigns.c.account)
    )


class Campaigns(Queries):
    """Campaign reads and changes of state."""

    def _select(self, *, content: bool = False) -> sa.Select[Any]:
        return sa.select(*(FULL_COLUMNS if content else ROW_COLUMNS)).select_from(FROM)

    def get(
        self, campaign_id: int, *, content: bool = True, conn: Connection | None = None
    ) -> Campaign | None:
        """One campaign, with its content unless ``content=False``."""
        with self._reading(conn) as c:
            row = c.execute(campaign_select(campaign_id, content=content))
            found = row.first()
        return campaign_from(found._mapping) if found else None

    def open(self, *, conn: Connection | None = None) -> list[Campaign]:
        """Every campaign not finished (scheduled, sending, paused, held; not a draft), with its
        content, highest priority then oldest first (D11)."""
        query = (
            self._select(content=True)
            .where(campaigns.c.status.not_in([*FINISHED, "draft"]))
            .order_by(campaigns.c.priority.desc(), campaigns.c.created_at, campaigns.c.id)
        )
        with self._reading(conn) as c:
            return [campaign_from(r._mapping) for r in c.execute(query)]

    def recent(
        self, limit: int = 200, *, status: str | None = None, text: str | None = None
    ) -> list[Campaign]:
        """Newest first; ``text`` matches the name, wallet or channel."""
        query = recent_select(limit, status or None)
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
            return [campaign_from(r._mapping) for r in c.execute(query)]

    def set_status(
        self,
        campaign_id: int,
        status: str,
        *,
        actor: str,
        reason: str | None = None,
        expect: Iterable[str] | None = None,
        values: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> str | None:
        """Change a campaign's status (D1), or the reason it is in it, recorded in the audit log
        with who and why. With ``expect``, only from one of those statuses. Returns the previous
        status, or None when nothing changed."""
        now = self.store.clock.now()
        with self._writing(conn) as c:
            row = c.execute(
                sa.select(
                    campaigns.c.status,
                    campaigns.c.status_reason,
                    campaigns.c.paused_since,
                    campaigns.c.paused_seconds,
                    campaigns.c.started_at,
                ).where(campaigns.c.id == campaign_id)
            ).first()
            if row is None or (expect is not None and row.status not in set(expect)):
                return None
            if row.status == status and not values and row.status_reason == reason:
                return None
            update: dict[str, Any] = {
                "status": status,
                "status_reason": reason,
                "updated_at": now,
                **(values or {}),
            }
            stopped = ("paused", "held")
            if status in stopped and row.paused_since is None:
                update["paused_since"] = now
            if status not in stopped and row.paused_since is not None:
                update["paused_since"] = None
                update["paused_seconds"] = row.paused_seconds + int(
                    (now - row.paused_since).total_seconds()
                )
            if update.get("started_at") is not None and row.started_at is None:
                # the schedule runs from the start: time held or paused before it is not a shift
                update["paused_seconds"] = 0
            c.execute(sa.update(campaigns).where(campaigns.c.id == campaign_id).values(**update))
            c.execute(
                sa.insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action="campaign.status",
                    target=f"campaign:{campaign_id}",
                    detail={"from": row.status, "to": status, "reason": reason},
                )
            )
            return str(row.status)

    def set_fields(
        self, campaign_id: int, *, conn: Connection | None = None, **values: Any
    ) -> None:
        with self._writing(conn) as c:
            c.execute(
                sa.update(campaigns)
                .where(campaigns.c.id == campaign_id)
                .values(updated_at=self.store.clock.now(), **values)
            )

    def release_batches(self, campaign_id: int, released: int) -> bool:
        """Record that batches 1..``released`` are released (D5); False if already so."""
        with self.store.write() as c:
            done = c.execute(
                sa.update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.released_batches < released)
                .values(released_batches=released, updated_at=self.store.clock.now())
            )
            return done.rowcount == 1

    def has_open_deliveries(self, campaign_id: int) -> bool:
        """Is any delivery still pending or claimed (retries included)?"""
        with self.store.read() as c:
            return (
                c.execute(
                    sa.select(deliveries.c.id)
                    .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status.in_(OPEN))
                    .limit(1)
                ).first()
                is not None
            )

    def next_claimable(self, campaign_id: int, released: int, now: datetime) -> int | None:
        """The lowest released batch with a delivery ready to send now, or None (asked before
        each chunk a sender claims: run as driver SQL compiled once from ``next_claimable_select``,
        ~0.8 ms through Core per call, a twentieth of that at the driver)."""
        from engine.store.claims import _driver

        with self.store.read() as c:
            value = _driver(c.dialect).next_claimable(c, campaign_id, released, now)
        return int(value) if value is not None else None

    def next_retry_at(self, campaign_id: int) -> datetime | None:
        with self.store.read() as c:
            value = c.execute(
                sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                    deliveries.c.campaign_id == campaign_id, deliveries.c.status == "pending"
                )
            ).scalar()
        return value if isinstance(value, datetime) else None

    def close_out(
        self,
        campaign_id: int,
        status: str,
        reason: str | None = None,
        *,
        conn: Connection | None = None,
    ) -> int:
        """Expire (D8) or cancel every delivery not handed to a provider yet; returns how many.
        Claimed ones are left to their sender, which stops before sending."""
        now = self.store.clock.now()
        counter = {"expired": "expired", "cancelled": "cancelled"}[status]
        with self._writing(conn) as c:
            done = c.execute(
                sa.update(deliveries)
                .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status == "pending")
                .values(status=status, finished_at=now, error=reason, next_attempt_at=None)
            )
            n = int(done.rowcount or 0)
            if n:
                c.execute(
                    sa.update(campaigns)
                    .where(campaigns.c.id == campaign_id)
                    .values(**{counter: getattr(campaigns.c, counter) + n}, updated_at=now)
                )
            return n

    def in_flight(self) -> Counter[str]:
        """Deliveries claimed right now, per account."""
        with self.store.read() as c:
            return in_flight_by_account(c.execute(in_flight_select()))


def next_claimable_select() -> sa.Select[Any]:
    """The lowest released batch (``:released``) of campaign ``:c`` with a delivery ready to
    send at ``:now`` (``Campaigns.next_claimable``)."""
    return sa.select(sa.func.min(deliveries.c.batch)).where(
        deliveries.c.campaign_id == sa.bindparam("c", type_=deliveries.c.campaign_id.type),
        deliveries.c.status == "pending",
        deliveries.c.batch.between(1, sa.bindparam("released", type_=deliveries.c.batch.type)),
        sa.or_(
            deliveries.c.next_attempt_at.is_(None),
            deliveries.c.next_attempt_at
            <= sa.bindparam("now", type_=deliveries.c.next_attempt_at.type),
        ),
    )

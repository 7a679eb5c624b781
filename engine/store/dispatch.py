"""Dispatch queries: campaign states, batch releases, leased claims (D12), confirmations with
their events, counters and suppressions, lease rescue, account leases and the guard's counts.

Claims: on SQLite a ``BEGIN IMMEDIATE`` transaction and ``UPDATE … RETURNING``; on PostgreSQL
the same statement whose inner select is ``FOR UPDATE SKIP LOCKED``, so engine nodes never
take the same delivery.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.addresses import suppression_key
from engine.store.base import Queries
from engine.store.schema import (
    COUNTERS,
    SETTLED_COUNTERS,
    UTCDateTime,
    accounts,
    audit_log,
    campaigns,
    contacts,
    deliveries,
    events,
    suppressions,
    wallets,
)

#: campaign states that are over (D1)
FINISHED = frozenset({"completed", "cancelled", "expired"})
#: delivery states that still need work
OPEN = ("pending", "claimed")


@dataclass(frozen=True)
class CampaignState:
    """A campaign as the dispatcher sees it."""

    id: int
    name: str
    channel: str
    account: str | None
    wallet: str | None
    status: str
    status_reason: str | None
    priority: int
    created_at: datetime
    start_at: datetime
    deadline: datetime | None
    started_at: datetime | None
    pacing_kind: str | None
    pacing_value: int | None
    pacing_interval_s: int | None
    batches: int
    released_batches: int
    paused_seconds: int
    paused_since: datetime | None
    recipients: int
    exclude_recent_hours: int | None
    subject: str | None
    body: str | None
    template: str | None
    whatsapp_number: str | None
    sender: str | None
    from_name: str | None
    reply_to: str | None
    settings: Mapping[str, Any]
    counters: Mapping[str, int] = field(default_factory=dict)
    finished_at: datetime | None = None
    mailing_id: int | None = None

    @property
    def remaining(self) -> int:
        """Recipients not settled yet (pending, in flight or waiting for a retry)."""
        settled = sum(self.counters.get(k, 0) for k in SETTLED_COUNTERS)
        return max(0, self.recipients - settled)


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for sending, with what personalises it."""

    id: int
    campaign_id: int
    contact_id: int | None
    address: str
    batch: int
    attempts: int
    first_attempt_at: datetime | None
    payload: Mapping[str, Any] | None
    name: str | None
    email: str | None
    phone: str | None
    external_key: str | None
    fields: Mapping[str, Any]
    last_interaction_at: datetime | None


@dataclass(frozen=True)
class Outcome:
    """What happened to one claimed delivery.

    ``kind``: sent | retry | failed | bounced | suppressed | skipped | expired | cancelled |
    release (back to pending, untouched: a pause or a shutdown).
    """

    delivery_id: int
    kind: str
    contact_id: int | None = None
    address: str | None = None
    provider_id: str | None = None
    message_id: str | None = None
    error: str | None = None
    next_attempt_at: datetime | None = None
    #: suppress the address with this origin (bounce, stop)
    suppress: str | None = None
    #: the address kind for the suppression (email | phone)
    address_kind: str = "email"


@dataclass(frozen=True)
class AccountState:
    name: str
    channel: str
    guard_state: str
    paused_at: datetime | None
    paused_until: datetime | None
    pause_reason: str | None
    override_by: str | None
    override_reason: str | None
    override_at: datetime | None
    checked_at: datetime | None
    sent_24h: int
    bounces_24h: int
    complaints_24h: int
    lease_owner: str | None
    lease_until: datetime | None


def _campaign(r: Any) -> CampaignState:
    m = r._mapping
    return CampaignState(
        id=m["id"],
        name=m["name"],
        channel=m["channel"],
        account=m["account"],
        wallet=m["wallet"],
        status=m["status"],
        status_reason=m["status_reason"],
        priority=m["priority"],
        created_at=m["created_at"],
        start_at=m["start_at"],
        deadline=m["deadline"],
        started_at=m["started_at"],
        pacing_kind=m["pacing_kind"],
        pacing_value=m["pacing_value"],
        pacing_interval_s=m["pacing_interval_s"],
        batches=m["batches"],
        released_batches=m["released_batches"],
        paused_seconds=m["paused_seconds"],
        paused_since=m["paused_since"],
        recipients=m["recipients"],
        exclude_recent_hours=m["exclude_recent_hours"],
        subject=m["subject"],
        body=m["body"],
        template=m["template"],
        whatsapp_number=m["whatsapp_number"],
        sender=m["sender"],
        from_name=m["from_name"],
        reply_to=m["reply_to"],
        settings=m["settings"] or {},
        counters={name: m[name] for name in COUNTERS},
        finished_at=m["finished_at"],
        mailing_id=m["mailing_id"],
    )


def _account(r: Any) -> AccountState:
    m = r._mapping
    return AccountState(**{k: m[k] for k in AccountState.__dataclass_fields__})


_CAMPAIGN_COLUMNS = [*campaigns.c, wallets.c.code.label("wallet")]
_CLAIMED: dict[str, Any] = {
    "id": sa.Integer(),
    "contact_id": sa.Integer(),
    "address": sa.String(),
    "batch": sa.Integer(),
    "attempts": sa.Integer(),
    "first_attempt_at": UTCDateTime(),
    "payload": deliveries.c.payload.type,
}


class Dispatch(Queries):
    """The dispatcher's reads and writes."""

    def _text(self, sql: str, *datetimes: str) -> sa.TextClause:
        return sa.text(sql).bindparams(*(sa.bindparam(n, type_=UTCDateTime()) for n in datetimes))

    # -- campaigns ---------------------------------------------------------------------------

    def open_campaigns(self, *, conn: Connection | None = None) -> list[CampaignState]:
        """Every campaign not finished (scheduled, sending, paused, held)."""
        query = (
            sa.select(*_CAMPAIGN_COLUMNS)
            .select_from(campaigns.outerjoin(wallets, wallets.c.id == campaigns.c.wallet_id))
            .where(campaigns.c.status.not_in(FINISHED))
            .order_by(campaigns.c.priority.desc(), campaigns.c.created_at, campaigns.c.id)
        )
        with self._reading(conn) as c:
            return [_campaign(r) for r in c.execute(query)]

    def campaign(self, campaign_id: int, *, conn: Connection | None = None) -> CampaignState | None:
        query = (
            sa.select(*_CAMPAIGN_COLUMNS)
            .select_from(campaigns.outerjoin(wallets, wallets.c.id == campaigns.c.wallet_id))
            .where(campaigns.c.id == campaign_id)
        )
        with self._reading(conn) as c:
            row = c.execute(query).first()
        return _campaign(row) if row else None

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
        """Change a campaign's status (D1), recorded in the audit log with who and why.
        With ``expect``, only from one of those statuses. Returns the previous status, or None
        when nothing changed."""
        now = self.store.clock.now()
        with self._writing(conn) as c:
            row = c.execute(
                sa.select(
                    campaigns.c.status, campaigns.c.paused_since, campaigns.c.paused_seconds
                ).where(campaigns.c.id == campaign_id)
            ).first()
            if row is None or (expect is not None and row.status not in set(expect)):
                return None
            if row.status == status and not values:
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
        """The lowest released batch with a delivery ready to send now, or None."""
        with self.store.read() as c:
            value = c.execute(
                sa.select(sa.func.min(deliveries.c.batch)).where(
                    deliveries.c.campaign_id == campaign_id,
                    deliveries.c.status == "pending",
                    deliveries.c.batch.between(1, released),
                    sa.or_(
                        deliveries.c.next_attempt_at.is_(None), deliveries.c.next_attempt_at <= now
                    ),
                )
            ).scalar()
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

    # -- claims (D12) ------------------------------------------------------------------------

    def claim(
        self, campaign_id: int, *, owner: str, released: int, limit: int, lease: timedelta
    ) -> list[Claimed]:
        """Lease up to ``limit`` ready deliveries of a campaign, in batch and file order."""
        now = self.store.clock.now()
        # the only text put into this SQL is this constant clause, never a value
        skip = " FOR UPDATE SKIP LOCKED" if self.store.dialect == "postgresql" else ""
        sql = (
            "UPDATE deliveries SET status = 'claimed', lease_owner = :owner, lease_until = :until "
            "WHERE id IN (SELECT id FROM deliveries WHERE campaign_id = :c "
            "AND status = 'pending' AND batch BETWEEN 1 AND :released "
            "AND (next_attempt_at IS NULL OR next_attempt_at <= :now) "
            f"ORDER BY batch, position LIMIT :limit{skip}) "
            "RETURNING id, contact_id, address, batch, attempts, first_attempt_at, payload"
        )
        statement = self._text(sql, "now", "until").columns(**_CLAIMED)
        with self.store.write() as c:
            rows = c.execute(
                statement,
                {
                    "owner": owner,
                    "until": now + lease,
                    "c": campaign_id,
                    "released": released,
                    "now": now,
                    "limit": limit,
                },
            ).all()
            if not rows:
                return []
            ids = [r.contact_id for r in rows if r.contact_id is not None]
            people = (
                {
                    p.id: p
                    for p in c.execute(
                        sa.select(
                            contacts.c.id,
                            contacts.c.name,
                            contacts.c.email,
                            contacts.c.phone,
                            contacts.c.external_key,
                            contacts.c.fields,
                            contacts.c.last_interaction_at,
                        ).where(contacts.c.id.in_(ids))
                    )
                }
                if ids
                else {}
            )
        claimed = []
        for r in sorted(rows, key=lambda r: (r.batch, r.id)):
            p = people.get(r.contact_id)
            payload = r.payload
            if isinstance(payload, str):
                payload = json.loads(payload)
            first = r.first_attempt_at
            fields = p.fields if p is not None else {}
            claimed.append(
                Claimed(
                    id=r.id,
                    campaign_id=campaign_id,
                    contact_id=r.contact_id,
                    address=r.address,
                    batch=r.batch,
                    attempts=r.attempts,
                    first_attempt_at=first,
                    payload=payload,
                    name=p.name if p else None,
                    email=p.email if p else None,
                    phone=p.phone if p else None,
                    external_key=p.external_key if p else None,
                    fields=fields or {},
                    last_interaction_at=p.last_interaction_at if p else None,
                )
            )
        return claimed

    def suppressed(self, kind: str, addresses: Sequence[str]) -> set[str]:
        """Which of these (normalised) addresses are suppressed (D4)."""
        if not addresses:
            return set()
        with self.store.read() as c:
            return {
                r.address
                for r in c.execute(
                    sa.select(suppressions.c.address).where(
                        suppressions.c.kind == kind, suppressions.c.address.in_(list(addresses))
                    )
                )
            }

    def confirm(
        self, campaign_id: int, owner: str, outcomes: Sequence[Outcome], *, account: str | None
    ) -> Counter[str]:
        """Record what happened to claimed deliveries, in one transaction: delivery states,
        events, contacts' last interaction, suppressions and the campaign's counters. Only
        deliveries this owner still holds change; the returned counts say how many did."""
        now = self.store.clock.now()
        done: Counter[str] = Counter()
        if not outcomes:
            return done
        by_kind: dict[str, list[Outcome]] = {}
        for o in outcomes:
            by_kind.setdefault(o.kind, []).append(o)
        with self.store.write() as c:
            held = {
                r.id
                for r in c.execute(
                    sa.select(deliveries.c.id).where(
                        deliveries.c.id.in_([o.delivery_id for o in outcomes]),
                        deliveries.c.status == "claimed",
                        deliveries.c.lease_owner == owner,
                    )
                )
            }
            ev: list[dict[str, Any]] = []
            for kind, items in by_kind.items():
                mine = [o for o in items if o.delivery_id in held]
                if not mine:
                    continue
                done[kind] += len(mine)
                c.execute(
                    _UPDATES[kind],
                    [
                        {
                            "b_id": o.delivery_id,
                            "b_now": now,
                            "b_error": o.error,
                            "b_next": o.next_attempt_at,
                            "b_provider": o.provider_id,
                            "b_message": o.message_id,
                        }
                        for o in mine
                    ],
                )
                if kind != "release":
                    for o in mine:
                        detail: dict[str, Any] = {}
                        if o.error:
                            detail["reason"] = o.error
                        if o.provider_id:
                            detail["provider_id"] = o.provider_id
                        if o.message_id:
                            detail["message_id"] = o.message_id
                        ev.append(
                            {
                                "at": now,
                                "kind": kind,
                                "campaign_id": campaign_id,
                                "delivery_id": o.delivery_id,
                                "contact_id": o.contact_id,
                                "account": account,
                                "address": o.address,
                                "origin": "engine",
                                "detail": detail,
                            }
                        )
                if kind == "sent":
                    ids = [o.contact_id for o in mine if o.contact_id is not None]
                    if ids:
                        c.execute(
                            sa.update(contacts)
                            .where(contacts.c.id.in_(ids))
                            .values(last_interaction_at=now)
                        )
                for o in mine:
                    if o.suppress and o.address:
                        self._suppress(c, o, campaign_id, now)
            if ev:
                c.execute(sa.insert(events), ev)
            counts = {
                name: getattr(campaigns.c, name) + n
                for name, n in ((_COUNTER_OF.get(k), n) for k, n in done.items())
                if name is not None
            }
            if counts:
                c.execute(
                    sa.update(campaigns)
                    .where(campaigns.c.id == campaign_id)
                    .values(updated_at=now, **counts)
                )
        return done

    def _suppress(self, c: Connection, o: Outcome, campaign_id: int, now: datetime) -> None:
        assert o.address is not None and o.suppress is not None
        self.store.suppressions.add(
            o.address_kind,
            suppression_key(o.address_kind, o.address),
            origin=o.suppress,
            actor="engine",
            reason=o.error,
            campaign_id=campaign_id,
            conn=c,
        )

    def rescue_leases(self) -> int:
        """Claims whose lease ran out (their engine died) go back to pending: at least once."""
        now = self.store.clock.now()
        with self.store.write() as c:
            done = c.execute(
                sa.update(deliveries)
                .where(
                    deliveries.c.lease_until.is_not(None),
                    deliveries.c.lease_until < now,
                    deliveries.c.status == "claimed",
                )
                .values(status="pending", lease_owner=None, lease_until=None)
            )
            return int(done.rowcount or 0)

    def claimed_by_others(self, owner: str) -> int:
        """Deliveries leased by other engines (alive, or dead and not yet rescued)."""
        with self.store.read() as c:
            return int(
                c.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.lease_until.is_not(None),
                        deliveries.c.status == "claimed",
                        deliveries.c.lease_owner != owner,
                    )
                ).scalar()
                or 0
            )

    def release_all(self, owner: str) -> int:
        """A stopping engine gives back what it claimed and did not send."""
        with self.store.write() as c:
            done = c.execute(
                sa.update(deliveries)
                .where(deliveries.c.lease_owner == owner, deliveries.c.status == "claimed")
                .values(status="pending", lease_owner=None, lease_until=None)
            )
            c.execute(
                sa.update(accounts)
                .where(accounts.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )
            return int(done.rowcount or 0)

    # -- accounts ----------------------------------------------------------------------------

    def sync_accounts(self, configured: Mapping[str, str]) -> None:
        """Make sure every configured account (name -> channel) has a state row."""
        now = self.store.clock.now()
        with self.store.write() as c:
            known = {
                r.name: r.channel for r in c.execute(sa.select(accounts.c.name, accounts.c.channel))
            }
            for name, channel in configured.items():
                if name not in known:
                    c.execute(
                        sa.insert(accounts).values(
                            name=name, channel=channel, guard_state="ok", updated_at=now
                        )
                    )
                elif known[name] != channel:
                    c.execute(
                        sa.update(accounts)
                        .where(accounts.c.name == name)
                        .values(channel=channel, updated_at=now)
                    )

    def account_states(self) -> dict[str, AccountState]:
        with self.store.read() as c:
            return {r.name: _account(r) for r in c.execute(sa.select(accounts))}

    def lease_account(self, name: str, owner: str, lease: timedelta) -> bool:
        """Take (or renew) the right to send for an account: one engine node at a time."""
        now = self.store.clock.now()
        with self.store.write() as c:
            done = c.execute(
                sa.update(accounts)
                .where(
                    accounts.c.name == name,
                    sa.or_(
                        accounts.c.lease_owner.is_(None),
                        accounts.c.lease_owner == owner,
                        accounts.c.lease_until < now,
                    ),
                )
                .values(lease_owner=owner, lease_until=now + lease)
            )
            return done.rowcount == 1

    def guard_window(self, account: str, since: datetime) -> tuple[int, int, int]:
        """(messages sent, hard bounces, complaints) of an account since ``since`` (D14)."""
        with self.store.read() as c:
            found: dict[str, int] = dict(
                c.execute(
                    sa.select(events.c.kind, sa.func.count())
                    .where(
                        events.c.account == account,
                        events.c.at >= since,
                        events.c.kind.in_(("sent", "bounced", "complaint")),
                    )
                    .group_by(events.c.kind)
                ).all()
            )
        return found.get("sent", 0), found.get("bounced", 0), found.get("complaint", 0)

    def set_guard(
        self,
        name: str,
        *,
        actor: str,
        audit: str | None = None,
        detail: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
        **values: Any,
    ) -> None:
        now = self.store.clock.now()
        with self._writing(conn) as c:
            c.execute(
                sa.update(accounts).where(accounts.c.name == name).values(updated_at=now, **values)
            )
            if audit:
                c.execute(
                    sa.insert(audit_log).values(
                        at=now,
                        actor=actor,
                        action=audit,
                        target=f"account:{name}",
                        detail=dict(detail or {}),
                    )
                )


def _update(kind: str) -> sa.Update:
    """The statement that records one kind of outcome (run with executemany)."""
    now = sa.bindparam("b_now", type_=UTCDateTime())
    values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if kind == "release":
        values["status"] = "pending"
    elif kind == "retry":
        values |= {
            "status": "pending",
            "attempts": deliveries.c.attempts + 1,
            "first_attempt_at": sa.func.coalesce(deliveries.c.first_attempt_at, now),
            "next_attempt_at": sa.bindparam("b_next", type_=UTCDateTime()),
            "error": sa.bindparam("b_error"),
        }
    else:
        values |= {
            "status": kind,
            "finished_at": now,
            "error": sa.bindparam("b_error"),
            "next_attempt_at": None,
        }
        if kind in ("sent", "failed", "bounced"):
            values |= {
                "attempts": deliveries.c.attempts + 1,
                "first_attempt_at": sa.func.coalesce(deliveries.c.first_attempt_at, now),
            }
        if kind == "sent":
            values |= {
                "sent_at": now,
                "provider_id": sa.bindparam("b_provider"),
                "message_id": sa.bindparam("b_message"),
            }
    return sa.update(deliveries).where(deliveries.c.id == sa.bindparam("b_id")).values(**values)


_UPDATES = {
    kind: _update(kind)
    for kind in (
        "sent",
        "retry",
        "failed",
        "bounced",
        "suppressed",
        "skipped",
        "expired",
        "cancelled",
        "release",
    )
}

_COUNTER_OF = {
    "sent": "sent",
    "failed": "failed",
    "bounced": "bounced",
    "suppressed": "suppressed",
    "skipped": "skipped",
    "expired": "expired",
    "cancelled": "cancelled",
}

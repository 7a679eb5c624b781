"""Lists (wallets) and what their exports read (S1–S3): members, opt-outs, opens and clicks,
SMS outcomes, each incremental export reading a range of the event log.

The event log's order (S3). An incremental export covers the events in ``[lo, hi)`` of a
*commit-ordered* sequence, ``hi`` being the horizon when it was planned and ``lo`` where the
one before it ended. The sequence must be such that once ``hi`` is taken, no event can still
appear below it — else an event committed late would fall into a range already exported:

- SQLite (``by = "id"``): writers take turns (one write lock, held from a transaction's first
  write to its commit), and a row's id is the largest id plus one when it is written. So every
  id below the largest committed one is committed already, and a writer still running writes
  only larger ids: the horizon is the largest id a reader sees, plus one.
- PostgreSQL (``by = "txid"``): ids come from a sequence at insert time while transactions
  commit in any order, so "id > last exported id" would skip an event whose transaction
  committed after a larger id was exported. Each event row instead carries the id of its
  transaction (``events.txid``, default ``pg_current_xact_id()``), and the horizon is
  ``pg_snapshot_xmin(pg_current_snapshot())``: every transaction with a smaller id has ended
  (committed and visible, or rolled back), and every transaction still running or yet to come
  has an id at least as large. So the rows below the horizon are final, and consecutive
  horizons cut the log into ranges that never overlap and leave nothing out. Rows written
  before the column existed (NULL) belong to the first range.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, Connection

from engine.store.base import Queries
from engine.store.schema import (
    campaigns,
    contacts,
    deliveries,
    events,
    files,
    suppressions,
    wallet_members,
    wallets,
)

#: the event kinds an SMS outcomes export reports (per SMS: what happened to it)
OUTCOME_KINDS = (
    "sent",
    "delivered",
    "failed",
    "bounced",
    "expired",
    "suppressed",
    "skipped",
    "cancelled",
    "open",
)
#: rows per page: a list of millions is read a page at a time, never whole
PAGE = 5000


@dataclass(frozen=True)
class Range:
    """A half-open range ``[lo, hi)`` of the event sequence ``by`` (``id`` or ``txid``)."""

    by: str
    lo: int
    hi: int

    def as_json(self) -> dict[str, Any]:
        return {"by": self.by, "from": self.lo, "to": self.hi}

    @classmethod
    def of(cls, detail: Mapping[str, Any]) -> Range:
        return cls(str(detail["by"]), int(detail["from"]), int(detail["to"]))


@dataclass(frozen=True)
class Member:
    """A list's contact as an export shows it."""

    contact_id: int
    email: str | None
    phone: str | None
    external_key: str | None
    name: str | None
    fields: Mapping[str, Any]
    #: when it joined the list (None where an export does not say)
    added_at: datetime | None


@dataclass(frozen=True)
class OptOut:
    """One opt-out of one of the list's contacts (an ``optout`` event)."""

    event_id: int
    at: datetime
    origin: str
    reason: str | None
    campaign_id: int | None
    member: Member


@dataclass(frozen=True)
class Stat:
    """Opens and clicks of one contact on one message, in a range."""

    delivery_id: int
    campaign_id: int
    campaign: str
    opens: int
    clicks: int
    first_open: datetime | None
    last_click: datetime | None
    member: Member


@dataclass(frozen=True)
class Outcome:
    """One status of one SMS (an event of ``OUTCOME_KINDS``)."""

    event_id: int
    at: datetime
    status: str
    error: str | None
    delivery_id: int | None
    address: str | None
    campaign_id: int
    campaign: str
    channel: str
    external_key: str | None
    name: str | None


@dataclass(frozen=True)
class ListSummary:
    """A list for ``disparo lists``."""

    code: str
    created_at: datetime
    members: int
    removed: int
    last_import_path: str | None
    last_import_source: str | None
    last_import_at: datetime | None


def _member(m: Mapping[str, Any]) -> Member:
    return Member(
        int(m["contact_id"]),
        m["email"],
        m["phone"],
        m["external_key"],
        m["name"],
        m["fields"] or {},
        m["added_at"],
    )


_MEMBER_COLUMNS = (
    contacts.c.id.label("contact_id"),
    contacts.c.email,
    contacts.c.phone,
    contacts.c.external_key,
    contacts.c.name,
    contacts.c.fields,
    wallet_members.c.added_at,
)


def _reason(detail: Mapping[str, Any]) -> str | None:
    """An outcome's error in words: the send's reason, or the provider's status and codes."""
    if detail.get("reason"):
        return str(detail["reason"])
    parts = [str(detail[k]) for k in ("status", "error_code", "diagnostic") if detail.get(k)]
    return " ".join(parts) or None


class Lists(Queries):
    """Queries of lists and their exports."""

    # -- the event sequence (S3) ---------------------------------------------------------

    def horizon(self, after: int = 0) -> Range:
        """The range from ``after`` to the current horizon of the event sequence: every event
        below the horizon is committed and no event can appear below it any more (the
        module's docstring says why)."""
        with self.store.read() as c:
            if c.dialect.name == "postgresql":
                hi = int(
                    c.execute(
                        sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
                    ).scalar_one()
                )
                by = "txid"
            else:
                hi = (
                    int(
                        c.execute(
                            sa.select(sa.func.coalesce(sa.func.max(events.c.id), 0))
                        ).scalar_one()
                    )
                    + 1
                )
                by = "id"
        # horizons never go back (the oldest running transaction only gets younger): a
        # range never starts before the one it follows ended
        return Range(by, after, max(hi, after))

    @staticmethod
    def _within(r: Range) -> ColumnElement[bool]:
        column = events.c.txid if r.by == "txid" else events.c.id
        inside = sa.and_(column >= r.lo, column < r.hi)
        if r.by == "txid" and r.lo == 0:
            return sa.or_(inside, column.is_(None))  # written before the column existed
        return inside

    # -- lists ---------------------------------------------------------------------------

    def wallet_id(self, code: str, conn: Connection | None = None) -> int | None:
        with self._reading(conn) as c:
            found = c.execute(sa.select(wallets.c.id).where(wallets.c.code == code)).scalar()
            return int(found) if found is not None else None

    def summaries(self) -> list[ListSummary]:
        """Every list: members now, members a list sync took out, the last file imported."""
        with self.store.read() as c:
            counts: dict[int, tuple[int, int]] = {}
            for wallet_id, active, n in c.execute(
                sa.select(
                    wallet_members.c.wallet_id,
                    wallet_members.c.removed_at.is_(None),
                    sa.func.count(),
                ).group_by(wallet_members.c.wallet_id, wallet_members.c.removed_at.is_(None))
            ):
                members, removed = counts.get(int(wallet_id), (0, 0))
                if active:
                    members += int(n)
                else:
                    removed += int(n)
                counts[int(wallet_id)] = (members, removed)
            newest = (
                sa.select(files.c.wallet_id, sa.func.max(files.c.id).label("id"))
                .where(files.c.outcome == "imported", files.c.wallet_id.is_not(None))
                .group_by(files.c.wallet_id)
                .subquery()
            )
            last = {
                int(r.wallet_id): r
                for r in c.execute(
                    sa.select(
                        files.c.wallet_id, files.c.path, files.c.source, files.c.created_at
                    ).join(newest, newest.c.id == files.c.id)
                )
            }
            out = []
            for w in c.execute(sa.select(wallets).order_by(wallets.c.code)):
                members, removed = counts.get(int(w.id), (0, 0))
                f = last.get(int(w.id))
                out.append(
                    ListSummary(
                        w.code,
                        w.created_at,
                        members,
                        removed,
                        f.path if f else None,
                        f.source if f else None,
                        f.created_at if f else None,
                    )
                )
            return out

    # -- what the exports read -----------------------------------------------------------

    def opt_outs(self, code: str, r: Range) -> list[OptOut]:
        """The opt-outs in ``r`` of the list's contacts, in the log's order: an opt-out is the
        list's when a contact with that address (or the contact it was made for) was a member
        when it happened, so the answer for a range never changes (a retried export writes
        the same rows). One row per opt-out and contact."""
        with self.store.read() as c:
            wallet_id = self.wallet_id(code, c)
            if wallet_id is None:
                return []
            found = c.execute(
                sa.select(
                    events.c.id,
                    events.c.at,
                    events.c.address,
                    events.c.contact_id,
                    events.c.campaign_id,
                    events.c.detail,
                )
                .where(events.c.kind == "optout", self._within(r))
                .order_by(events.c.id)
            ).all()
            if not found:
                return []
            by_contact = {int(e.contact_id) for e in found if e.contact_id is not None}
            addresses = {str(e.address) for e in found if e.address}
            matches: dict[str, list[tuple[Member, datetime | None]]] = {}
            ids: dict[int, tuple[Member, datetime | None]] = {}
            # one pass over the list's members: opt-outs are few, a list may be millions
            after = -1
            while True:
                page = c.execute(
                    sa.select(*_MEMBER_COLUMNS, wallet_members.c.removed_at)
                    .select_from(
                        wallet_members.join(contacts, contacts.c.id == wallet_members.c.contact_id)
                    )
                    .where(wallet_members.c.wallet_id == wallet_id, contacts.c.id > after)
                    .order_by(contacts.c.id)
                    .limit(PAGE)
                ).all()
                for row in page:
                    m = dict(row._mapping)
                    entry = (_member(m), m["removed_at"])
                    if entry[0].contact_id in by_contact:
                        ids[entry[0].contact_id] = entry
                    email = (m["email"] or "").strip().lower()
                    phone = (m["phone"] or "").strip()
                    for address in (email, phone):
                        if address and address in addresses:
                            matches.setdefault(address, []).append(entry)
                if len(page) < PAGE:
                    break
                after = int(page[-1].contact_id)
        out: list[OptOut] = []
        for e in found:
            detail = e.detail or {}
            candidates = matches.get(str(e.address), [])
            if e.contact_id is not None and int(e.contact_id) in ids:
                candidates = [ids[int(e.contact_id)], *candidates]
            seen: set[int] = set()
            for member, removed_at in candidates:
                if member.contact_id in seen:
                    continue
                joined = member.added_at
                if (joined is not None and joined > e.at) or (
                    removed_at is not None and removed_at <= e.at
                ):
                    continue  # not a member when it happened
                seen.add(member.contact_id)
                out.append(
                    OptOut(
                        int(e.id),
                        e.at,
                        str(detail.get("origin") or "unsubscribe"),
                        detail.get("reason"),
                        e.campaign_id,
                        member,
                    )
                )
        return out

    def stats(self, code: str, r: Range) -> Iterator[list[Stat]]:
        """Opens and clicks in ``r`` of the list's messages (campaigns of the list), per
        contact and message, a page at a time: how many of each, the first open of the
        message (ever: a click counts as one when no open was seen), the last click in ``r``."""
        opens = sa.func.sum(sa.case((events.c.kind == "open", 1), else_=0))
        clicks = sa.func.sum(sa.case((events.c.kind == "click", 1), else_=0))
        last_click = sa.func.max(sa.case((events.c.kind == "click", events.c.at), else_=None))
        after = -1
        while True:
            with self.store.read() as c:
                wallet_id = self.wallet_id(code, c)
                if wallet_id is None:
                    return
                grouped = (
                    sa.select(
                        events.c.delivery_id,
                        opens.label("opens"),
                        clicks.label("clicks"),
                        last_click.label("last_click"),
                    )
                    .select_from(events.join(campaigns, campaigns.c.id == events.c.campaign_id))
                    .where(
                        campaigns.c.wallet_id == wallet_id,
                        events.c.kind.in_(("open", "click")),
                        events.c.delivery_id.is_not(None),
                        events.c.delivery_id > after,
                        self._within(r),
                    )
                    .group_by(events.c.delivery_id)
                    .order_by(events.c.delivery_id)
                    .limit(PAGE)
                    .subquery()
                )
                rows = c.execute(
                    sa.select(
                        grouped,
                        deliveries.c.campaign_id,
                        deliveries.c.opened_at,
                        campaigns.c.name.label("campaign"),
                        *_MEMBER_COLUMNS[:-1],
                        sa.literal(None).label("added_at"),
                    )
                    .select_from(
                        grouped.join(deliveries, deliveries.c.id == grouped.c.delivery_id)
                        .join(campaigns, campaigns.c.id == deliveries.c.campaign_id)
                        .outerjoin(contacts, contacts.c.id == deliveries.c.contact_id)
                    )
                    .order_by(grouped.c.delivery_id)
                ).all()
            page = [
                Stat(
                    int(x.delivery_id),
                    int(x.campaign_id),
                    str(x.campaign),
                    int(x.opens or 0),
                    int(x.clicks or 0),
                    x.opened_at,
                    _aware(x.last_click),
                    _member({**x._mapping, "contact_id": x.contact_id or 0}),
                )
                for x in rows
            ]
            if page:
                yield page
            if len(rows) < PAGE:
                return
            after = page[-1].delivery_id

    def outcomes(self, code: str, r: Range) -> Iterator[list[Outcome]]:
        """What happened to each SMS (phone channel) of the list's messages in ``r``: one
        row per status event, in the log's order, a page at a time."""
        after = -1
        while True:
            with self.store.read() as c:
                wallet_id = self.wallet_id(code, c)
                if wallet_id is None:
                    return
                rows = c.execute(
                    sa.select(
                        events.c.id,
                        events.c.kind,
                        events.c.at,
                        events.c.detail,
                        events.c.delivery_id,
                        sa.func.coalesce(deliveries.c.address, events.c.address).label("address"),
                        campaigns.c.id.label("campaign_id"),
                        campaigns.c.name.label("campaign"),
                        campaigns.c.channel,
                        contacts.c.external_key,
                        contacts.c.name,
                    )
                    .select_from(
                        events.join(campaigns, campaigns.c.id == events.c.campaign_id)
                        .outerjoin(deliveries, deliveries.c.id == events.c.delivery_id)
                        .outerjoin(contacts, contacts.c.id == events.c.contact_id)
                    )
                    .where(
                        campaigns.c.wallet_id == wallet_id,
                        campaigns.c.address_kind == "phone",
                        events.c.kind.in_(OUTCOME_KINDS),
                        events.c.id > after,
                        self._within(r),
                    )
                    .order_by(events.c.id)
                    .limit(PAGE)
                ).all()
            page = [
                Outcome(
                    int(x.id),
                    x.at,
                    "read" if x.kind == "open" else str(x.kind),
                    _reason(x.detail or {}),
                    x.delivery_id,
                    x.address,
                    int(x.campaign_id),
                    str(x.campaign),
                    str(x.channel),
                    x.external_key,
                    x.name,
                )
                for x in rows
            ]
            if page:
                yield page
            if len(rows) < PAGE:
                return
            after = page[-1].event_id

    def subscribed(self, code: str) -> Iterator[list[Member]]:
        """The list's active members now, a page at a time: members (not taken out) with an
        address that is not suppressed."""
        email_ok = sa.and_(
            sa.func.coalesce(contacts.c.email, "") != "",
            ~sa.exists().where(
                suppressions.c.kind == "email",
                suppressions.c.address == sa.func.lower(sa.func.trim(contacts.c.email)),
            ),
        )
        phone_ok = sa.and_(
            sa.func.coalesce(contacts.c.phone, "") != "",
            ~sa.exists().where(
                suppressions.c.kind == "phone",
                suppressions.c.address == sa.func.trim(contacts.c.phone),
            ),
        )
        after = -1
        while True:
            with self.store.read() as c:
                wallet_id = self.wallet_id(code, c)
                if wallet_id is None:
                    return
                rows = c.execute(
                    sa.select(*_MEMBER_COLUMNS)
                    .select_from(
                        wallet_members.join(contacts, contacts.c.id == wallet_members.c.contact_id)
                    )
                    .where(
                        wallet_members.c.wallet_id == wallet_id,
                        wallet_members.c.removed_at.is_(None),
                        contacts.c.id > after,
                        sa.or_(email_ok, phone_ok),
                    )
                    .order_by(contacts.c.id)
                    .limit(PAGE)
                ).all()
            page = [_member(dict(x._mapping)) for x in rows]
            if page:
                yield page
            if len(rows) < PAGE:
                return
            after = page[-1].contact_id


def _aware(value: Any) -> datetime | None:
    """A time from an aggregate (``max``), which the column type does not convert."""
    if value is None:
        return None
    found: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return found if found.tzinfo is not None else found.replace(tzinfo=UTC)

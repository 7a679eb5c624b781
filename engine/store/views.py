"""Read models for the terminal UI: cheap queries (counters, indexes) for each screen.

Every refresh of a screen must stay well under 100 ms with 1,000 campaigns and a million
deliveries, so nothing here counts the rows of a big campaign: totals come from the
campaign's counters (kept by the transactions that change deliveries), per-batch progress
from index seeks (``EXISTS`` per batch) plus the counters, recipient tables are read a page
at a time by position (keyset pagination on the unique ``(campaign_id, position)`` index),
and rates from the ``(campaign_id | account, kind, at)`` indexes of the events, over a minute.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.base import Queries
from engine.store.dispatch import AccountState
from engine.store.files import Observation
from engine.store.schema import (
    COUNTERS,
    SETTLED_COUNTERS,
    accounts,
    campaigns,
    contacts,
    deliveries,
    events,
    links,
    remote_files,
    wallets,
)

#: delivery states that still need work, and every other one (settled)
OPEN_STATES = ("pending", "claimed")
SETTLED_STATES = (
    "sent",
    "delivered",
    "failed",
    "bounced",
    "suppressed",
    "skipped",
    "expired",
    "cancelled",
)
#: campaigns that still hold work on their account (D1)
ACTIVE = ("scheduled", "sending", "paused", "held")
#: what the campaign list can be sorted by (column name -> expression)
SORTS: dict[str, Any] = {
    "id": campaigns.c.id,
    "created": campaigns.c.created_at,
    "name": campaigns.c.name,
    "wallet": wallets.c.code,
    "channel": campaigns.c.channel,
    "sender": campaigns.c.account,
    "recipients": campaigns.c.recipients,
    "sent": campaigns.c.sent,
    "start": sa.func.coalesce(campaigns.c.started_at, campaigns.c.start_at),
    "end": sa.func.coalesce(campaigns.c.finished_at, campaigns.c.deadline),
    "status": campaigns.c.status,
    "priority": campaigns.c.priority,
}


@dataclass(frozen=True)
class CampaignRow:
    """A campaign as lists show it: no body or settings, just what a row needs."""

    id: int
    created_at: datetime
    name: str
    wallet: str | None
    channel: str
    account: str | None
    status: str
    status_reason: str | None
    priority: int
    recipients: int
    start_at: datetime
    started_at: datetime | None
    deadline: datetime | None
    finished_at: datetime | None
    batches: int
    released_batches: int
    pacing_kind: str | None
    pacing_interval_s: int | None
    paused_seconds: int
    paused_since: datetime | None
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def sent(self) -> int:
        return self.counters.get("sent", 0)

    @property
    def remaining(self) -> int:
        """Recipients not settled yet (as ``CampaignState.remaining``)."""
        return max(0, self.recipients - sum(self.counters.get(k, 0) for k in SETTLED_COUNTERS))


@dataclass(frozen=True)
class BatchFlags:
    """Whether a batch still has open deliveries, and whether it has settled ones."""

    index: int
    has_open: bool
    has_settled: bool


@dataclass(frozen=True)
class RecipientRow:
    """One recipient of a campaign (D17)."""

    id: int
    position: int
    batch: int
    code: str | None
    address: str
    status: str
    sent_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    error: str | None
    unsubscribed: str | None
    clicks: int = 0
    urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class QueueSnapshot:
    """Everything the Queues screen shows, read in one transaction."""

    accounts: dict[str, AccountState]
    campaigns: list[CampaignRow]
    #: deliveries claimed right now, per campaign
    in_flight: Counter[int]
    #: messages sent over the rate window, per account
    sent_recently: dict[str, int]


_ROW_COLUMNS = [
    campaigns.c.id,
    campaigns.c.created_at,
    campaigns.c.name,
    wallets.c.code.label("wallet"),
    campaigns.c.channel,
    campaigns.c.account,
    campaigns.c.status,
    campaigns.c.status_reason,
    campaigns.c.priority,
    campaigns.c.recipients,
    campaigns.c.start_at,
    campaigns.c.started_at,
    campaigns.c.deadline,
    campaigns.c.finished_at,
    campaigns.c.batches,
    campaigns.c.released_batches,
    campaigns.c.pacing_kind,
    campaigns.c.pacing_interval_s,
    campaigns.c.paused_seconds,
    campaigns.c.paused_since,
    *(campaigns.c[name] for name in COUNTERS),
]
_ACCOUNT_FIELDS = tuple(AccountState.__dataclass_fields__)
_OBSERVATION_FIELDS = tuple(Observation.__dataclass_fields__)
_FROM = campaigns.outerjoin(wallets, wallets.c.id == campaigns.c.wallet_id)


def _row(r: Any) -> CampaignRow:
    m = r._mapping
    return CampaignRow(
        id=m["id"],
        created_at=m["created_at"],
        name=m["name"],
        wallet=m["wallet"],
        channel=m["channel"],
        account=m["account"],
        status=m["status"],
        status_reason=m["status_reason"],
        priority=m["priority"],
        recipients=m["recipients"],
        start_at=m["start_at"],
        started_at=m["started_at"],
        deadline=m["deadline"],
        finished_at=m["finished_at"],
        batches=m["batches"],
        released_batches=m["released_batches"],
        pacing_kind=m["pacing_kind"],
        pacing_interval_s=m["pacing_interval_s"],
        paused_seconds=m["paused_seconds"],
        paused_since=m["paused_since"],
        counters={name: int(m[name] or 0) for name in COUNTERS},
    )


class Views(Queries):
    """Queries behind the TUI's screens; each refresh must stay well under 100 ms."""

    # -- campaigns ---------------------------------------------------------------------------

    def campaign_rows(
        self,
        *,
        text: str = "",
        status: str | None = None,
        sort: str = "id",
        descending: bool = True,
        limit: int = 1000,
        conn: Connection | None = None,
    ) -> tuple[list[CampaignRow], int]:
        """Campaigns for the list, sorted (``SORTS``) and filtered, at most ``limit``; with how
        many match in all. ``text`` matches the name, wallet, channel, sender account or
        status, or is the id."""
        order = SORTS.get(sort)
        if order is None:
            raise ValueError(f"cannot sort campaigns by {sort!r} (known: {', '.join(SORTS)})")
        where: list[Any] = []
        if status:
            where.append(campaigns.c.status == status)
        words = text.split()
        for word in words:
            like = f"%{word}%"
            matches: list[sa.ColumnElement[bool]] = [
                campaigns.c.name.ilike(like),
                wallets.c.code.ilike(like),
                campaigns.c.channel.ilike(like),
                campaigns.c.account.ilike(like),
                campaigns.c.status.ilike(like),
            ]
            if word.isdigit():
                matches.append(campaigns.c.id == int(word))
            where.append(sa.or_(*matches))
        query = (
            sa.select(*_ROW_COLUMNS)
            .select_from(_FROM)
            .where(*where)
            .order_by(
                order.desc() if descending else order.asc(),
                campaigns.c.id.desc() if descending else campaigns.c.id.asc(),
            )
            .limit(limit)
        )
        count = sa.select(sa.func.count()).select_from(_FROM).where(*where)
        with self._reading(conn) as c:
            rows = [_row(r) for r in c.execute(query)]
            total = len(rows) if len(rows) < limit else int(c.execute(count).scalar() or 0)
        return rows, total

    def campaign_row(
        self, campaign_id: int, *, conn: Connection | None = None
    ) -> CampaignRow | None:
        with self._reading(conn) as c:
            row = c.execute(
                sa.select(*_ROW_COLUMNS).select_from(_FROM).where(campaigns.c.id == campaign_id)
            ).first()
        return _row(row) if row else None

    # -- pacing (D5–D8) ----------------------------------------------------------------------

    def excluded_at_creation(self, campaign_id: int, *, conn: Connection | None = None) -> int:
        """Recipients suppressed or skipped when the campaign was created (batch 0): the
        batches were cut from the others (D5). Costs as many index entries as there are."""
        with self._reading(conn) as c:
            return int(
                c.execute(
                    sa.select(sa.func.count())
                    .select_from(deliveries)
                    .where(
                        deliveries.c.campaign_id == campaign_id,
                        deliveries.c.status.in_(("suppressed", "skipped")),
                        deliveries.c.batch == 0,
                    )
                ).scalar()
                or 0
            )

    def batch_flags(
        self, campaign_id: int, batches: int, *, conn: Connection | None = None
    ) -> list[BatchFlags]:
        """For each batch 1..``batches``: does it hold open deliveries, settled ones?

        Two ``EXISTS`` per batch, each a seek on ``(campaign_id, status, batch)``: a thousand
        batches cost ~4 ms whatever the campaign's size (counting a million rows, ~30 ms
        per 200,000 on SQLite, is what this avoids).
        """
        if batches <= 0:
            return []
        b = sa.select(sa.literal(1).label("k")).cte("b", recursive=True)
        b = b.union_all(sa.select((b.c.k + 1).label("k")).where(b.c.k < batches))
        has_open = sa.exists().where(
            deliveries.c.campaign_id == campaign_id,
            deliveries.c.status.in_(OPEN_STATES),
            deliveries.c.batch == b.c.k,
        )
        has_settled = sa.exists().where(
            deliveries.c.campaign_id == campaign_id,
            deliveries.c.status.in_(SETTLED_STATES),
            deliveries.c.batch == b.c.k,
        )
        query = sa.select(b.c.k, has_open, has_settled).order_by(b.c.k)
        with self._reading(conn) as c:
            return [BatchFlags(int(k), bool(o), bool(s)) for k, o, s in c.execute(query)]

    def count_in_batch(
        self,
        campaign_id: int,
        batch: int,
        *,
        open_: bool,
        cap: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Deliveries of one batch that are open (``open_``) or settled, counting at most
        ``cap`` index entries (the answer is then ``cap``: "at least that many")."""
        inner = sa.select(deliveries.c.id).where(
            deliveries.c.campaign_id == campaign_id,
            deliveries.c.status.in_(OPEN_STATES if open_ else SETTLED_STATES),
            deliveries.c.batch == batch,
        )
        if cap is not None:
            inner = inner.limit(cap)
        query = sa.select(sa.func.count()).select_from(inner.subquery())
        with self._reading(conn) as c:
            return int(c.execute(query).scalar() or 0)

    # -- rates -------------------------------------------------------------------------------

    def sends_in(
        self,
        windows: Sequence[tuple[datetime, datetime]],
        *,
        campaign_id: int | None = None,
        account: str | None = None,
        conn: Connection | None = None,
    ) -> list[int]:
        """Messages sent (``sent`` events) in each window [start, end) by one campaign or one
        account: one statement of scalar subqueries on the events' ``(campaign_id | account,
        kind, at)`` indexes, each reading only its window's entries."""
        if (campaign_id is None) == (account is None):
            raise ValueError("give a campaign_id or an account")
        if not windows:
            return []
        who = (
            events.c.campaign_id == campaign_id
            if campaign_id is not None
            else events.c.account == account
        )
        columns = [
            sa.select(sa.func.count())
            .select_from(events)
            .where(who, events.c.kind == "sent", events.c.at >= lo, events.c.at < hi)
            .scalar_subquery()
            .label(f"w{i}")
            for i, (lo, hi) in enumerate(windows)
        ]
        with self._reading(conn) as c:
            row = c.execute(sa.select(*columns)).one()
        return [int(v or 0) for v in row]

    # -- recipients (D17) --------------------------------------------------------------------

    def recipients_page(
        self,
        campaign_id: int,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 100,
        conn: Connection | None = None,
    ) -> list[RecipientRow]:
        """One page of a campaign's recipients in their stable order (D3): those after
        position ``after`` (or before ``before``, for the previous page), ``limit`` at most,
        with the clicks and clicked URLs of each (from the click events)."""
        d = deliveries
        query = (
            sa.select(
                d.c.id,
                d.c.position,
                d.c.batch,
                contacts.c.external_key,
                contacts.c.identity,
                d.c.address,
                d.c.status,
                d.c.sent_at,
                d.c.opened_at,
                d.c.clicked_at,
                d.c.error,
                d.c.unsubscribed,
            )
            .select_from(d.outerjoin(contacts, contacts.c.id == d.c.contact_id))
            .where(d.c.campaign_id == campaign_id)
            .limit(limit)
        )
        if before is not None:
            query = query.where(d.c.position < before).order_by(d.c.position.desc())
        else:
            if after is not None:
                query = query.where(d.c.position > after)
            query = query.order_by(d.c.position)
        with self._reading(conn) as c:
            rows = sorted(c.execute(query).all(), key=lambda r: r.position)
            clicks = self._clicks(c, campaign_id, [r.id for r in rows if r.clicked_at])
        out = []
        for r in rows:
            found = clicks.get(r.id, [])
            out.append(
                RecipientRow(
                    id=r.id,
                    position=r.position,
                    batch=r.batch,
                    code=r.external_key or r.identity,  # as the results files say
                    address=r.address,
                    status=r.status,
                    sent_at=r.sent_at,
                    opened_at=r.opened_at,
                    clicked_at=r.clicked_at,
                    error=r.error,
                    unsubscribed=r.unsubscribed,
                    clicks=len(found),
                    urls=tuple(dict.fromkeys(found)),
                )
            )
        return out

    def _clicks(self, c: Connection, campaign_id: int, ids: list[int]) -> dict[int, list[str]]:
        """Clicked URLs per delivery, in click order (a link template shows as written)."""
        if not ids:
            return {}
        urls = {
            int(p): str(u)
            for p, u in c.execute(
                sa.select(links.c.position, links.c.url).where(links.c.campaign_id == campaign_id)
            )
        }
        found: dict[int, list[str]] = defaultdict(list)
        for delivery_id, detail in c.execute(
            sa.select(events.c.delivery_id, events.c.detail)
            .where(events.c.delivery_id.in_(ids), events.c.kind == "click")
            .order_by(events.c.id)
        ):
            position = (detail or {}).get("link")
            url = urls.get(int(position)) if isinstance(position, int) else None
            found[int(delivery_id)].append(url or f"link {position}")
        return found

    # -- queues (D10, D11, D14–D16) ----------------------------------------------------------

    def queues(self, since: datetime, *, conn: Connection | None = None) -> QueueSnapshot:
        """Accounts with their guard state, the campaigns holding work on them, deliveries in
        flight per campaign (the lease index), and what each account sent since ``since``."""
        with self._reading(conn) as c:
            states = {
                r.name: AccountState(**{k: r._mapping[k] for k in _ACCOUNT_FIELDS})
                for r in c.execute(sa.select(accounts))
            }
            active = [
                _row(r)
                for r in c.execute(
                    sa.select(*_ROW_COLUMNS)
                    .select_from(_FROM)
                    .where(campaigns.c.status.in_(ACTIVE))
                    .order_by(campaigns.c.priority.desc(), campaigns.c.created_at, campaigns.c.id)
                )
            ]
            # Counted here, not with GROUP BY: grouping by campaign makes SQLite walk the
            # unique (campaign_id, position) index, a million entries (160 ms), where the
            # partial lease index holds only the deliveries in flight (0.3 ms).
            flying = Counter(
                int(cid)
                for (cid,) in c.execute(
                    sa.select(deliveries.c.campaign_id).where(
                        deliveries.c.lease_until.is_not(None),
                        deliveries.c.status == "claimed",
                    )
                )
            )
            names = sorted(set(states) | {r.account for r in active if r.account})
            sent = (
                {
                    str(a): int(n)
                    for a, n in c.execute(
                        sa.select(events.c.account, sa.func.count())
                        .where(
                            events.c.account.in_(names),
                            events.c.kind == "sent",
                            events.c.at >= since,
                        )
                        .group_by(events.c.account)
                    )
                }
                if names
                else {}
            )
        return QueueSnapshot(states, active, flying, sent)

    # -- sources (F6–F11) --------------------------------------------------------------------

    def files_seen(
        self, source: str, *, limit: int = 200, conn: Connection | None = None
    ) -> list[Observation]:
        """The files a source's listings showed, newest first (the ``(source, last_seen_at)``
        index: a source's history grows with every file ever dropped)."""
        query = (
            sa.select(remote_files)
            .where(remote_files.c.source == source)
            .order_by(remote_files.c.last_seen_at.desc(), remote_files.c.path)
            .limit(limit)
        )
        with self._reading(conn) as c:
            return [
                Observation(**{k: r._mapping[k] for k in _OBSERVATION_FIELDS})
                for r in c.execute(query)
            ]

    def file_counts(self, *, conn: Connection | None = None) -> dict[str, dict[str, int]]:
        """Listed files per source and status."""
        found: dict[str, dict[str, int]] = defaultdict(dict)
        with self._reading(conn) as c:
            for source, status, n in c.execute(
                sa.select(remote_files.c.source, remote_files.c.status, sa.func.count()).group_by(
                    remote_files.c.source, remote_files.c.status
                )
            ):
                found[str(source)][str(status)] = int(n)
        return dict(found)

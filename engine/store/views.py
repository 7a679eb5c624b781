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
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.campaign import ACTIVE, Campaign
from engine.reads import BATCH_COUNT_CAP as BATCH_COUNT_CAP
from engine.reads import campaign_from, open_by_batch
from engine.store.accounts import AccountState, account_state
from engine.store.base import Queries
from engine.store.campaigns import FROM, ROW_COLUMNS
from engine.store.files import Observation
from engine.store.schema import (
    accounts,
    campaigns,
    deliveries,
    events,
    remote_files,
    wallets,
)

if TYPE_CHECKING:
    from engine.store import Store

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
#: what the campaign list can be sorted by (column name -> expression)
SORTS: dict[str, Any] = {
    "id": campaigns.c.id,
    "created": campaigns.c.created_at,
    "name": campaigns.c.name,
    "origin": campaigns.c.origin,
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
class BatchFlags:
    """Whether a batch still has open deliveries, and whether it has settled ones."""

    index: int
    has_open: bool
    has_settled: bool


@dataclass(frozen=True)
class QueueSnapshot:
    """Everything the Queues screen shows, read in one transaction."""

    accounts: dict[str, AccountState]
    campaigns: list[Campaign]
    #: deliveries claimed right now, per campaign
    in_flight: Counter[int]
    #: messages sent over the rate window, per account
    sent_recently: dict[str, int]


_OBSERVATION_FIELDS = tuple(Observation.__dataclass_fields__)


def _driver_sql(query: sa.Select[Any], dialect: sa.Dialect) -> tuple[str, Any]:
    """``query`` as the driver's SQL, and how to bind its parameters (``_bind``): the order of
    their names when the driver takes them by position (SQLite's ``?``), and the values of
    those the statement fixes itself (SQLite's ``OFFSET 0``)."""
    compiled = query.compile(dialect=dialect)
    order = tuple(compiled.positiontup or ()) if dialect.positional else None
    return str(compiled), (order, compiled.params)


def _bind(params: dict[str, Any], how: Any) -> Any:
    """The parameters as ``_driver_sql``'s statement takes them."""
    order, fixed = how
    values = {**fixed, **params}
    return values if order is None else tuple(values[name] for name in order)


def batch_flags_select(campaign_id: Any, batches: Any) -> sa.Select[Any]:
    """(batch, has open deliveries, has settled ones) for batches 1..``batches`` (``>= 1``)."""
    b = sa.select(sa.literal(1).label("k")).cte("b", recursive=True)
    b = b.union_all(sa.select((b.c.k + 1).label("k")).where(b.c.k < batches))

    def any_in(states: Sequence[str]) -> sa.ColumnElement[bool]:
        # per state, the batch's first delivery by position, or none: a scalar subquery
        # ordered as the index is, so only the index answers it cheaply. ``EXISTS`` (it
        # drops ORDER BY and LIMIT) let PostgreSQL scan the table instead while the
        # table's pages were not all visible (a fresh import, a campaign being sent): ~0.1 s
        # to 0.3 s per batch, against ~0.05 ms
        return sa.or_(
            *(
                sa.select(deliveries.c.position)
                .where(
                    deliveries.c.campaign_id == campaign_id,
                    deliveries.c.status == state,
                    deliveries.c.batch == b.c.k,
                )
                .order_by(deliveries.c.position)
                .limit(1)
                .scalar_subquery()
                .is_not(None)
                for state in states
            )
        )

    return sa.select(b.c.k, any_in(OPEN_STATES), any_in(SETTLED_STATES)).order_by(b.c.k)


def count_in_batch_select(
    campaign_id: Any, batch: Any, *, open_: bool, cap: Any | None = None
) -> sa.Select[Any]:
    """How many deliveries of one batch are open (``open_``) or settled, counting at most
    ``cap`` index entries."""
    inner = sa.select(deliveries.c.id).where(
        deliveries.c.campaign_id == campaign_id,
        deliveries.c.status.in_(OPEN_STATES if open_ else SETTLED_STATES),
        deliveries.c.batch == batch,
    )
    if cap is not None:
        inner = inner.limit(cap)
    return sa.select(sa.func.count()).select_from(inner.subquery())


class Views(Queries):
    """Queries behind the TUI's screens; each refresh must stay well under 100 ms."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        #: the campaign list's last rows (a row, as read, to its ``Campaign``)
        self._campaign_cache: dict[tuple[Any, ...], Campaign] = {}
        self._reader: tuple[list[str], list[Any]] | None = None
        #: the campaign list's statements (rows, count) as the driver's SQL, per shape
        self._campaign_sql: dict[tuple[Any, ...], tuple[Any, Any]] = {}

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
    ) -> tuple[list[Campaign], int]:
        """Campaigns for the list, sorted (``SORTS``) and filtered, at most ``limit``; with how
        many match in all. ``text`` matches the name, wallet, channel, sender account or
        status, or is the id."""
        order = SORTS.get(sort)
        if order is None:
            raise ValueError(f"cannot sort campaigns by {sort!r} (known: {', '.join(SORTS)})")
        # named parameters: the statement depends only on the shape of the request (sort,
        # filters), so each shape is compiled once and each refresh only binds its values
        params: dict[str, Any] = {"limit": limit}
        where: list[Any] = []
        if status:
            params["status"] = status
            where.append(campaigns.c.status == sa.bindparam("status"))
        words = text.split()
        for i, word in enumerate(words):
            params[f"like{i}"] = f"%{word}%"
            like: sa.BindParameter[str] = sa.bindparam(f"like{i}")
            matches: list[sa.ColumnElement[bool]] = [
                campaigns.c.name.ilike(like),
                wallets.c.code.ilike(like),
                campaigns.c.channel.ilike(like),
                campaigns.c.account.ilike(like),
                campaigns.c.status.ilike(like),
            ]
            if word.isdigit():
                params[f"id{i}"] = int(word)
                matches.append(campaigns.c.id == sa.bindparam(f"id{i}"))
            where.append(sa.or_(*matches))
        shape = (sort, descending, bool(status), tuple(w.isdigit() for w in words))
        with self._reading(conn) as c:
            sql = self._campaign_sql.get(shape)
            if sql is None:
                query = (
                    sa.select(*ROW_COLUMNS)
                    .select_from(FROM)
                    .where(*where)
                    .order_by(
                        order.desc() if descending else order.asc(),
                        campaigns.c.id.desc() if descending else campaigns.c.id.asc(),
                    )
                    .limit(sa.bindparam("limit", type_=sa.Integer))
                )
                count = sa.select(sa.func.count()).select_from(FROM).where(*where)
                sql = self._campaign_sql[shape] = (
                    _driver_sql(query, c.dialect),
                    _driver_sql(count, c.dialect),
                )
            (rows_sql, rows_order), (count_sql, count_order) = sql
            # a refresh reads mostly the rows of the last one: those come from the cache, keyed
            # by the row as the driver returns it, so only a new or changed row pays for the
            # conversion of its values (its seven times, issue 16 goal 7)
            known, self._campaign_cache = self._campaign_cache, {}
            names, convert = self._row_reader(c.dialect)
            rows = []
            for raw in c.exec_driver_sql(rows_sql, _bind(params, rows_order)).all():
                key = tuple(raw)
                found = known.get(key)
                if found is None:
                    found = campaign_from(
                        {n: f(v) if f else v for n, f, v in zip(names, convert, key, strict=True)}
                    )
                self._campaign_cache[key] = found
                rows.append(found)
            total = len(rows)
            if total >= limit:
                total = int(c.exec_driver_sql(count_sql, _bind(params, count_order)).scalar() or 0)
        return rows, total

    def _row_reader(self, dialect: sa.Dialect) -> tuple[list[str], list[Any]]:
        """The names of ``ROW_COLUMNS`` and each one's conversion of a driver value (what
        SQLAlchemy applies to a result: None where there is none), once per store."""
        if self._reader is None:
            self._reader = (
                [c.name for c in ROW_COLUMNS],
                [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in ROW_COLUMNS],
            )
        return self._reader

    # -- pacing (D5–D8) ----------------------------------------------------------------------

    def open_by_batch(
        self, c: Campaign, *, cap: int = BATCH_COUNT_CAP, conn: Connection | None = None
    ) -> dict[int, int]:
        """Open (pending or claimed) deliveries of each batch of the campaign, cheaply.

        Two index seeks per batch (``batch_flags``): a batch with none open is done, one with
        nothing settled is whole. Only partly sent batches are counted, up to ``cap``; the
        one too big to count (the batch being sent) is what the campaign's counters leave.
        """
        with self._reading(conn) as conn_:
            return open_by_batch(
                c,
                lambda n: [
                    (f.index, f.has_open, f.has_settled)
                    for f in self.batch_flags(c.id, n, conn=conn_)
                ],
                lambda k, open_, cap_: self.count_in_batch(
                    c.id, k, open_=open_, cap=cap_, conn=conn_
                ),
                cap=cap,
            )

    def batch_flags(
        self, campaign_id: int, batches: int, *, conn: Connection | None = None
    ) -> list[BatchFlags]:
        """For each batch 1..``batches``: does it hold open deliveries, settled ones?

        Per batch and state, one seek on ``(campaign_id, status, batch, position)``: a
        thousand batches cost a few ms whatever the campaign's size (counting a million rows,
        ~30 ms per 200,000 on SQLite, is what this avoids).
        """
        if batches <= 0:
            return []
        query = batch_flags_select(campaign_id, batches)
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
        query = count_in_batch_select(campaign_id, batch, open_=open_, cap=cap)
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

    # -- queues (D10, D11, D14–D16) ----------------------------------------------------------

    def queues(self, since: datetime, *, conn: Connection | None = None) -> QueueSnapshot:
        """Accounts with their guard state, the campaigns holding work on them, deliveries in
        flight per campaign (the lease index), and what each account sent since ``since``."""
        with self._reading(conn) as c:
            states = {r.name: account_state(r._mapping) for r in c.execute(sa.select(accounts))}
            active = [
                campaign_from(r._mapping)
                for r in c.execute(
                    sa.select(*ROW_COLUMNS)
                    .select_from(FROM)
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

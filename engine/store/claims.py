"""Claims (D12): deliveries leased for sending, confirmed with their events, counters and
suppressions in one transaction; leases rescued after a crash and released on stop.

On SQLite a claim is a ``BEGIN IMMEDIATE`` transaction and ``UPDATE … RETURNING``; on
PostgreSQL the same statement whose inner select is ``FOR UPDATE SKIP LOCKED``, so engine
nodes never take the same delivery.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.addresses import suppression_key
from engine.store.base import Queries
from engine.store.delivery_errors import ERROR_OUTCOMES, Counted
from engine.store.schema import (
    EVENT_COLUMNS,
    UTCDateTime,
    contacts,
    deliveries,
    events,
    suppressions,
)


class Claimed(NamedTuple):
    """A delivery claimed for sending, with what personalises it (a named tuple: a chunk
    makes dozens at a time, and a frozen dataclass's ``__init__`` costs three times as much)."""

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


class Outcome(NamedTuple):
    """What happened to one claimed delivery (a named tuple: one per message sent, and a
    frozen dataclass's ``__init__`` costs three times as much).

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
    #: for an error: ``account`` when the channel or provider failed (systemic), else
    #: ``delivery``; and the reason it is counted under, when not ``error``
    scope: str = "delivery"
    cause: str | None = None


#: a claim: the ready deliveries of campaign ``:c`` leased to ``:owner`` until ``:until``, in
#: batch and file order; the only text put into this SQL is the PostgreSQL clause, never a value
_CLAIM = (
    "UPDATE deliveries SET status = 'claimed', lease_owner = :owner, lease_until = :until "
    "WHERE id IN (SELECT id FROM deliveries WHERE campaign_id = :c "
    "AND status = 'pending' AND batch BETWEEN 1 AND :released "
    "AND (next_attempt_at IS NULL OR next_attempt_at <= :now) "
    "ORDER BY batch, position LIMIT :limit{skip}) "
    "RETURNING id, contact_id, address, batch, attempts, first_attempt_at, payload"
)


def _claim_statement(dialect: str) -> sa.TextClause:
    skip = " FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else ""
    return sa.text(_CLAIM.format(skip=skip)).bindparams(
        sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("until", type_=UTCDateTime())
    )


def _batch_and_id(row: tuple[Any, ...]) -> tuple[Any, Any]:
    return row[3], row[0]


class Claims(Queries):
    """The dispatcher's claims on deliveries, and what came of them."""

    def claim(
        self, campaign_id: int, *, owner: str, released: int, limit: int, lease: timedelta
    ) -> list[Claimed]:
        """Lease up to ``limit`` ready deliveries of a campaign, in batch and file order."""
        now = self.store.clock.now()
        # not synced: a claim lost at a power cut goes with the sends' confirmation, which a
        # synced commit records after it (the deliveries are sent again, as after a crash)
        with self.store.write(synced=False) as c:
            driver = _driver(c.dialect)
            rows = driver.claim(
                c,
                {
                    "owner": owner,
                    "until": driver.time(now + lease),
                    "c": campaign_id,
                    "released": released,
                    "now": driver.time(now),
                    "limit": limit,
                },
            )
            if not rows:
                return []
            ids = [r[1] for r in rows if r[1] is not None]
            people = driver.people(c, ids) if ids else {}
        claimed = []
        rows.sort(key=_batch_and_id)
        nobody = (None, None, None, None, None, None, None)
        for id_, contact_id, address, batch, attempts, first, payload in rows:
            p = people.get(contact_id, nobody)
            if isinstance(payload, str):
                payload = json.loads(payload)
            claimed.append(
                Claimed(
                    id_,
                    campaign_id,
                    contact_id,
                    address,
                    batch,
                    attempts,
                    first,
                    payload,
                    p[1],
                    p[2],
                    p[3],
                    p[4],
                    p[5] or {},
                    p[6],
                )
            )
        return claimed

    def suppressed(self, kind: str, addresses: Sequence[str]) -> set[str]:
        """Which of these (normalised) addresses are suppressed (D4)."""
        if not addresses:
            return set()
        with self.store.read() as c:
            return _driver(c.dialect).suppressed(c, kind, addresses)

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
            driver = _driver(c.dialect)
            held = driver.held(c, [o.delivery_id for o in outcomes], owner)
            at = driver.time(now)  # the time as the driver takes it, converted once
            ev: list[tuple[Any, ...]] = []
            for kind, items in by_kind.items():
                mine = [o for o in items if o.delivery_id in held]
                if not mine:
                    continue
                done[kind] += len(mine)
                sql, names = driver.outcome(kind)
                c.exec_driver_sql(
                    sql,
                    [
                        tuple(
                            at
                            if n == "now"
                            else driver.time(o.next_attempt_at)
                            if n == "next"
                            else getattr(o, _OUTCOME_FIELDS[n])
                            for n in names
                        )
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
                            (
                                at,
                                kind,
                                campaign_id,
                                o.delivery_id,
                                o.contact_id,
                                account,
                                o.address,
                                "engine",
                                driver.detail(detail),
                            )
                        )
                if kind == "sent":
                    ids = [o.contact_id for o in mine if o.contact_id is not None]
                    if ids:
                        driver.touch(c, ids, now)
                for o in mine:
                    if o.suppress and o.address:
                        self._suppress(c, o, campaign_id, now)
            if ev:
                c.exec_driver_sql(driver.events, ev)
            if account is not None:
                self.store.errors.add(
                    campaign_id,
                    account,
                    (
                        Counted(o.kind, o.cause or o.error or "unknown", o.scope)
                        for o in outcomes
                        if o.kind in ERROR_OUTCOMES and o.delivery_id in held
                    ),
                    conn=c,
                )
            counts = [(_COUNTER_OF[k], n) for k, n in done.items() if k in _COUNTER_OF]
            if counts:
                driver.count(c, campaign_id, at, counts)
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
            contact_id=o.contact_id,
        )

    def rescue_leases(self, *, owner: str | None = None, keep: Collection[int] = ()) -> int:
        """Claims whose lease ran out go back to pending (at least once, D12): their engine
        stopped without a heartbeat row to rescue it by (see ``Engines.rescue``), or the
        engine asking (``owner``) claimed them without getting the answer. Never the
        deliveries ``owner`` has in flight (``keep``)."""
        now = self.store.clock.now()
        with self.store.write() as c:
            found = [
                (r.id, r.lease_owner)
                for r in c.execute(
                    sa.select(deliveries.c.id, deliveries.c.lease_owner).where(
                        deliveries.c.lease_until.is_not(None),  # the partial index
                        deliveries.c.lease_until < now,
                        deliveries.c.status == "claimed",
                    )
                )
            ]
            ids = [i for i, who in found if not (who == owner and i in keep)]
            done = 0
            for start in range(0, len(ids), 500):
                done += c.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.id.in_(ids[start : start + 500]),
                        deliveries.c.status == "claimed",
                        deliveries.c.lease_until < now,
                    )
                    .values(status="pending", lease_owner=None, lease_until=None)
                ).rowcount
            return int(done or 0)

    def claimed_by(self, *, conn: Connection | None = None) -> dict[str, int]:
        """Claimed deliveries per engine (lease owner)."""
        with self._reading(conn) as c:
            return {
                str(owner): int(n)
                for owner, n in c.execute(
                    sa.select(deliveries.c.lease_owner, sa.func.count())
                    .where(
                        deliveries.c.lease_until.is_not(None),
                        deliveries.c.status == "claimed",
                    )
                    .group_by(deliveries.c.lease_owner)
                )
                if owner is not None
            }


#: the outcome's attribute behind each parameter of an outcome's UPDATE at the driver
_OUTCOME_FIELDS = {
    "error": "error",
    "provider": "provider_id",
    "message": "message_id",
    "id": "delivery_id",
}
_EVENT_COLUMNS = EVENT_COLUMNS


class _Driver:
    """A confirmation's statements at the driver, for one dialect: an executemany per kind
    of outcome and one for the events, with no SQLAlchemy work per row (a chunk's confirmation
    took a sixth of the sender's CPU through Core). Times and JSON are converted by the
    columns' own bind processors, so the rows are stored exactly as Core stores them."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.mark = "?" if dialect.paramstyle == "qmark" else "%s"
        when = deliveries.c.finished_at.type.dialect_impl(dialect).bind_processor(dialect)
        detail = events.c.detail.type.dialect_impl(dialect).bind_processor(dialect)
        self._when = when
        self._detail = detail
        marks = ", ".join([self.mark] * len(_EVENT_COLUMNS))
        self.events = f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({marks})"
        self._outcomes: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._counts: dict[tuple[str, ...], str] = {}
        self.dialect = dialect
        # a claim's contacts, a chunk's suppressions, which outcomes are still held and the
        # contacts' last interaction: compiled from their SQLAlchemy statements once per count
        # of ids (a chunk's size, mostly); contacts read back through the columns' processors
        self._compiled: dict[
            tuple[str, int], tuple[str, tuple[str, ...] | None, dict[str, Any]]
        ] = {}
        self._people_out = [
            (k, f)
            for k, f in enumerate(
                c.type.dialect_impl(dialect).result_processor(dialect, None) for c in _PEOPLE
            )
            if f is not None
        ]
        self._claimed_out = tuple(
            t.dialect_impl(dialect).result_processor(dialect, None)
            for t in (UTCDateTime(), deliveries.c.payload.type)
        )

    def _run(
        self,
        c: Connection,
        name: str,
        statement: Callable[[], sa.Select[Any] | sa.Update | sa.TextClause],
        n: int,
        values: dict[str, Any],
    ) -> Any:
        """Run ``statement`` (with ``n`` values in its IN list) as driver SQL, compiled once
        per ``(name, n)``: parameters by position when the driver binds them so."""
        key = (name, n)
        found = self._compiled.get(key)
        if found is None:
            compiled = statement().compile(dialect=self.dialect)
            order = tuple(compiled.positiontup or ()) if self.dialect.positional else None
            # the values the statement fixes itself (``status = 'claimed'``)
            fixed = {k: v for k, v in compiled.params.items() if v is not None}
            found = self._compiled[key] = (str(compiled), order, fixed)
        sql, order, fixed = found
        values.update(fixed)
        return c.exec_driver_sql(sql, tuple(values[k] for k in order) if order else values)

    def claim(self, c: Connection, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The claim's UPDATE … RETURNING (``_CLAIM``; ``now`` and ``until`` converted with
        ``time``): its rows as tuples, the first attempt's time and the payload read back
        through the columns' processors."""
        name = self.dialect.name
        read_first, read_payload = self._claimed_out
        rows = []
        for r in self._run(c, "claim", lambda: _claim_statement(name), 0, values).fetchall():
            id_, contact_id, address, batch, attempts, first, payload = r
            if read_first is not None and first is not None:
                first = read_first(first)
            if read_payload is not None and payload is not None:
                payload = read_payload(payload)
            rows.append((id_, contact_id, address, batch, attempts, first, payload))
        return rows

    def people(self, c: Connection, ids: Sequence[int]) -> dict[int, tuple[Any, ...]]:
        """The claimed deliveries' contacts by id: the columns of ``_PEOPLE``, in order."""
        n = len(ids)
        values = {f"i{k}": v for k, v in enumerate(ids)}
        out = self._people_out
        found: dict[int, tuple[Any, ...]] = {}
        for row in self._run(c, "people", lambda: _people_select(n), n, values).fetchall():
            person = list(row)
            for k, f in out:
                if person[k] is not None:
                    person[k] = f(person[k])
            found[person[0]] = tuple(person)
        return found

    def held(self, c: Connection, ids: Sequence[int], owner: str) -> set[int]:
        """Which of these deliveries ``owner`` still holds (claimed)."""
        n = len(ids)
        values: dict[str, Any] = {f"i{k}": v for k, v in enumerate(ids)}
        values["owner"] = owner
        return {r[0] for r in self._run(c, "held", lambda: _held_select(n), n, values)}

    def touch(self, c: Connection, ids: Sequence[int], now: datetime) -> None:
        """The contacts' last interaction is now (they were sent a message)."""
        n = len(ids)
        values: dict[str, Any] = {f"i{k}": v for k, v in enumerate(ids)}
        values["now"] = self.time(now)
        self._run(c, "touch", lambda: _touch_update(n), n, values)

    def suppressed(self, c: Connection, kind: str, addresses: Sequence[str]) -> set[str]:
        """Which of these (normalised) addresses are suppressed (D4)."""
        n = len(addresses)
        values = {f"a{k}": v for k, v in enumerate(addresses)}
        values["kind"] = kind
        rows = self._run(c, "suppressed", lambda: _suppressed_select(n), n, values)
        return {r[0] for r in rows}

    def next_claimable(
        self, c: Connection, campaign_id: int, released: int, now: datetime
    ) -> int | None:
        """``Campaigns.next_claimable``'s query at the driver."""
        from engine.store.campaigns import next_claimable_select

        values: dict[str, Any] = {"c": campaign_id, "released": released, "now": self.time(now)}
        row = self._run(c, "next_claimable", next_claimable_select, 0, values).first()
        return row[0] if row is not None else None

    def count(
        self, c: Connection, campaign_id: int, at: Any, counts: Sequence[tuple[str, int]]
    ) -> None:
        """Add ``counts`` (counter column, how many: names from ``_COUNTER_OF`` only, never a
        caller's text) to the campaign's counters; ``at`` is its ``updated_at`` (``time``)."""
        names = tuple(name for name, _ in counts)
        sql = self._counts.get(names)
        if sql is None:
            if not set(names) <= set(_COUNTER_OF.values()):
                raise ValueError(f"unknown counters {names!r}")
            sets = "".join(f", {name} = {name} + {self.mark}" for name in names)
            sql = self._counts[names] = (
                f"UPDATE campaigns SET updated_at = {self.mark}{sets} WHERE id = {self.mark}"
            )
        c.exec_driver_sql(sql, (at, *(n for _, n in counts), campaign_id))

    def time(self, value: datetime | None) -> Any:
        return self._when(value) if self._when is not None and value is not None else value

    def detail(self, value: dict[str, Any]) -> Any:
        return self._detail(value) if self._detail is not None else value

    def outcome(self, kind: str) -> tuple[str, tuple[str, ...]]:
        """The UPDATE recording ``kind`` (one of ``_KINDS``: never a caller's text) and
        its parameters' names, in order."""
        found = self._outcomes.get(kind)
        if found is None:
            found = self._outcomes[kind] = _outcome_sql(kind, self.mark)
        return found


#: a claim's contacts: the columns ``_Driver.people`` reads
_PEOPLE = (
    contacts.c.id,
    contacts.c.name,
    contacts.c.email,
    contacts.c.phone,
    contacts.c.external_key,
    contacts.c.fields,
    contacts.c.last_interaction_at,
)


def _people_select(n: int) -> sa.Select[Any]:
    return sa.select(*_PEOPLE).where(contacts.c.id.in_(_ids(n, contacts.c.id)))


def _ids(n: int, column: sa.Column[Any] = deliveries.c.id) -> list[sa.BindParameter[Any]]:
    """``n`` parameters ``i0``… of ``column``'s type, for an IN list of ids."""
    return [sa.bindparam(f"i{k}", type_=column.type) for k in range(n)]


def _held_select(n: int) -> sa.Select[Any]:
    return sa.select(deliveries.c.id).where(
        deliveries.c.id.in_(_ids(n)),
        deliveries.c.status == "claimed",
        deliveries.c.lease_owner == sa.bindparam("owner", type_=deliveries.c.lease_owner.type),
    )


def _touch_update(n: int) -> sa.Update:
    # run at the driver: the time is bound as the column's processor made it (``_Driver.time``)
    return (
        sa.update(contacts)
        .where(contacts.c.id.in_(_ids(n)))
        .values(last_interaction_at=sa.bindparam("now", type_=contacts.c.last_interaction_at.type))
    )


def _suppressed_select(n: int) -> sa.Select[Any]:
    return sa.select(suppressions.c.address).where(
        suppressions.c.kind == sa.bindparam("kind", type_=suppressions.c.kind.type),
        suppressions.c.address.in_(
            [sa.bindparam(f"a{k}", type_=suppressions.c.address.type) for k in range(n)]
        ),
    )


def _outcome_sql(kind: str, mark: str) -> tuple[str, tuple[str, ...]]:
    """The UPDATE recording one kind of outcome, as driver SQL: (the SQL, its parameters'
    names). A release puts the delivery back to pending untouched; a retry counts the attempt
    and sets when it is tried again; any other outcome is final."""
    if kind not in _KINDS:
        raise ValueError(f"unknown outcome {kind!r}")
    sets = ["lease_owner = NULL", "lease_until = NULL"]
    names: list[str] = []
    if kind == "release":
        sets.append("status = 'pending'")
    elif kind == "retry":
        sets += [
            "status = 'pending'",
            "attempts = attempts + 1",
            f"first_attempt_at = COALESCE(first_attempt_at, {mark})",
            f"next_attempt_at = {mark}",
            f"error = {mark}",
        ]
        names += ["now", "next", "error"]
    else:
        sets += [f"status = '{kind}'", f"finished_at = {mark}", f"error = {mark}"]
        sets.append("next_attempt_at = NULL")
        names += ["now", "error"]
        if kind in ("sent", "failed", "bounced"):
            sets += [
                "attempts = attempts + 1",
                f"first_attempt_at = COALESCE(first_attempt_at, {mark})",
            ]
            names.append("now")
        if kind == "sent":
            sets += [f"sent_at = {mark}", f"provider_id = {mark}", f"message_id = {mark}"]
            names += ["now", "provider", "message"]
    return f"UPDATE deliveries SET {', '.join(sets)} WHERE id = {mark}", (*names, "id")


_DRIVERS: dict[str, _Driver] = {}


def _driver(dialect: sa.Dialect) -> _Driver:
    found = _DRIVERS.get(dialect.name)
    if found is None:
        found = _DRIVERS[dialect.name] = _Driver(dialect)
    return found


#: the kinds of outcome a confirmation records
_KINDS = frozenset(
    (
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
)

_COUNTER_OF = {
    "sent": "sent",
    "failed": "failed",
    "bounced": "bounced",
    "suppressed": "suppressed",
    "skipped": "skipped",
    "expired": "expired",
    "cancelled": "cancelled",
}

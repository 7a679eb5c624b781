"""Feedback: what comes back after sending (D4, D14, D17–D19).

Opens, clicks and unsubscribes from the tracking endpoint, Twilio's status callbacks and
inbound messages, bounces and complaints from the bounce mailbox and from Amazon SES all
arrive here as ``Signal``s and are applied in batches, one transaction per batch: the event
is stored, the delivery's feedback columns and the campaign's counters change, the
suppression list grows. A signal with a ``dedupe_key`` (a provider's idempotency token, a
report's id) is applied once, however often it is delivered.

Rules kept here:

- a delivery's status stays its send outcome; a later hard bounce (a DSN, Twilio's
  ``undelivered`` with an invalid-number code) moves ``sent`` to ``bounced``, a later
  failure of another kind to ``failed``, shifting the campaign's counters so that
  ``remaining`` stays right. The ``sent`` event stays in the log, so the guard's window
  (D14) counts the message as sent and the bounce as a bounce;
- the provider status never regresses: statuses that arrive out of order are recorded as
  events but change nothing, and the first final status (delivered, undelivered, failed)
  wins, except that ``read`` may follow ``delivered``;
- a click counts as an open when no open was seen (images are often blocked);
- ``opened``, ``clicked``, ``unsubscribed`` and ``complaints`` count recipients (the first
  time), ``clicks`` counts every click;
- unsubscribing from "all future campaigns" adds a suppression; from "this campaign" it
  cancels what of the campaign was not sent to the recipient yet (D19);
- clicks and inbound replies are interactions for ``_x`` (D4); opens are not (mail
  clients fetch images by themselves).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Dialect
from sqlalchemy.exc import IntegrityError

from engine.addresses import normalise_email, normalise_phone, suppression_key
from engine.campaign import SETTLED_COUNTERS
from engine.events import Signal
from engine.rates import Rates
from engine.store.base import Queries
from engine.store.schema import (
    EVENT_COLUMNS,
    UTCDateTime,
    accounts,
    campaigns,
    contacts,
    deliveries,
    events,
    links,
    mailboxes,
    suppressions,
)

#: what a signal can be
KINDS = (
    "open",
    "click",
    "unsubscribe",
    "status",
    "delivered",
    "bounce",
    "complaint",
    "deferred",
    "reply",
)

#: Twilio's message statuses in the order they happen; the final ones share a rank
STATUS_RANK = {
    "scheduled": 0,
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "undelivered": 4,
    "failed": 4,
    "canceled": 4,
    "delivered": 4,
    "read": 5,
}
FINAL = frozenset({"undelivered", "failed", "canceled", "delivered"})


@dataclass(frozen=True)
class Stored:
    """An event this batch stored (for the observer hooks and the metrics)."""

    kind: str
    at: datetime
    campaign_id: int | None
    delivery_id: int | None
    channel: str | None
    account: str | None
    address: str | None
    detail: Mapping[str, Any]


@dataclass
class Applied:
    """What became of one signal: ``duplicate`` when its dedupe key was seen before;
    ``unknown`` when it names no delivery we have; ``events`` stored."""

    duplicate: bool = False
    unknown: bool = False
    events: list[Stored] = field(default_factory=list)


@dataclass
class _Delivery:
    id: int
    campaign_id: int
    contact_id: int | None
    address: str
    status: str
    provider_status: str | None
    #: the times as the driver reads them (text on SQLite): only whether they are set counts
    opened_at: object | None
    clicked_at: object | None
    complained_at: object | None
    delivered_at: object | None
    unsubscribed: str | None
    channel: str
    account: str | None
    #: the contact address the campaign's channel sends to (email | phone)
    address_kind: str


@dataclass
class _Batch:
    """Changes of one transaction, gathered per table."""

    #: rows of the events table, in the order of ``_EVENT_COLUMNS``
    events: list[tuple[Any, ...]] = field(default_factory=list)
    counters: defaultdict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    deliveries: dict[int, dict[str, Any]] = field(default_factory=dict)
    interactions: dict[int, datetime] = field(default_factory=dict)  # contact → at
    phone_interactions: dict[str, datetime] = field(default_factory=dict)
    #: deliveries with a hard bounce stored (before or in this batch): one bounce each
    bounced: set[int] = field(default_factory=set)

    def change(self, d: _Delivery, **values: Any) -> None:
        self.deliveries.setdefault(d.id, {}).update(values)
        for key, value in values.items():
            setattr(d, key, value)

    def count(self, d: _Delivery, name: str, n: int = 1) -> None:
        self.counters[d.campaign_id][name] += n


@dataclass(frozen=True)
class AccountGauge:
    queued: int = 0
    in_flight: int = 0
    paused: bool = False
    #: the counts of the guard's last check (D14)
    rates: Rates = field(default_factory=lambda: Rates(0, 0, 0))


@dataclass(frozen=True)
class Gauges:
    """What ``/metrics`` reports from the store."""

    accounts: dict[str, AccountGauge]
    campaigns: dict[str, int]
    mailboxes: dict[str, tuple[int, int]]  # name → (handled, unparsed)


#: campaigns whose recipients are still waiting
ACTIVE = ("scheduled", "sending", "paused", "held")


class Feedback(Queries):
    """Applies signals; registers the links of a campaign; reads what the tracking endpoint
    needs."""

    # -- links ------------------------------------------------------------------------

    def register_links(self, campaign_id: int, urls: Sequence[str]) -> None:
        """Record the campaign's tracked links by position (1-based), before any is sent.

        Idempotent: a position already recorded keeps its URL (the body does not change).
        """
        if not urls:
            return
        with self.store.write() as c:
            known = {
                r.position
                for r in c.execute(
                    sa.select(links.c.position).where(links.c.campaign_id == campaign_id)
                )
            }
            rows = [
                {"campaign_id": campaign_id, "position": i, "url": url}
                for i, url in enumerate(urls, start=1)
                if i not in known
            ]
            if rows:
                c.execute(sa.insert(links), rows)

    def links_of(self, campaign_id: int) -> dict[int, str]:
        """The campaign's tracked links: position → URL (a template when it has ``{{``)."""
        with self.store.read() as c:
            return {
                r.position: r.url
                for r in c.execute(
                    sa.select(links.c.position, links.c.url).where(
                        links.c.campaign_id == campaign_id
                    )
                )
            }

    def recipient(self, delivery_id: int) -> tuple[int, Mapping[str, Any]] | None:
        """(campaign id, the contact's variables source) of a delivery: for links whose URL
        is a template (``https://loja/{{ cpf }}``), rendered per recipient at click time."""
        with self.store.read() as c:
            row = c.execute(
                sa.select(
                    deliveries.c.campaign_id,
                    deliveries.c.address,
                    contacts.c.name,
                    contacts.c.email,
                    contacts.c.phone,
                    contacts.c.external_key,
                    contacts.c.fields,
                )
                .select_from(
                    deliveries.outerjoin(contacts, contacts.c.id == deliveries.c.contact_id)
                )
                .where(deliveries.c.id == delivery_id)
            ).first()
        if row is None:
            return None
        m = row._mapping
        return int(m["campaign_id"]), {
            "name": m["name"],
            "email": m["email"],
            "phone": m["phone"],
            "external_key": m["external_key"],
            "fields": m["fields"] or {},
        }

    def delivery_by_provider_id(self, provider_id: str) -> int | None:
        """The delivery a provider's message id (Twilio's MessageSid) belongs to."""
        with self.store.read() as c:
            found = c.execute(
                sa.select(deliveries.c.id).where(deliveries.c.provider_id == provider_id)
            ).first()
        return int(found[0]) if found else None

    def exists(self, delivery_id: int) -> bool:
        with self.store.read() as c:
            return (
                c.execute(sa.select(deliveries.c.id).where(deliveries.c.id == delivery_id)).first()
                is not None
            )

    def gauges(self) -> Gauges:
        """Queue depth and in-flight per account, guard state, campaigns by status, mailbox
        counts: grouped queries over campaigns (their counters) and the lease index."""
        settled = sum(
            (getattr(campaigns.c, k) for k in SETTLED_COUNTERS),
            sa.literal(0),
        )
        with self.store.read() as c:
            queued = {
                str(a): int(n or 0)
                for a, n in c.execute(
                    sa.select(campaigns.c.account, sa.func.sum(campaigns.c.recipients - settled))
                    .where(campaigns.c.status.in_(ACTIVE), campaigns.c.account.is_not(None))
                    .group_by(campaigns.c.account)
                )
            }
            by_status = {
                str(st): int(n)
                for st, n in c.execute(
                    sa.select(campaigns.c.status, sa.func.count()).group_by(campaigns.c.status)
                )
            }
            guard = list(
                c.execute(
                    sa.select(
                        accounts.c.name,
                        accounts.c.guard_state,
                        accounts.c.sent_24h,
                        accounts.c.bounces_24h,
                        accounts.c.complaints_24h,
                    )
                )
            )
            boxes = {
                str(r.name): (int(r.handled), int(r.unparsed))
                for r in c.execute(
                    sa.select(mailboxes.c.name, mailboxes.c.handled, mailboxes.c.unparsed)
                )
            }
        flying = self.store.campaigns.in_flight()
        found: dict[str, AccountGauge] = {}
        for name, state, sent, bounces, complaints in guard:
            found[str(name)] = AccountGauge(
                queued=queued.get(str(name), 0),
                in_flight=flying.get(str(name), 0),
                paused=state == "paused",
                rates=Rates(int(sent or 0), int(bounces or 0), int(complaints or 0)),
            )
        for name, n in queued.items():
            found.setdefault(name, AccountGauge(queued=n, in_flight=flying.get(name, 0)))
        return Gauges(found, by_status, boxes)

    # -- applying signals ----------------------------------------------------------------

    def apply(self, signals: Sequence[Signal]) -> list[Applied]:
        """Apply signals in one transaction; one ``Applied`` per signal, in order.

        When two engines race on the same dedupe key (PostgreSQL), the batch is retried one
        signal per transaction so that only the duplicate is dropped.
        """
        if not signals:
            return []
        try:
            with self.store.write() as c:
                return self._apply(c, signals)
        except IntegrityError:
            if len(signals) == 1:
                return [Applied(duplicate=True)]
            out: list[Applied] = []
            for one in signals:
                out.extend(self.apply([one]))
            return out

    def _apply(self, c: Connection, signals: Sequence[Signal]) -> list[Applied]:
        keys = [s.dedupe_key for s in signals if s.dedupe_key]
        seen: set[str] = set()
        if keys:
            seen = {
                r[0]
                for r in c.execute(
                    sa.select(events.c.dedupe_key).where(events.c.dedupe_key.in_(keys))
                )
            }
        ids = {s.delivery_id for s in signals if s.delivery_id is not None}
        found = self._deliveries(c, ids)
        batch = _Batch()
        if ids:
            among, param = _among(c.dialect, "delivery_id", ids)
            batch.bounced = {
                int(r[0])
                for r in c.exec_driver_sql(
                    f"SELECT DISTINCT delivery_id FROM events WHERE {among} "  # noqa: S608
                    "AND kind = 'bounced'",
                    (param,),
                )
            }
        results: list[Applied] = []
        handlers: dict[str, Any] = {}  # by kind, looked up once a batch
        for s in signals:
            result = Applied()
            results.append(result)
            if s.dedupe_key:
                if s.dedupe_key in seen:
                    result.duplicate = True
                    continue
                seen.add(s.dedupe_key)
            if s.kind == "reply":
                self._reply(c, s, batch, result)
                continue
            d = found.get(s.delivery_id) if s.delivery_id is not None else None
            if d is None:
                result.unknown = True
                continue
            handler = handlers.get(s.kind)
            if handler is None:
                handler = handlers[s.kind] = getattr(self, f"_on_{s.kind}", None)
                if handler is None:
                    raise ValueError(f"unknown signal kind {s.kind!r}")
            handler(c, s, d, batch, result)
        self._flush(c, batch)
        return results

    def _deliveries(self, c: Connection, ids: set[int]) -> dict[int, _Delivery]:
        if not ids:
            return {}
        # at the driver, one parameter for all the ids (no IN list of thousands to compile),
        # the columns in _Delivery's order, read raw (the times only tell whether they are set)
        among, param = _among(c.dialect, "d.id", ids)
        sql = f"{_SELECT_DELIVERIES} WHERE {among}"
        rows = c.exec_driver_sql(sql, (param,)).all()  # one fetchall, not a fetch per row
        return {int(r[0]): _Delivery(*r) for r in rows}

    def _event(
        self,
        batch: _Batch,
        result: Applied,
        s: Signal,
        kind: str,
        d: _Delivery | None,
        detail: Mapping[str, Any] | None = None,
        *,
        key: bool = True,
        address: str | None = None,
        campaign_id: int | None = None,
        contact_id: int | None = None,
        channel: str | None = None,
        account: str | None = None,
    ) -> None:
        """Store one event; the signal's dedupe key goes on its first event only."""
        info = dict(detail if detail is not None else s.detail)
        stored = Stored(
            kind,
            s.at,
            d.campaign_id if d else campaign_id,
            d.id if d else None,
            d.channel if d else channel,
            d.account if d else account,
            d.address if d else address,
            info,
        )
        batch.events.append(  # in the order of _EVENT_COLUMNS
            (
                s.at,
                kind,
                stored.campaign_id,
                stored.delivery_id,
                d.contact_id if d else contact_id,
                stored.account,
                stored.address,
                s.origin,
                info,
                s.dedupe_key if key and not result.events else None,
            )
        )
        result.events.append(stored)

    def _on_open(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        self._event(batch, result, s, "open", d)
        self._opened(d, s.at, batch)

    def _opened(self, d: _Delivery, at: datetime, batch: _Batch) -> None:
        if d.opened_at is None:  # batch.change and batch.count, inlined (once per open)
            d.opened_at = at
            found = batch.deliveries.get(d.id)
            if found is None:
                batch.deliveries[d.id] = {"opened_at": at}
            else:
                found["opened_at"] = at
            batch.counters[d.campaign_id]["opened"] += 1

    def _on_click(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        self._event(batch, result, s, "click", d)
        batch.count(d, "clicks")
        if d.clicked_at is None:
            batch.change(d, clicked_at=s.at)
            batch.count(d, "clicked")
        self._opened(d, s.at, batch)
        if d.contact_id is not None:
            batch.interactions[d.contact_id] = s.at

    def _on_unsubscribe(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        scope = "all" if s.detail.get("scope") == "all" else "campaign"
        self._event(batch, result, s, "unsubscribe", d, {**s.detail, "scope": scope})
        if d.unsubscribed is None:
            batch.count(d, "unsubscribed")
        if d.unsubscribed != "all":
            batch.change(d, unsubscribed=scope, unsubscribed_at=s.at)
        if d.status == "pending":  # not sent yet (waiting for its batch or a retry)
            batch.change(
                d,
                status="cancelled",
                finished_at=s.at,
                next_attempt_at=None,
                error=f"the recipient unsubscribed ({scope}, D19)",
            )
            batch.count(d, "cancelled")
        if scope == "all":
            self._suppress(c, d, "unsubscribe", s, "unsubscribed from all campaigns (D19)")

    def _on_complaint(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        if d.complained_at is not None:  # one complaint per delivery (D14), however reported
            result.duplicate = True
            return
        self._event(batch, result, s, "complaint", d)
        batch.change(d, complained_at=s.at)
        batch.count(d, "complaints")
        self._suppress(c, d, "complaint", s, "marked the message as spam")

    def _on_delivered(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        self._event(batch, result, s, "delivered", d)
        self._delivered(d, s.at, batch)

    def _delivered(self, d: _Delivery, at: datetime, batch: _Batch) -> None:
        if d.delivered_at is None and d.status == "sent":
            batch.change(d, delivered_at=at)
            batch.count(d, "delivered")

    def _on_deferred(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        self._event(batch, result, s, "deferred", d)

    def _on_bounce(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        hard = bool(s.detail.get("hard"))
        if hard and self._bounced_before(d, batch, result):
            return
        reason = _reason(s.detail)
        self._event(batch, result, s, "bounced" if hard else "failed", d)
        self._undelivered(c, s, d, batch, hard=hard, reason=reason)

    @staticmethod
    def _bounced_before(d: _Delivery, batch: _Batch, result: Applied) -> bool:
        """A delivery bounces once (D14): a second hard bounce for it — a DSN delivered
        again, a copy with one more ``Received:`` line, another report of the same failure —
        is a duplicate and stores nothing, so the guard's rate counts deliveries, not
        reports."""
        if d.id in batch.bounced:
            result.duplicate = True
            return True
        batch.bounced.add(d.id)
        return False

    def _undelivered(
        self,
        c: Connection,
        s: Signal,
        d: _Delivery,
        batch: _Batch,
        *,
        hard: bool,
        reason: str,
        suppress: str | None = None,
    ) -> None:
        if d.status == "sent" and d.delivered_at is None:
            new = "bounced" if hard else "failed"
            batch.change(d, status=new, error=reason)
            batch.count(d, "sent", -1)
            batch.count(d, new)
        if hard or suppress:
            self._suppress(c, d, suppress or "bounce", s, reason)

    def _on_status(
        self, c: Connection, s: Signal, d: _Delivery, batch: _Batch, result: Applied
    ) -> None:
        status = str(s.detail.get("status", "")).lower()
        current = d.provider_status
        rank, before = STATUS_RANK.get(status), STATUS_RANK.get(current or "", -1)
        applies = rank is not None and (
            (current not in FINAL and rank > before)
            or (current == "delivered" and status == "read")
        )
        if not applies:  # out of order or unknown: kept for the record, changes nothing
            self._event(batch, result, s, "status", d, {**s.detail, "applied": False})
            return
        batch.change(d, provider_status=status)
        if status == "delivered":
            self._event(batch, result, s, "delivered", d)
            self._delivered(d, s.at, batch)
        elif status == "read":
            self._event(batch, result, s, "open", d)
            self._delivered(d, s.at, batch)
            self._opened(d, s.at, batch)
        elif status in ("undelivered", "failed"):
            hard = bool(s.detail.get("hard"))
            stop = bool(s.detail.get("stop"))
            if hard and self._bounced_before(d, batch, result):
                return
            self._event(batch, result, s, "bounced" if hard else "failed", d)
            self._undelivered(
                c,
                s,
                d,
                batch,
                hard=hard,
                reason=_reason(s.detail),
                suppress="stop" if stop else None,
            )
        else:
            self._event(batch, result, s, "status", d, {**s.detail, "applied": True})

    def _reply(self, c: Connection, s: Signal, batch: _Batch, result: Applied) -> None:
        """An inbound message: an interaction (D4); STOP suppresses, START lifts a STOP."""
        phone = s.address
        if not phone:
            result.unknown = True
            return
        last = c.execute(
            sa.select(events.c.campaign_id, events.c.contact_id, events.c.account)
            .where(events.c.address == phone, events.c.kind == "sent")
            .order_by(events.c.at.desc())
            .limit(1)
        ).first()
        campaign_id, contact_id, account = (
            (last[0], last[1], last[2]) if last else (None, None, None)
        )
        channel = None
        if campaign_id is not None:
            channel = c.execute(
                sa.select(campaigns.c.channel).where(campaigns.c.id == campaign_id)
            ).scalar()
        keyword = s.detail.get("keyword")
        kind = {"stop": "stop", "start": "start"}.get(str(keyword), "reply")
        self._event(
            batch,
            result,
            s,
            kind,
            None,
            address=phone,
            campaign_id=campaign_id,
            contact_id=contact_id,
            channel=channel,
            account=account,
        )
        batch.phone_interactions[phone] = s.at
        if contact_id is not None:  # the contact as imported (its phone maybe not E.164)
            batch.interactions[int(contact_id)] = s.at
        key = suppression_key("phone", phone)
        if kind == "stop":
            self.store.suppressions.add(
                "phone",
                key,
                origin="stop",
                actor=s.origin,
                reason=f"replied {str(s.detail.get('body', ''))[:40]!r}",
                campaign_id=campaign_id,
                conn=c,
                contact_id=contact_id,
            )
        elif kind == "start":
            origin = c.execute(
                sa.select(suppressions.c.origin).where(
                    suppressions.c.kind == "phone", suppressions.c.address == key
                )
            ).scalar()
            if origin == "stop":  # only lifts what a STOP did, never a bounce or a manual one
                self.store.suppressions.remove(
                    "phone", key, actor=s.origin, reason="replied START", conn=c
                )

    def _suppress(self, c: Connection, d: _Delivery, origin: str, s: Signal, reason: str) -> None:
        kind = d.address_kind
        # the address as the channel sends to it (E.164, a normalised e-mail), as the
        # dispatcher checks it at send time (D4); files without hygiene keep it as written
        checked = normalise_email(d.address) if kind == "email" else normalise_phone(d.address)
        self.store.suppressions.add(
            kind,
            suppression_key(kind, checked.value or d.address),
            origin=origin,
            actor=s.origin,
            reason=reason[:500],
            campaign_id=d.campaign_id,
            conn=c,
            contact_id=d.contact_id,
        )

    def _flush(self, c: Connection, batch: _Batch) -> None:
        """Write a batch set-based: one statement per table and shape of change (a driver
        executemany), never one ORM or Core statement per event."""
        bind = _Binder()
        if batch.events:
            sql, procs = _driver_statement(c.dialect, "events", _EVENT_COLUMNS, ())
            c.exec_driver_sql(sql, bind.rows(procs, batch.events))
        # deliveries: grouped by the columns they change (an open sets opened_at; a click
        # clicked_at and maybe opened_at…), one driver executemany per group
        shapes: defaultdict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for delivery_id, values in batch.deliveries.items():
            names = tuple(sorted(values))
            shapes[names].append((*(values[k] for k in names), delivery_id))
        for names, params in shapes.items():
            sql, procs = _driver_statement(c.dialect, "deliveries", names, ("id",))
            c.exec_driver_sql(sql, bind.rows(procs, params))
        now = self.store.clock.now()
        counted = sorted(
            {name for counts in batch.counters.values() for name, n in counts.items() if n}
        )
        if counted:
            c.execute(
                sa.update(campaigns)
                .where(campaigns.c.id == sa.bindparam("c_id"))
                .values(
                    updated_at=sa.bindparam("v_now", type_=campaigns.c.updated_at.type),
                    **{
                        name: getattr(campaigns.c, name)
                        + sa.bindparam(f"n_{name}", type_=sa.Integer)
                        for name in counted
                    },
                ),
                [
                    {"c_id": campaign_id, "v_now": now, **{f"n_{k}": counts[k] for k in counted}}
                    for campaign_id, counts in batch.counters.items()
                    if any(counts.values())
                ],
            )
        last = contacts.c.last_interaction_at
        at = sa.bindparam("v_at", type_=last.type)
        if batch.interactions:  # a click each: at the driver too, each time converted once
            sql = _interaction_statement(c.dialect)
            proc = _time_processor(c.dialect)
            c.exec_driver_sql(
                sql,
                [(bind(proc, v), k, bind(proc, v)) for k, v in batch.interactions.items()],
            )
        if batch.phone_interactions:
            c.execute(
                sa.update(contacts)
                .where(
                    contacts.c.phone == sa.bindparam("k_phone"), sa.or_(last.is_(None), last < at)
                )
                .values(last_interaction_at=at),
                [{"k_phone": k, "v_at": v} for k, v in batch.phone_interactions.items()],
            )


class _Binder:
    """Applies a bind processor to a value, once per distinct time in a flush: an open's
    time is its event's ``at`` and its delivery's ``opened_at`` (each conversion of an aware
    time costs a ``replace`` and a formatting); and once per distinct flat detail (an event's
    JSON: the opens of one mail client share ``{"agent": …}``, a serialisation each costs
    more than the lookup)."""

    def __init__(self) -> None:
        self.times: dict[tuple[int, datetime], Any] = {}
        self.details: dict[tuple[int, tuple[Any, ...]], Any] = {}

    def __call__(self, proc: Callable[[Any], Any] | None, value: Any) -> Any:
        if proc is None or value is None:
            return value if proc is None else proc(value)
        kind = type(value)
        if kind is dict:
            return self._detail(proc, value)
        if kind is not datetime:
            return proc(value)
        key = (id(proc), value)
        found = self.times.get(key, _MISSING)
        if found is _MISSING:
            found = self.times[key] = proc(value)
        return found

    def _detail(self, proc: Callable[[Any], Any], value: dict[str, Any]) -> Any:
        # keyed by each item's key, value and exact type, in order (the JSON text follows the
        # order; 1, 1.0 and True are equal keys but different JSON): only flat details of
        # strings and integers, anything else serialised each time
        items = []
        for k, v in value.items():
            t = type(v)
            if t is not str and t is not int:
                return proc(value)
            items.append((k, t, v))
        key = (id(proc), tuple(items))
        found = self.details.get(key, _MISSING)
        if found is _MISSING:
            found = self.details[key] = proc(value)
        return found

    def rows(
        self, procs: Sequence[Callable[[Any], Any] | None], rows: Sequence[tuple[Any, ...]]
    ) -> list[tuple[Any, ...]]:
        """``rows`` with each value converted by the processor at its position (only the
        positions that have one are touched)."""
        todo = [(i, p) for i, p in enumerate(procs) if p is not None]
        if not todo:
            return list(rows)
        out = []
        for row in rows:
            values = list(row)
            for i, p in todo:
                values[i] = self(p, values[i])
            out.append(tuple(values))
        return out


_MISSING = object()

#: the columns of an event as ``Feedback._event`` gathers them
_EVENT_COLUMNS = (*EVENT_COLUMNS, "dedupe_key")
_TABLES = {"events": events, "deliveries": deliveries}


@lru_cache(maxsize=64)
def _driver_statement(
    dialect: Dialect, table: str, values: tuple[str, ...], where: tuple[str, ...]
) -> tuple[str, tuple[Callable[[Any], Any] | None, ...]]:
    """The SQL of an executemany at the driver (no SQLAlchemy work per row) and one bind
    processor per parameter (the column types' own: aware UTC times stored as SQLAlchemy
    stores them, JSON serialised): ``INSERT INTO table (values…)`` when ``where`` is empty,
    else ``UPDATE table SET values… WHERE where…`` (the parameters: values, then where)."""
    t = _TABLES[table]
    # every name is one of the table's own columns (t.c raises on any other): no input of
    # anyone's reaches the SQL text
    columns = [t.c[n] for n in (*values, *where)]
    procs = tuple(
        _time_processor(dialect)
        if isinstance(col.type, UTCDateTime)
        else col.type.dialect_impl(dialect).bind_processor(dialect)
        for col in columns
    )
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    if where:
        sets = ", ".join(f"{n} = {mark}" for n in values)
        keys = " AND ".join(f"{n} = {mark}" for n in where)
        sql = f"UPDATE {t.name} SET {sets} WHERE {keys}"  # noqa: S608
    else:
        marks = ", ".join([mark] * len(values))
        sql = f"INSERT INTO {t.name} ({', '.join(values)}) VALUES ({marks})"  # noqa: S608
    return sql, procs


#: what ``Feedback._deliveries`` reads, in ``_Delivery``'s order
_SELECT_DELIVERIES = (
    "SELECT d.id, d.campaign_id, d.contact_id, d.address, d.status, d.provider_status, "
    "d.opened_at, d.clicked_at, d.complained_at, d.delivered_at, d.unsubscribed, "
    "c.channel, c.account, c.address_kind "
    "FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
)


def _among(dialect: Dialect, column: str, ids: set[int]) -> tuple[str, Any]:
    """``column`` is one of ``ids``, as SQL with one parameter (and the parameter): a JSON
    array read by ``json_each`` on SQLite, an array on PostgreSQL."""
    if dialect.name == "sqlite":
        sql = f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608 (a name of ours)
        return sql, json.dumps(sorted(ids))
    return f"{column} = ANY(%s)", sorted(ids)


@lru_cache(maxsize=8)
def _interaction_statement(dialect: Dialect) -> str:
    """A contact's last interaction moves forward only: parameters (time, contact, time)."""
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    return (
        f"UPDATE contacts SET last_interaction_at = {mark} WHERE id = {mark} "  # noqa: S608
        f"AND (last_interaction_at IS NULL OR last_interaction_at < {mark})"
    )


@lru_cache(maxsize=8)
def _time_processor(dialect: Dialect) -> Callable[[Any], Any] | None:
    """One bind processor of ``UTCDateTime`` per dialect (the same object in every statement,
    so that ``_Binder`` converts a time once for all of them)."""
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)


def _reason(detail: Mapping[str, Any]) -> str:
    parts = [str(detail[k]) for k in ("status", "error_code", "diagnostic") if detail.get(k)]
    return " ".join(parts)[:500] or "reported undelivered"

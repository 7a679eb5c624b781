"""Suppressions (D4): addresses that are never sent to, with where the suppression came from.

An opt-out — an unsubscribe from all campaigns, a complaint, a STOP, an operator's
suppression, a list file's opt-out column — is the person's own choice, and the list sync
reports each one back once (S2): besides the suppression, it is recorded as an ``optout``
event in the same transaction, whatever its origin. An address already suppressed for a
bounce that then opts out gets its event too; one already opted out does not get another
(until the suppression is lifted and it opts out again).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.base import Queries
from engine.store.schema import audit_log, events, suppressions

ORIGINS = ("bounce", "complaint", "unsubscribe", "stop", "manual")
#: the origins that are the person's choice (an ``optout`` event each); a bounce is not
OPT_OUTS = frozenset({"complaint", "unsubscribe", "stop", "manual"})


@dataclass(frozen=True)
class Suppression:
    id: int
    kind: str
    address: str
    origin: str
    reason: str | None
    campaign_id: int | None
    created_by: str
    created_at: datetime


def _row(r: sa.Row[tuple[object, ...]]) -> Suppression:
    m = r._mapping
    return Suppression(
        m["id"],
        m["kind"],
        m["address"],
        m["origin"],
        m["reason"],
        m["campaign_id"],
        m["created_by"],
        m["created_at"],
    )


class Suppressions(Queries):
    def add(
        self,
        kind: str,
        address: str,
        *,
        origin: str,
        actor: str,
        reason: str | None = None,
        campaign_id: int | None = None,
        conn: Connection | None = None,
        contact_id: int | None = None,
    ) -> bool:
        """Suppress a (normalised) address; False when it already was. An opt-out origin
        (``OPT_OUTS``) also records the ``optout`` event, unless the address had opted out
        already; ``contact_id`` is the contact it is known to be (a delivery's), if any."""
        return bool(
            self.add_many(
                [(kind, address, contact_id)],
                origin=origin,
                actor=actor,
                reason=reason,
                campaign_id=campaign_id,
                conn=conn,
            )
        )

    def add_many(
        self,
        addresses: Iterable[tuple[str, str, int | None]],
        *,
        origin: str,
        actor: str,
        reason: str | None = None,
        campaign_id: int | None = None,
        conn: Connection | None = None,
    ) -> int:
        """``add`` for many ``(kind, address, contact_id)`` at once (a list file's opt-out
        column), in one transaction; return how many suppressions are new."""
        now = self.store.clock.now()
        wanted: dict[tuple[str, str], int | None] = {}
        for kind, address, contact_id in addresses:
            if wanted.get((kind, address)) is None:
                wanted[(kind, address)] = contact_id
        if not wanted:
            return 0
        opt_out = origin in OPT_OUTS
        with self._writing(conn) as c:
            known: dict[tuple[str, str], tuple[int, datetime | None]] = {}
            pairs = list(wanted)
            for start in range(0, len(pairs), 500):
                chunk = pairs[start : start + 500]
                for kind in {k for k, _ in chunk}:
                    found = c.execute(
                        sa.select(
                            suppressions.c.id,
                            suppressions.c.address,
                            suppressions.c.opted_out_at,
                        ).where(
                            suppressions.c.kind == kind,
                            suppressions.c.address.in_([a for k, a in chunk if k == kind]),
                        )
                    )
                    known.update({(kind, r.address): (r.id, r.opted_out_at) for r in found})
            new = [pair for pair in pairs if pair not in known]
            if new:
                c.execute(
                    sa.insert(suppressions),
                    [
                        {
                            "kind": kind,
                            "address": address,
                            "origin": origin,
                            "reason": reason,
                            "campaign_id": campaign_id,
                            "created_by": actor,
                            "created_at": now,
                            "opted_out_at": now if opt_out else None,
                        }
                        for kind, address in new
                    ],
                )
                c.execute(
                    sa.insert(audit_log),
                    [
                        {
                            "at": now,
                            "actor": actor,
                            "action": "suppression.add",
                            "target": f"{kind}:{address}",
                            "detail": {"origin": origin, "reason": reason},
                        }
                        for kind, address in new
                    ],
                )
            if opt_out:
                # suppressed before for a bounce: the opt-out is news all the same
                late = [pair for pair, (_, at) in known.items() if at is None]
                if late:
                    c.execute(
                        sa.update(suppressions)
                        .where(suppressions.c.id == sa.bindparam("b_id"))
                        .values(opted_out_at=now),
                        [{"b_id": known[pair][0]} for pair in late],
                    )
                rows = [
                    self._opt_out_event(
                        now,
                        kind,
                        address,
                        wanted[(kind, address)],
                        origin,
                        actor,
                        reason,
                        campaign_id,
                    )
                    for kind, address in [*new, *late]
                ]
                if rows:
                    c.execute(sa.insert(events), rows)
            return len(new)

    @staticmethod
    def _opt_out_event(
        now: datetime,
        kind: str,
        address: str,
        contact_id: int | None,
        origin: str,
        actor: str,
        reason: str | None,
        campaign_id: int | None,
    ) -> dict[str, Any]:
        return {
            "at": now,
            "kind": "optout",
            "campaign_id": campaign_id,
            "delivery_id": None,
            "contact_id": contact_id,
            "account": None,
            "address": address,
            # the event is the engine's record of the choice; who reported it is `by`
            "origin": "operator" if origin == "manual" else "engine",
            "detail": {"origin": origin, "address_kind": kind, "reason": reason, "by": actor},
            "dedupe_key": None,
        }

    def remove(
        self, kind: str, address: str, *, actor: str, reason: str, conn: Connection | None = None
    ) -> Suppression | None:
        """Lift a suppression (the audit log keeps what it was and why it was lifted)."""
        now = self.store.clock.now()
        with self._writing(conn) as c:
            row = c.execute(
                sa.select(suppressions).where(
                    suppressions.c.kind == kind, suppressions.c.address == address
                )
            ).first()
            if row is None:
                return None
            gone = _row(row)
            c.execute(sa.delete(suppressions).where(suppressions.c.id == gone.id))
            c.execute(
                sa.insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action="suppression.remove",
                    target=f"{kind}:{address}",
                    detail={
                        "origin": gone.origin,
                        "reason": reason,
                        "suppressed_at": gone.created_at.isoformat(),
                    },
                )
            )
            return gone

    def search(
        self, text: str = "", *, origin: str | None = None, limit: int = 200, offset: int = 0
    ) -> list[Suppression]:
        """Newest first; ``text`` matches part of the address."""
        query = sa.select(suppressions).order_by(
            suppressions.c.created_at.desc(), suppressions.c.id.desc()
        )
        if text:
            query = query.where(suppressions.c.address.contains(text.strip().lower()))
        if origin:
            query = query.where(suppressions.c.origin == origin)
        with self.store.read() as c:
            return [_row(r) for r in c.execute(query.limit(limit).offset(offset))]

    def counts(self) -> dict[str, int]:
        with self.store.read() as c:
            return dict(
                c.execute(
                    sa.select(suppressions.c.origin, sa.func.count()).group_by(
                        suppressions.c.origin
                    )
                ).all()
            )

"""Suppressions (D4): addresses that are never sent to, with where the suppression came from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.base import Queries
from engine.store.schema import audit_log, suppressions

ORIGINS = ("bounce", "complaint", "unsubscribe", "stop", "manual")


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
    ) -> bool:
        """Suppress a (normalised) address; False when it already was."""
        now = self.store.clock.now()
        with self._writing(conn) as c:
            exists = c.execute(
                sa.select(suppressions.c.id).where(
                    suppressions.c.kind == kind, suppressions.c.address == address
                )
            ).first()
            if exists is not None:
                return False
            c.execute(
                sa.insert(suppressions).values(
                    kind=kind,
                    address=address,
                    origin=origin,
                    reason=reason,
                    campaign_id=campaign_id,
                    created_by=actor,
                    created_at=now,
                )
            )
            c.execute(
                sa.insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action="suppression.add",
                    target=f"{kind}:{address}",
                    detail={"origin": origin, "reason": reason},
                )
            )
            return True

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

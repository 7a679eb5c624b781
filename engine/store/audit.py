"""The audit log: who did what to which target, and when (D1, D16, operator actions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from engine.store.base import Queries
from engine.store.schema import audit_log


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    detail: Mapping[str, Any]


class Audit(Queries):
    def record(
        self,
        actor: str,
        action: str,
        target: str,
        detail: Mapping[str, Any] | None = None,
        *,
        conn: Connection | None = None,
    ) -> int:
        """Append one entry, stamped with the store's clock; return its id."""
        with self._writing(conn) as c:
            result = c.execute(
                insert(audit_log).values(
                    at=self.store.clock.now(),
                    actor=actor,
                    action=action,
                    target=target,
                    detail=dict(detail or {}),
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def entries(
        self,
        *,
        target: str | None = None,
        limit: int = 100,
        before: int | None = None,
        conn: Connection | None = None,
    ) -> list[AuditEntry]:
        """The newest entries first, optionally for one target (``campaign:12``…) and older
        than the entry ``before`` (a page of the audit screen: a seek on the primary key)."""
        query = select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(audit_log.c.target == target)
        if before is not None:
            query = query.where(audit_log.c.id < before)
        with self._reading(conn) as c:
            return [
                AuditEntry(r.id, r.at, r.actor, r.action, r.target, r.detail)
                for r in c.execute(query)
            ]

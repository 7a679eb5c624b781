"""Commands from the UI and the CLI (pause, resume, cancel, priority, guard override…),
written here and applied by the engine within a second."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from engine.store.base import Queries
from engine.store.schema import commands


@dataclass(frozen=True)
class Command:
    id: int
    created_at: datetime
    actor: str
    role: str
    action: str
    target: str
    args: Mapping[str, Any]
    status: str
    applied_at: datetime | None
    result: str | None


def _row(r: Any) -> Command:
    return Command(
        r.id,
        r.created_at,
        r.actor,
        r.role,
        r.action,
        r.target,
        r.args,
        r.status,
        r.applied_at,
        r.result,
    )


class Commands(Queries):
    def submit(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        target: str,
        args: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> int:
        """Queue a command for the engine; return its id."""
        with self._writing(conn) as c:
            result = c.execute(
                insert(commands).values(
                    created_at=self.store.clock.now(),
                    actor=actor,
                    role=role,
                    action=action,
                    target=target,
                    args=dict(args or {}),
                    status="pending",
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def pending(self, *, limit: int = 100, conn: Connection | None = None) -> list[Command]:
        """Commands not yet applied, oldest first."""
        query = (
            select(commands).where(commands.c.status == "pending").order_by(commands.c.id)
        ).limit(limit)
        with self._reading(conn) as c:
            return [_row(r) for r in c.execute(query)]

    def finish(
        self, command_id: int, *, applied: bool, result: str, conn: Connection | None = None
    ) -> bool:
        """Mark a pending command applied or rejected (with why); False if it was not pending."""
        with self._writing(conn) as c:
            done = c.execute(
                update(commands)
                .where(commands.c.id == command_id, commands.c.status == "pending")
                .values(
                    status="applied" if applied else "rejected",
                    applied_at=self.store.clock.now(),
                    result=result,
                )
            )
            return done.rowcount == 1

    def get(self, command_id: int, *, conn: Connection | None = None) -> Command | None:
        with self._reading(conn) as c:
            row = c.execute(select(commands).where(commands.c.id == command_id)).first()
            return _row(row) if row else None

"""The engines' recent log records in the store, so a UI attached to a separate engine (over
SSH, on another host) shows what the engine says. Bounded: after each write only the newest
``KEEP`` rows stay. Messages arrive here already masked (``engine.logstore``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from engine.store.base import Queries
from engine.store.schema import engine_log

#: how many rows the table keeps (the newest)
KEEP = 1000


@dataclass(frozen=True)
class LogLine:
    """One log record of an engine."""

    id: int
    at: datetime
    node: str
    level: str
    logger: str
    message: str


class EngineLog(Queries):
    """Append, trim, and read the engines' recent log records."""

    def add(self, rows: Sequence[LogLine | dict[str, object]], *, keep: int = KEEP) -> None:
        """Append ``rows`` (``at``, ``node``, ``level``, ``logger``, ``message``) and trim the
        table to its newest ``keep`` rows, in one transaction."""
        if not rows:
            return
        values = [
            {k: getattr(r, k) for k in ("at", "node", "level", "logger", "message")}
            if isinstance(r, LogLine)
            else dict(r)
            for r in rows
        ]
        with self.store.write() as c:
            c.execute(sa.insert(engine_log), values)
            newest = c.execute(sa.select(sa.func.max(engine_log.c.id))).scalar() or 0
            c.execute(sa.delete(engine_log).where(engine_log.c.id <= int(newest) - keep))

    def recent(self, limit: int = 200, *, before: int | None = None) -> list[LogLine]:
        """The newest ``limit`` records (older than id ``before`` when given), newest first."""
        query = sa.select(engine_log).order_by(engine_log.c.id.desc()).limit(limit)
        if before is not None:
            query = query.where(engine_log.c.id < before)
        with self.store.read() as c:
            return [
                LogLine(r.id, r.at, r.node, r.level, r.logger, r.message) for r in c.execute(query)
            ]

    def count(self) -> int:
        with self.store.read() as c:
            return int(c.execute(sa.select(sa.func.count()).select_from(engine_log)).scalar() or 0)

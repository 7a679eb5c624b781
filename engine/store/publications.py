"""The publication ledger: every file written back to a source, by which publisher, with what
it covered (``detail``), so each is published exactly once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine.store.base import Queries
from engine.store.schema import publications


@dataclass(frozen=True)
class Published:
    """One publication in the ledger."""

    id: int
    source: str
    publisher: str
    key: str
    path: str
    detail: Mapping[str, Any]
    size: int
    sha256: str
    published_at: datetime


def _published(m: Mapping[Any, Any]) -> Published:
    return Published(**{k: m[k] for k in Published.__dataclass_fields__})


class Publications(Queries):
    """Reads and writes of the publication ledger."""

    def of(self, source: str, publisher: str | None = None) -> list[Published]:
        """A source's publications (of one publisher), oldest first."""
        query = sa.select(publications).where(publications.c.source == source)
        if publisher is not None:
            query = query.where(publications.c.publisher == publisher)
        with self.store.read() as c:
            return [_published(r._mapping) for r in c.execute(query.order_by(publications.c.id))]

    def keys(self, source: str, publisher: str) -> set[str]:
        """The keys a source's publisher already published."""
        with self.store.read() as c:
            return {
                str(k)
                for (k,) in c.execute(
                    sa.select(publications.c.key).where(
                        publications.c.source == source, publications.c.publisher == publisher
                    )
                )
            }

    def record(
        self,
        *,
        source: str,
        publisher: str,
        key: str,
        path: str,
        detail: Mapping[str, Any],
        size: int,
        sha256: str,
    ) -> bool:
        """Record a publication once it is on the source; False when another engine recorded
        the same one first (it wrote the same file)."""
        try:
            with self.store.write() as c:
                c.execute(
                    sa.insert(publications).values(
                        source=source,
                        publisher=publisher,
                        key=key,
                        path=path,
                        detail=dict(detail),
                        size=size,
                        sha256=sha256,
                        published_at=self.store.clock.now(),
                    )
                )
        except IntegrityError:
            return False
        return True

    def recent(self, limit: int = 100) -> list[Published]:
        """The newest publications of every source."""
        query = sa.select(publications).order_by(publications.c.id.desc()).limit(limit)
        with self.store.read() as c:
            return [_published(r._mapping) for r in c.execute(query)]

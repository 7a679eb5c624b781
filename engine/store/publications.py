"""The publication ledger: every file written back to a source, by which publisher, with what
it covered (``detail``), so each is published exactly once.

A publication is *planned* (a ``pending`` row, its path and detail fixed) right before its
first upload, and *recorded* (``published``, with its size and hash) once the file is on the
source. A failed upload is retried from the pending row, with the same detail; a crash between
the upload and the record publishes the same file again under the same name. Publications of
one ``chain`` (an incremental export of one kind) are planned one after the other: the next one
only once the one before it is published, so where an export ends (its high-water mark, in its
``detail``) only ever moves past files that are completely written (S3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from engine.store.base import Queries
from engine.store.schema import publications


@dataclass(frozen=True)
class Published:
    """One publication in the ledger: ``status`` is ``pending`` (planned, not yet on the
    source: ``size``, ``sha256`` and ``published_at`` are None) or ``published``."""

    id: int
    source: str
    publisher: str
    key: str
    path: str
    detail: Mapping[str, Any]
    size: int | None
    sha256: str | None
    published_at: datetime | None
    status: str = "published"
    chain: str | None = None
    planned_at: datetime | None = None


def _published(m: Mapping[Any, Any]) -> Published:
    return Published(**{k: m[k] for k in Published.__dataclass_fields__})


class StalePlan(Exception):
    """The chain moved on since the publication was worked out (another engine planned the
    next one, or the one before it is not published yet): it is worked out again later."""


class Publications(Queries):
    """Reads and writes of the publication ledger."""

    def of(
        self, source: str, publisher: str | None = None, *, pending: bool = False
    ) -> list[Published]:
        """A source's publications (of one publisher), oldest first; the pending ones too
        with ``pending``."""
        query = sa.select(publications).where(publications.c.source == source)
        if publisher is not None:
            query = query.where(publications.c.publisher == publisher)
        if not pending:
            query = query.where(publications.c.status == "published")
        with self.store.read() as c:
            return [_published(r._mapping) for r in c.execute(query.order_by(publications.c.id))]

    def keys(self, source: str, publisher: str) -> set[str]:
        """The keys a source's publisher already published or planned."""
        with self.store.read() as c:
            return {
                str(k)
                for (k,) in c.execute(
                    sa.select(publications.c.key).where(
                        publications.c.source == source, publications.c.publisher == publisher
                    )
                )
            }

    def pending(self, source: str, publisher: str) -> list[Published]:
        """Planned publications not yet on the source (a failed upload, a crash), oldest
        first: they are published before anything new of the same publisher."""
        query = (
            sa.select(publications)
            .where(
                publications.c.source == source,
                publications.c.publisher == publisher,
                publications.c.status == "pending",
            )
            .order_by(publications.c.id)
        )
        with self.store.read() as c:
            return [_published(r._mapping) for r in c.execute(query)]

    def last(self, source: str, publisher: str, chain: str) -> Published | None:
        """The newest publication of a chain, pending or published (None: none yet)."""
        with self.store.read() as c:
            return self._last(c, source, publisher, chain)

    @staticmethod
    def _last(c: Connection, source: str, publisher: str, chain: str) -> Published | None:
        row = c.execute(
            sa.select(publications)
            .where(
                publications.c.source == source,
                publications.c.publisher == publisher,
                publications.c.chain == chain,
            )
            .order_by(publications.c.id.desc())
            .limit(1)
        ).first()
        return _published(row._mapping) if row is not None else None

    def plan(
        self,
        *,
        source: str,
        publisher: str,
        key: str,
        path: str,
        detail: Mapping[str, Any],
        chain: str | None = None,
        previous: str | None = None,
    ) -> Published:
        """Fix a publication before its first upload: a ``pending`` row with its path and
        detail. An existing row of the same key (another engine planned it first) is returned
        as it is, so every engine writes the same file. In a ``chain``, ``previous`` is the key
        of the chain's publication it continues (None: the first): ``StalePlan`` when that is
        no longer the chain's newest, or is not published yet."""
        where = (
            publications.c.source == source,
            publications.c.publisher == publisher,
            publications.c.key == key,
        )
        with self.store.write() as c:
            if c.dialect.name == "postgresql":
                # planners of one publisher take turns (SQLite's writers do already)
                c.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:who))"),
                    {"who": f"publications:{source}:{publisher}"},
                )
            found = c.execute(sa.select(publications).where(*where)).first()
            if found is not None:
                return _published(found._mapping)
            if chain is not None:
                last = self._last(c, source, publisher, chain)
                if (last.key if last else None) != previous or (
                    last is not None and last.status != "published"
                ):
                    raise StalePlan(key)
            c.execute(
                sa.insert(publications).values(
                    source=source,
                    publisher=publisher,
                    key=key,
                    path=path,
                    detail=dict(detail),
                    status="pending",
                    chain=chain,
                    planned_at=self.store.clock.now(),
                )
            )
            row = c.execute(sa.select(publications).where(*where)).one()
            return _published(row._mapping)

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
        """Record a publication once it is on the source (its planned row becomes
        ``published``, or a row is written when it was not planned); False when another engine
        recorded the same one first (it wrote the same file)."""
        now = self.store.clock.now()
        try:
            with self.store.write() as c:
                done = c.execute(
                    sa.update(publications)
                    .where(
                        publications.c.source == source,
                        publications.c.publisher == publisher,
                        publications.c.key == key,
                        publications.c.status == "pending",
                    )
                    .values(status="published", size=size, sha256=sha256, published_at=now)
                )
                if done.rowcount:
                    return True
                c.execute(
                    sa.insert(publications).values(
                        source=source,
                        publisher=publisher,
                        key=key,
                        path=path,
                        detail=dict(detail),
                        status="published",
                        size=size,
                        sha256=sha256,
                        planned_at=now,
                        published_at=now,
                    )
                )
        except IntegrityError:
            return False
        return True

    def recent(self, limit: int = 100, *, source: str | None = None) -> list[Published]:
        """The newest publications (of every source, or of one), pending ones included."""
        query = sa.select(publications).order_by(publications.c.id.desc()).limit(limit)
        if source is not None:
            query = query.where(publications.c.source == source)
        with self.store.read() as c:
            return [_published(r._mapping) for r in c.execute(query)]

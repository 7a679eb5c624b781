"""The files ledger (F10), what each source's listings showed (F8), and each source's state."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.base import Queries
from engine.store.schema import files, remote_files, source_state

#: statuses after which the collector does nothing more with a listed path
SETTLED = frozenset({"imported", "rejected", "duplicate"})


@dataclass(frozen=True)
class Observation:
    """A listed file as the collector knows it, after this listing."""

    source: str
    path: str
    size: int
    mtime: datetime | None
    stable_listings: int
    status: str
    code: str | None
    message: str | None
    file_id: int | None
    first_seen_at: datetime
    last_seen_at: datetime
    #: since when the listings show the file as it is now (F8's minimum age counts from here)
    stable_since: datetime | None = None

    @property
    def unchanged_since(self) -> datetime:
        return self.stable_since or self.last_seen_at


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    source: str
    path: str
    sha256: str
    outcome: str
    code: str | None
    message: str | None
    remote_done: bool
    created_at: datetime


@dataclass(frozen=True)
class SourceState:
    source: str
    last_poll_at: datetime | None
    next_poll_at: datetime | None
    status: str
    message: str | None


def _observation(r: sa.Row[tuple[object, ...]]) -> Observation:
    m = r._mapping
    return Observation(
        m["source"],
        m["path"],
        m["size"],
        m["mtime"],
        m["stable_listings"],
        m["status"],
        m["code"],
        m["message"],
        m["file_id"],
        m["first_seen_at"],
        m["last_seen_at"],
        m["stable_since"],
    )


def _ledger(r: sa.Row[tuple[object, ...]]) -> LedgerEntry:
    m = r._mapping
    return LedgerEntry(
        m["id"],
        m["source"],
        m["path"],
        m["sha256"],
        m["outcome"],
        m["code"],
        m["message"],
        bool(m["remote_done"]),
        m["created_at"],
    )


class Files(Queries):
    # -- listings (F8) -----------------------------------------------------------------------

    def observe(
        self, source: str, listing: Iterable[tuple[str, int, datetime | None]]
    ) -> dict[str, Observation]:
        """Record one listing; a file is stable when it looked the same on consecutive ones,
        and ``stable_since`` says since when (this store's clock, not the server's).

        A path that had been settled (imported, rejected) and shows up again is a new upload:
        its observation starts over.
        """
        now = self.store.clock.now()
        seen = {path: (size, mtime) for path, size, mtime in listing}
        with self.store.write() as c:
            known = {
                r.path: r
                for r in c.execute(sa.select(remote_files).where(remote_files.c.source == source))
            }
            for path, (size, mtime) in seen.items():
                row = known.get(path)
                if row is None:
                    c.execute(
                        sa.insert(remote_files).values(
                            source=source,
                            path=path,
                            size=size,
                            mtime=mtime,
                            stable_listings=1,
                            stable_since=now,
                            status="new",
                            first_seen_at=now,
                            last_seen_at=now,
                        )
                    )
                    continue
                same = row.size == size and row.mtime == mtime
                reappeared = row.status in SETTLED
                values: dict[str, object] = {"last_seen_at": now, "size": size, "mtime": mtime}
                if reappeared:
                    values.update(
                        stable_listings=1,
                        stable_since=now,
                        status="new",
                        code=None,
                        message=None,
                        file_id=None,
                        first_seen_at=now,
                    )
                elif same:
                    values["stable_listings"] = row.stable_listings + 1
                else:
                    values.update(stable_listings=1, stable_since=now, status="unstable")
                c.execute(
                    sa.update(remote_files)
                    .where(remote_files.c.source == source, remote_files.c.path == path)
                    .values(**values)
                )
            # files no longer listed and never settled (deleted by the customer): forget them
            gone = [p for p, r in known.items() if p not in seen and r.status not in SETTLED]
            if gone:
                c.execute(
                    sa.delete(remote_files).where(
                        remote_files.c.source == source, remote_files.c.path.in_(gone)
                    )
                )
            rows = (
                c.execute(
                    sa.select(remote_files).where(
                        remote_files.c.source == source, remote_files.c.path.in_(list(seen))
                    )
                ).all()
                if seen
                else []
            )
        return {r.path: _observation(r) for r in rows}

    def set_status(
        self,
        source: str,
        path: str,
        status: str,
        *,
        code: str | None = None,
        message: str | None = None,
        file_id: int | None = None,
        conn: Connection | None = None,
    ) -> None:
        """What the collector decided about a listed file (shown in the UI)."""
        values: dict[str, object] = {"status": status, "code": code, "message": message}
        if file_id is not None:
            values["file_id"] = file_id
        with self._writing(conn) as c:
            c.execute(
                sa.update(remote_files)
                .where(remote_files.c.source == source, remote_files.c.path == path)
                .values(**values)
            )

    def observations(self, source: str | None = None, *, limit: int = 500) -> list[Observation]:
        """Listed files, newest first (for ``disparo sources`` and the UI)."""
        query = sa.select(remote_files).order_by(remote_files.c.last_seen_at.desc()).limit(limit)
        if source is not None:
            query = query.where(remote_files.c.source == source)
        with self.store.read() as c:
            return [_observation(r) for r in c.execute(query)]

    # -- the ledger (F10) --------------------------------------------------------------------

    def imported(self, source: str, dedupe_key: str) -> LedgerEntry | None:
        """The ledger entry that imported this content under this name, if any."""
        with self.store.read() as c:
            row = c.execute(
                sa.select(files).where(files.c.source == source, files.c.dedupe_key == dedupe_key)
            ).first()
        return _ledger(row) if row else None

    def get(self, file_id: int) -> LedgerEntry | None:
        with self.store.read() as c:
            row = c.execute(sa.select(files).where(files.c.id == file_id)).first()
        return _ledger(row) if row else None

    def record_rejection(
        self,
        *,
        source: str,
        path: str,
        size: int,
        mtime: datetime | None,
        sha256: str,
        code: str,
        message: str,
        rows_total: int = 0,
        rows_rejected: int = 0,
    ) -> int:
        """A rejected file (no dedupe key: once fixed, the same name may be sent again).

        The rejection of a file whose report could not be published yet (the same source,
        path, size, time and content, not ``remote_done``) is that entry again, updated: a
        file retried poll after poll never grows the ledger.
        """
        with self.store.write() as c:
            pending = c.execute(
                sa.select(files.c.id)
                .where(
                    files.c.source == source,
                    files.c.path == path,
                    files.c.outcome == "rejected",
                    files.c.remote_done.is_(False),
                    files.c.size == size,
                    files.c.sha256 == sha256,
                    files.c.mtime.is_(None) if mtime is None else files.c.mtime == mtime,
                )
                .order_by(files.c.id.desc())
                .limit(1)
            ).scalar()
            if pending is not None:
                c.execute(
                    sa.update(files)
                    .where(files.c.id == pending)
                    .values(
                        code=code,
                        message=message,
                        rows_total=rows_total,
                        rows_rejected=rows_rejected,
                    )
                )
                return int(pending)
            result = c.execute(
                sa.insert(files).values(
                    source=source,
                    path=path,
                    dedupe_key=None,
                    size=size,
                    mtime=mtime,
                    sha256=sha256,
                    outcome="rejected",
                    code=code,
                    message=message,
                    rows_total=rows_total,
                    rows_imported=0,
                    rows_rejected=rows_rejected,
                    remote_done=False,
                    created_at=self.store.clock.now(),
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    def mark_remote_done(self, file_id: int) -> None:
        """The remote file was moved (and its reports published): nothing left to do."""
        with self.store.write() as c:
            c.execute(sa.update(files).where(files.c.id == file_id).values(remote_done=True))

    def pending_remote(self, source: str) -> list[LedgerEntry]:
        """Ledger entries whose remote move did not happen yet (a crash in between)."""
        with self.store.read() as c:
            rows = c.execute(
                sa.select(files).where(files.c.source == source, files.c.remote_done.is_(False))
            ).all()
        return [_ledger(r) for r in rows]

    def ledger(self, source: str | None = None, *, limit: int = 200) -> list[LedgerEntry]:
        query = sa.select(files).order_by(files.c.id.desc()).limit(limit)
        if source is not None:
            query = query.where(files.c.source == source)
        with self.store.read() as c:
            return [_ledger(r) for r in c.execute(query)]

    # -- source state ------------------------------------------------------------------------

    def set_source_state(
        self,
        source: str,
        *,
        status: str,
        message: str | None = None,
        polled_at: datetime | None = None,
        next_poll_at: datetime | None = None,
    ) -> None:
        now = self.store.clock.now()
        values: dict[str, object] = {"status": status, "message": message, "updated_at": now}
        if polled_at is not None:
            values["last_poll_at"] = polled_at
        if next_poll_at is not None:
            values["next_poll_at"] = next_poll_at
        with self.store.write() as c:
            done = c.execute(
                sa.update(source_state).where(source_state.c.source == source).values(**values)
            )
            if done.rowcount == 0:
                c.execute(sa.insert(source_state).values(source=source, **values))

    def source_states(self) -> dict[str, SourceState]:
        with self.store.read() as c:
            return {
                r.source: SourceState(r.source, r.last_poll_at, r.next_poll_at, r.status, r.message)
                for r in c.execute(sa.select(source_state))
            }

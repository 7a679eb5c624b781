"""Publishing: the files the sources' publishers owe are written back, each exactly once.

For every source with publishers (``publish``), what the ledger holds as planned but not yet
published (a failed upload, a crash) is published first, with the detail it was planned with;
then each publisher says what is ``due`` now, what the ledger already holds is skipped, and the
rest is planned in the ledger, written into a local temporary file, uploaded to the source
(under a temporary name, renamed when complete: nobody reads half a file) and only then
recorded as published. A crash between the upload and the record publishes the same file
again, under the same name, on the next run; nothing is ever half published.
``disparo run`` publishes every minute; ``disparo publish`` does it now, and
``disparo publish SOURCE`` also asks the source's publishers for what they publish on demand
(an export off its schedule).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from engine.clock import Clock
from engine.config import Config, SourceSettings
from engine.intake.collector import SESSION_FAILURES
from engine.intake.faults import operational
from engine.plugins import Plugins
from engine.plugins.publisher import Publication, PublishContext, Publisher
from engine.plugins.source import Source, SourceError
from engine.publish.reads import StoreReads
from engine.store import Store
from engine.store.publications import Published, StalePlan

log = logging.getLogger(__name__)

#: how often ``disparo run`` looks for what is due
EVERY = 60.0
#: the publishing service's temporary files in a source's spool
_TEMPORARY = re.compile(r"\.publish-[0-9a-f]{32}")


@dataclass(frozen=True)
class Outcome:
    """What happened to one publication: ``published``, ``due`` (a dry run), or ``failed``
    (with the reason; it is tried again on the next run)."""

    source: str
    publisher: str
    key: str
    path: str
    status: str
    size: int = 0
    message: str | None = None


@dataclass(frozen=True)
class FileResults:
    """An imported file that made a campaign, and its results: ``owed`` publications not made
    yet, due at ``due_at`` (None with some owed: when the campaign ends), ``published`` (paths
    on the source) and when the last was."""

    file_id: int
    path: str
    imported_at: datetime
    campaign_id: int
    campaign: str
    status: str
    owed: int = 0
    due_at: datetime | None = None
    published: tuple[str, ...] = field(default=())
    published_at: datetime | None = None


class Publishing:
    """Publishes what the sources' publishers owe."""

    def __init__(self, store: Store, plugins: Plugins, config: Config, clock: Clock) -> None:
        self.store = store
        self.plugins = plugins
        self.config = config
        self.clock = clock

    def sources(self, names: Iterable[str] | None = None) -> list[SourceSettings]:
        """The enabled sources with publishers (those named, when ``names`` is given)."""
        wanted = set(names) if names is not None else None
        return [
            s
            for s in self.config.sources.values()
            if s.publish and s.enabled and (wanted is None or s.name in wanted)
        ]

    def publishers(self, settings: SourceSettings) -> list[Publisher]:
        context = PublishContext(
            self.config, self.clock, self.store, StoreReads(self.store, self.config.tz)
        )
        classes = self.plugins.publishers()
        return [classes[name](settings, context) for name in settings.publish]

    def due(
        self,
        settings: SourceSettings,
        *,
        on_demand: bool = False,
        publishers: list[Publisher] | None = None,
    ) -> list[tuple[Publisher, Publication]]:
        """What the source's publishers owe now and the ledger does not hold (with
        ``on_demand``, also what they publish when an operator asks for the source)."""
        now = self.clock.now()
        found: list[tuple[Publisher, Publication]] = []
        for publisher in publishers if publishers is not None else self.publishers(settings):
            done = self.store.publications.keys(settings.name, publisher.name)
            wanted = list(publisher.due(now))
            if on_demand:
                wanted += publisher.on_demand(now)
            for p in wanted:
                if p.key not in done:
                    done.add(p.key)
                    found.append((publisher, p))
        return found

    def pending(
        self, settings: SourceSettings, publishers: list[Publisher] | None = None
    ) -> list[tuple[Publisher, Publication]]:
        """What was planned and is not on the source yet, as it was planned."""
        found: list[tuple[Publisher, Publication]] = []
        for publisher in publishers if publishers is not None else self.publishers(settings):
            found += [
                (publisher, Publication(p.key, p.path, p.detail, chain=p.chain))
                for p in self.store.publications.pending(settings.name, publisher.name)
            ]
        return found

    def publish(
        self,
        names: Iterable[str] | None = None,
        *,
        dry_run: bool = False,
        on_demand: bool = False,
    ) -> list[Outcome]:
        """Publish what is due on every source (or the named ones; with ``on_demand``, also
        what their publishers publish when asked, ``disparo publish SOURCE``); blocking (run
        it in a worker thread from the event loop)."""
        outcomes: list[Outcome] = []
        for settings in self.sources(names):
            try:
                outcomes += self._publish_source(settings, dry_run=dry_run, on_demand=on_demand)
            except Exception as exc:  # one source's trouble never stops the others
                log.exception("publishing to source %s failed", settings.name)
                outcomes.append(Outcome(settings.name, "-", "-", "-", "failed", message=str(exc)))
        return outcomes

    def _publish_source(
        self, settings: SourceSettings, *, dry_run: bool, on_demand: bool = False
    ) -> list[Outcome]:
        publishers = self.publishers(settings)
        pending = self.pending(settings, publishers)
        due = self.due(settings, on_demand=on_demand, publishers=publishers)
        if not pending and not due:
            return []
        if dry_run:
            return [
                Outcome(settings.name, p.name, pub.key, pub.path, "due") for p, pub in pending + due
            ]
        source: Source = self.plugins.source_kinds()[settings.kind](settings)
        if not source.writable:
            message = f"source {settings.name} is read-only: nothing can be published to it"
            return [
                Outcome(settings.name, p.name, pub.key, pub.path, "failed", message=message)
                for p, pub in pending + due
            ]
        outcomes: list[Outcome] = []
        spool = self.config.engine.spool_dir / settings.name
        spool.mkdir(parents=True, exist_ok=True)
        try:
            self._clean(settings.name, spool)
            with source.session():
                for publisher, publication in pending:
                    outcomes.append(self._one(source, settings, spool, publisher, publication))
                # worked out again after the retries: an incremental publication starts where
                # the one before it ended, once that one is published
                if pending:
                    due = self.due(settings, on_demand=on_demand, publishers=publishers)
                for publisher, publication in due:
                    planned = self._plan(settings, publisher, publication)
                    if planned is not None:
                        outcomes.append(self._one(source, settings, spool, publisher, planned))
        except SourceError as exc:
            done = {(o.publisher, o.key) for o in outcomes}
            outcomes += [
                Outcome(settings.name, p.name, pub.key, pub.path, "failed", message=exc.describe())
                for p, pub in pending + due
                if (p.name, pub.key) not in done
            ]
            log.warning("publishing to source %s: %s", settings.name, exc.describe())
        return outcomes

    def _plan(
        self, settings: SourceSettings, publisher: Publisher, publication: Publication
    ) -> Publication | None:
        """Fix the publication in the ledger before its first upload (``pending``); the one
        stored when another engine planned it first; None when its chain moved on meanwhile
        (it is worked out again on the next run)."""
        try:
            row = self.store.publications.plan(
                source=settings.name,
                publisher=publisher.name,
                key=publication.key,
                path=publication.path,
                detail=publication.detail,
                chain=publication.chain,
                previous=publication.previous,
            )
        except StalePlan:
            log.info(
                "publishing %s to source %s: its chain moved on meanwhile; worked out again "
                "on the next run",
                publication.path,
                settings.name,
            )
            return None
        if row.status != "pending":
            return None  # another engine published it meanwhile
        return Publication(row.key, row.path, row.detail, chain=row.chain)

    @staticmethod
    def _clean(name: str, spool: Path) -> None:
        """Remove the temporary files of publications whose process died (kill -9, power
        loss): a live one holds a lock on its file (``flock``, released by the kernel when
        the process goes), a dead one's file is unlocked."""
        removed = 0
        for path in spool.iterdir():
            if not _TEMPORARY.fullmatch(path.name):
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                continue  # gone meanwhile
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # being written
            else:
                path.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        if removed:
            log.info("source %s: removed %d file(s) a publication that died left", name, removed)

    def _one(
        self,
        source: Source,
        settings: SourceSettings,
        spool: Path,
        publisher: Publisher,
        publication: Publication,
    ) -> Outcome:
        temp = spool / f".publish-{uuid.uuid4().hex}"
        try:
            # one handle from start to end, locked while it lives: a run that finds the file
            # unlocked knows its writer died (_clean)
            with temp.open("w+b") as out:
                fcntl.flock(out.fileno(), fcntl.LOCK_EX)
                publisher.write(publication, out)
                out.flush()
                out.seek(0)
                digest = hashlib.sha256()
                size = 0
                for block in iter(lambda: out.read(1 << 20), b""):
                    digest.update(block)
                    size += len(block)
                out.seek(0)
                source.upload(out, publication.path)
                temp.unlink(missing_ok=True)
        except SourceError as exc:
            if exc.category in SESSION_FAILURES:
                raise  # the connection is gone: the rest of the source's publications wait
            log.warning(
                "could not publish %s to source %s: %s",
                publication.path,
                settings.name,
                exc.describe(),
            )
            return Outcome(
                settings.name,
                publisher.name,
                publication.key,
                publication.path,
                "failed",
                message=exc.describe(),
            )
        except Exception as exc:
            line = operational(exc, spool)
            if line is not None:  # a full disk, the database gone: nothing else goes either
                raise
            # the publisher's own trouble (a bug, data it cannot write): this one waits, the
            # source's others go on; it is tried again on the next run
            log.exception("publisher %s could not write %s", publisher.name, publication.path)
            return Outcome(
                settings.name,
                publisher.name,
                publication.key,
                publication.path,
                "failed",
                message=f"{type(exc).__name__}: {exc}",
            )
        finally:
            temp.unlink(missing_ok=True)
        self.store.publications.record(
            source=settings.name,
            publisher=publisher.name,
            key=publication.key,
            path=publication.path,
            detail=publication.detail,
            size=size,
            sha256=digest.hexdigest(),
        )
        log.info(
            "published %s to source %s (%s, %s bytes)",
            publication.path,
            settings.name,
            publisher.name,
            size,
        )
        return Outcome(
            settings.name, publisher.name, publication.key, publication.path, "published", size
        )

    def overview(self, settings: SourceSettings, *, limit: int = 50) -> list[FileResults]:
        """The source's imported files that made campaigns, newest first, with what their
        publishers owe and did: when the results are due, what was published and when (for
        ``disparo sources`` and the terminal UI). Writes nothing."""
        now = self.clock.now()
        reads = StoreReads(self.store, self.config.tz)
        files = reads.file_campaigns(settings.name, limit=limit)
        published: dict[int, list[Published]] = {}
        for p in self.store.publications.of(settings.name):
            file_id = p.detail.get("file_id")
            if isinstance(file_id, int):
                published.setdefault(file_id, []).append(p)
        owed: dict[int, list[Publication]] = {}
        if settings.publish and files:
            for publisher in self.publishers(settings):
                done = self.store.publications.keys(settings.name, publisher.name)
                for pub in [*publisher.due(now), *publisher.planned(now)]:
                    file_id = pub.detail.get("file_id")
                    if isinstance(file_id, int) and pub.key not in done:
                        owed.setdefault(file_id, []).append(pub)
        rows = []
        for f in files:
            pending = owed.get(f.file_id, [])
            known = [p.due_at or now for p in pending if p.due_at is not None or f.finished]
            rows.append(
                FileResults(
                    file_id=f.file_id,
                    path=f.path,
                    imported_at=f.imported_at,
                    campaign_id=f.campaign_id,
                    campaign=f.name,
                    status=f.status,
                    owed=len(pending),
                    due_at=min(known) if known else None,
                    published=tuple(p.path for p in published.get(f.file_id, [])),
                    published_at=max(
                        (
                            p.published_at
                            for p in published.get(f.file_id, [])
                            if p.published_at is not None
                        ),
                        default=None,
                    ),
                )
            )
        return rows

    async def run(self, stop: asyncio.Event) -> None:
        """Publish what is due every minute until ``stop``."""
        from engine.clock import wait_event

        while not stop.is_set():
            try:
                await asyncio.to_thread(self.publish)
            except Exception:
                log.exception("publishing failed; trying again in a minute")
            await wait_event(self.clock, stop, EVERY)

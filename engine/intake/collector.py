"""Collection (F7–F13): poll each source on its schedule, take stable files, import each once,
then move it to ``processed/`` or ``rejected/`` with its reports.

Order of work for one file, chosen so that a crash anywhere repeats nothing and loses nothing:
download to the spool (temporary name, size checked, renamed) -> import (one transaction that
also writes the ledger) -> publish the reports -> move the remote file -> mark the ledger entry
done. After a crash the file is still listed, the ledger says it was imported, and the
collector finishes the move without importing it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from engine.clock import Clock, local_today
from engine.config import Config, SourceSettings
from engine.intake.importer import ImportReport, import_file
from engine.intake.reports import error_report, report_stem
from engine.plugins import Plugins
from engine.plugins.format import Format, FormatContext, Verdict
from engine.plugins.source import RemoteFile, Source, SourceError, join, unsafe_reason
from engine.problems import Catalogue, Problem
from engine.store import Store

log = logging.getLogger(__name__)

MESSAGES = Catalogue(
    {
        "duplicate-file": (
            "F10",
            "this very file (same name and content) was already imported on {when}; it is not "
            "imported twice. To send it again, give it a new sequence number",
            "este mesmo arquivo (mesmo nome e conteúdo) já foi importado em {when}; ele não é "
            "importado duas vezes. Para enviá-lo de novo, use uma nova sequência",
        ),
        "unsafe-name": (
            "F13",
            "the remote name {name!r} is not a safe file name ({why}); rename it",
            "o nome remoto {name!r} não é um nome de arquivo seguro ({why}); renomeie-o",
        ),
    }
)


class _Hashing:
    """A file wrapper that hashes and counts what is written through it."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.handle.write(data)


@dataclass
class PollSummary:
    """What one poll of one source did."""

    source: str
    ok: bool = True
    error: str | None = None
    listed: int = 0
    reports: list[ImportReport] = field(default_factory=list)
    rejected_names: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    unstable: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    finished_moves: int = 0

    @property
    def imported(self) -> list[ImportReport]:
        return [r for r in self.reports if r.outcome == "imported"]

    @property
    def settled(self) -> bool:
        """Nothing left that another listing could take (no file still being written)."""
        return self.ok and not self.unstable


class Collector:
    """Polls sources and imports what they hold."""

    def __init__(
        self,
        store: Store,
        plugins: Plugins,
        config: Config,
        clock: Clock,
        *,
        on_report: Callable[[str, ImportReport], None] | None = None,
    ) -> None:
        self.store = store
        self.plugins = plugins
        self.config = config
        self.clock = clock
        self.on_report = on_report

    # -- scheduling --------------------------------------------------------------------------

    def next_poll(self, settings: SourceSettings, after: datetime) -> datetime:
        """F7: the next poll after ``after``: every interval, or the cron's next time (in the
        configured time zone)."""
        if settings.schedule.cron:
            from croniter import croniter

            local = after.astimezone(self.config.tz)
            nxt: datetime = croniter(settings.schedule.cron, local).get_next(datetime)
            return nxt.astimezone(after.tzinfo)
        every = settings.schedule.every or timedelta(minutes=2)
        return after + every

    def sources(self) -> list[SourceSettings]:
        return [s for s in self.config.sources.values() if s.enabled]

    async def poll(self, name: str) -> PollSummary:
        """Poll one source now (the blocking work runs in a worker thread)."""
        settings = self.config.sources[name]
        return await asyncio.to_thread(self.poll_blocking, settings)

    async def run_until_idle(
        self, *, settle: float = 2.0, max_rounds: int = 10
    ) -> list[PollSummary]:
        """Poll every source until no file is still being written (``run --until-idle``).

        A file must look the same on two listings (F8): a file seen for the first time is
        listed again after ``settle`` seconds.
        """
        results: dict[str, PollSummary] = {}
        pending = [s.name for s in self.sources()]
        for round_ in range(max_rounds):
            for name in pending:
                results[name] = await self.poll(name)
            pending = [n for n in pending if not results[n].settled and results[n].ok]
            if not pending or round_ == max_rounds - 1:
                break
            await self.clock.sleep(settle)
        return list(results.values())

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Poll each source on its own schedule until ``stop`` is set."""
        tasks = [asyncio.create_task(self._loop(s, stop)) for s in self.sources()]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with suppress(asyncio.CancelledError):
                    await task

    async def _loop(self, settings: SourceSettings, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.poll_blocking, settings)
            except Exception:  # a bug must not stop the other sources
                log.exception("polling source %s failed", settings.name)
            now = self.clock.now()
            await self.clock.sleep((self.next_poll(settings, now) - now).total_seconds())

    # -- one poll ----------------------------------------------------------------------------

    def _source(self, settings: SourceSettings) -> Source:
        cls = self.plugins.source_kinds()[settings.kind]
        source: Source = cls(settings)
        return source

    def _format(self, settings: SourceSettings) -> Format:
        cls = self.plugins.formats()[settings.format]
        now = self.clock.now()
        context = FormatContext(
            config=self.config,
            source=settings.name,
            today=local_today(self.clock, self.config.tz),
            now=now,
            words=self.plugins.channel_words(),
        )
        fmt: Format = cls(context)
        return fmt

    def poll_blocking(self, settings: SourceSettings) -> PollSummary:
        summary = PollSummary(settings.name)
        started = self.clock.now()
        source = self._source(settings)
        fmt = self._format(settings)
        try:
            with source.session():
                listing = source.list_files()
                summary.listed = len(listing)
                self._handle_listing(settings, source, fmt, listing, summary)
        except SourceError as exc:
            summary.ok = False
            summary.error = exc.describe()
            log.warning("source %s: %s", settings.name, summary.error)
        state = "ok" if summary.ok else "error"
        self.store.files.set_source_state(
            settings.name,
            status=state,
            message=summary.error,
            polled_at=started,
            next_poll_at=self.next_poll(settings, started),
        )
        return summary

    def _handle_listing(
        self,
        settings: SourceSettings,
        source: Source,
        fmt: Format,
        listing: list[RemoteFile],
        summary: PollSummary,
    ) -> None:
        name = settings.name
        safe = [f for f in listing if not unsafe_reason(f.path)]
        refused = [f for f in listing if unsafe_reason(f.path)]
        # F13: such a name is never used as a path; it is recorded escaped, and left alone
        shown = {ascii(f.path)[1:-1]: f for f in refused}
        observed = self.store.files.observe(
            name,
            [(f.path, f.size, f.mtime) for f in safe]
            + [(p, f.size, f.mtime) for p, f in shown.items()],
        )
        for escaped, f in shown.items():
            why = unsafe_reason(f.path) or ""
            summary.refused.append(escaped)
            log.warning("source %s: refused remote name %s: %s", name, escaped, why)
            self._status(
                name, escaped, "refused", (MESSAGES.make("unsafe-name", name=escaped, why=why),)
            )
        paths = {f.path for f in safe}
        by_path = {f.path: f for f in safe}
        for f in safe:
            obs = observed.get(f.path)
            if obs is None or obs.status in ("imported", "rejected", "duplicate"):
                continue
            verdict = fmt.inspect(f.path, paths)
            if verdict.action == "ignore":
                self._status(name, f.path, verdict.status, verdict.problems)
                continue
            if verdict.action == "wait":
                log.debug(
                    "source %s: %s waits for its day: %s",
                    name,
                    f.path,
                    "; ".join(p.message for p in verdict.problems),
                    extra=_file_fields("file.waiting", name, f.path, list(verdict.problems)),
                )
                summary.waiting.append(f.path)
                self._status(name, f.path, verdict.status, verdict.problems)
                continue
            group = [f.path, *verdict.companions]
            if any(
                observed[p].stable_listings < settings.stable_listings
                for p in group
                if p in observed
            ):
                summary.unstable.append(f.path)
                self._status(name, f.path, "unstable")
                continue
            if verdict.action == "reject":
                self._reject_by_name(settings, source, f, verdict, summary)
                continue
            self._take(
                settings,
                source,
                fmt,
                f,
                [by_path[c] for c in verdict.companions if c in by_path],
                summary,
            )

    def _status(
        self,
        source: str,
        path: str,
        status: str,
        problems: tuple[Problem, ...] = (),
        file_id: int | None = None,
    ) -> None:
        first = problems[0] if problems else None
        self.store.files.set_status(
            source,
            path,
            status,
            code=first.code if first else None,
            message="\n".join(p.message for p in problems) or None,
            file_id=file_id,
        )

    # -- outcomes ----------------------------------------------------------------------------

    def _spool(self, settings: SourceSettings) -> Path:
        folder = self.config.engine.spool_dir / settings.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _download(
        self, settings: SourceSettings, source: Source, f: RemoteFile
    ) -> tuple[Path, str] | None:
        """F9: into the spool under a temporary name, size checked, then renamed to a name
        derived from the content (F13: never the remote name). None when the file changed."""
        spool = self._spool(settings)
        temp = spool / f".{uuid.uuid4().hex}.part"
        try:
            with temp.open("wb") as handle:
                hashing = _Hashing(handle)
                source.download(f.path, hashing)  # type: ignore[arg-type]
            if f.size >= 0 and hashing.size != f.size:
                log.info(
                    "source %s: %s changed while downloading; retried later", settings.name, f.path
                )
                temp.unlink(missing_ok=True)
                return None
            digest = hashing.sha.hexdigest()
            final = spool / f"{digest[:16]}-{uuid.uuid4().hex[:8]}.dat"
            temp.rename(final)
            return final, digest
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    def _take(
        self,
        settings: SourceSettings,
        source: Source,
        fmt: Format,
        f: RemoteFile,
        companions: list[RemoteFile],
        summary: PollSummary,
    ) -> None:
        downloaded = self._download(settings, source, f)
        if downloaded is None:
            summary.unstable.append(f.path)
            self._status(settings.name, f.path, "unstable")
            return
        spool_file, digest = downloaded
        local_companions: dict[str, Path] = {}
        spooled = [spool_file]
        try:
            for companion in companions:
                got = self._download(settings, source, companion)
                if got is None:
                    summary.unstable.append(f.path)
                    self._status(settings.name, f.path, "unstable")
                    return
                local_companions[companion.path] = got[0]
                spooled.append(got[0])
            report = import_file(
                self.store,
                fmt,
                source=settings.name,
                path=f.path,
                spool=spool_file,
                size=f.size,
                mtime=f.mtime,
                sha256=digest,
                companions=local_companions,
                actor=f"collector:{settings.name}",
            )
            if report.rejected_csv is not None:
                spooled.append(report.rejected_csv)
            summary.reports.append(report)
            if self.on_report is not None:
                self.on_report(settings.name, report)
            self._settle(settings, source, f, [c.path for c in companions], report)
        finally:
            for path in spooled:
                path.unlink(missing_ok=True)

    def _settle(
        self,
        settings: SourceSettings,
        source: Source,
        f: RemoteFile,
        companions: list[str],
        report: ImportReport,
    ) -> None:
        """Publish the reports, move the file (and its companions), mark the ledger done."""
        name = settings.name
        if report.outcome == "duplicate":
            entry = self.store.files.get(report.file_id) if report.file_id else None
            if entry is not None and not entry.remote_done:
                # imported before a crash (or by another node) but never moved: finish that
                self._move(settings, source, f.path, companions, settings.processed_dir, [])
                self.store.files.mark_remote_done(entry.id)
                self._status(name, f.path, "imported", file_id=entry.id)
                return
            when = (
                entry.created_at.astimezone(self.config.tz).strftime("%d/%m/%Y %H:%M")
                if entry
                else "?"
            )
            problem = MESSAGES.make("duplicate-file", when=when)
            report.problems = [problem]
            file_id = self.store.files.record_rejection(
                source=name,
                path=f.path,
                size=f.size,
                mtime=f.mtime,
                sha256="",
                code=problem.code,
                message=problem.message,
            )
            log.warning(
                "source %s: %s refused: %s",
                name,
                f.path,
                problem.message,
                extra=_file_fields("file.duplicate", name, f.path, [problem]),
            )
            self._publish_rejection(settings, source, f.path, companions, [problem], None)
            self.store.files.mark_remote_done(file_id)
            self._status(name, f.path, "duplicate", (problem,), file_id)
            return
        assert report.file_id is not None
        if report.outcome == "imported":
            log.info(
                "source %s: imported %s: %s rows, %s contacts (%s new)%s%s",
                name,
                f.path,
                report.rows,
                report.contacts,
                report.new_contacts,
                f", {sum(report.rejected_rows.values())} rows rejected"
                if report.rejected_rows
                else "",
                f", campaign {report.campaign_id} ({report.channel}, {report.recipients} "
                "recipients)"
                if report.campaign_id is not None
                else "",
                extra=_file_fields(
                    "file.imported",
                    name,
                    f.path,
                    [],
                    rows=report.rows,
                    contacts=report.contacts,
                    rows_rejected=dict(report.rejected_rows),
                    campaign_id=report.campaign_id,
                    recipients=report.recipients,
                ),
            )
            extra = []
            if report.rejected_csv is not None:
                extra.append((report.rejected_csv, ".rejeitados.csv"))
            self._move(settings, source, f.path, companions, settings.processed_dir, extra)
            self.store.files.mark_remote_done(report.file_id)
            self._status(name, f.path, "imported", file_id=report.file_id)
        else:
            log.warning(
                "source %s: rejected %s: %s",
                name,
                f.path,
                "; ".join(p.message for p in report.problems),
                extra=_file_fields("file.rejected", name, f.path, report.problems),
            )
            self._publish_rejection(
                settings, source, f.path, companions, report.problems, report.rejected_csv
            )
            self.store.files.mark_remote_done(report.file_id)
            self._status(name, f.path, "rejected", tuple(report.problems), report.file_id)

    def _reject_by_name(
        self,
        settings: SourceSettings,
        source: Source,
        f: RemoteFile,
        verdict: Verdict,
        summary: PollSummary,
    ) -> None:
        problems = list(verdict.problems)
        file_id = self.store.files.record_rejection(
            source=settings.name,
            path=f.path,
            size=f.size,
            mtime=f.mtime,
            sha256="",
            code=problems[0].code,
            message="\n".join(p.message for p in problems),
        )
        summary.rejected_names.append(f.path)
        log.warning(
            "source %s: rejected %s by its name: %s",
            settings.name,
            f.path,
            "; ".join(p.message for p in problems),
            extra=_file_fields("file.rejected", settings.name, f.path, problems),
        )
        self._publish_rejection(settings, source, f.path, list(verdict.companions), problems, None)
        self.store.files.mark_remote_done(file_id)
        self._status(settings.name, f.path, "rejected", tuple(problems), file_id)

    def _publish_rejection(
        self,
        settings: SourceSettings,
        source: Source,
        path: str,
        companions: list[str],
        problems: list[Problem],
        rejected_csv: Path | None,
    ) -> None:
        text = error_report(path, problems, self.clock.now(), self.config.tz)
        spool = self._spool(settings)
        report = spool / f".{uuid.uuid4().hex}.erro.txt"
        report.write_text(text, encoding="utf-8")
        extra = [(report, ".erro.txt")]
        if rejected_csv is not None:
            extra.append((rejected_csv, ".rejeitados.csv"))
        try:
            self._move(settings, source, path, companions, settings.rejected_dir, extra)
        finally:
            report.unlink(missing_ok=True)

    def _move(
        self,
        settings: SourceSettings,
        source: Source,
        path: str,
        companions: list[str],
        folder: str,
        reports: list[tuple[Path, str]],
    ) -> None:
        """Move ``path`` under ``folder`` keeping its subfolder (a name already taken gets a
        numbered twin), with its companions beside it and the reports named after it."""
        if not source.writable:
            return  # a read-only source: the file stays; the ledger keeps it imported once
        target = join(folder, path)
        counter = 1
        while True:
            try:
                candidate = target if counter == 1 else _numbered(target, counter)
                if source.exists(candidate):
                    raise FileExistsError(candidate)
                for local, suffix in reports:
                    with local.open("rb") as data:
                        source.upload(data, report_stem(candidate) + suffix)
                source.move(path, candidate)
                log.info(
                    "source %s: %s moved to %s",
                    settings.name,
                    path,
                    candidate,
                    extra={
                        "event": "file.moved",
                        "source": settings.name,
                        "path": path,
                        "moved_to": candidate,
                        "reports": [report_stem(candidate) + suffix for _, suffix in reports],
                    },
                )
                break
            except FileExistsError:
                counter += 1
                if counter > 1000:  # pragma: no cover - a full folder
                    raise SourceError(
                        "permission", f"cannot find a free name for {target}"
                    ) from None
            except SourceError as exc:
                if exc.category == "not-found":
                    return  # moved already (another node, or the customer took it back)
                raise
        for companion in companions:
            new = report_stem(candidate) + "." + companion.rsplit(".", 1)[-1]
            with suppress(FileExistsError):
                try:
                    source.move(companion, new)
                except SourceError as exc:
                    if exc.category != "not-found":
                        raise


def _file_fields(
    event: str, source: str, path: str, problems: list[Problem], **more: object
) -> dict[str, object]:
    """The ``extra`` fields of a log record about one file (JSON logs carry them)."""
    fields: dict[str, object] = {"event": event, "source": source, "path": path}
    if problems:
        fields["rules"] = [p.rule for p in problems]
        fields["codes"] = [p.code for p in problems]
    return fields | more


def _numbered(path: str, n: int) -> str:
    """``processed/a.csv`` -> ``processed/a.2.csv``."""
    folder, _, leaf = path.rpartition("/")
    stem, dot, ext = leaf.rpartition(".")
    leaf = f"{stem}.{n}.{ext}" if dot else f"{leaf}.{n}"
    return f"{folder}/{leaf}" if folder else leaf

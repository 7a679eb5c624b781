"""Collection (F7–F13): poll each source on its schedule, take stable files, import each once,
then move it to ``processed/`` or ``rejected/`` with its reports.

Order of work for one file, chosen so that a crash anywhere repeats nothing and loses nothing:
download to the spool (temporary name, size checked, renamed) -> import (one transaction that
also writes the ledger) -> publish the reports -> move the remote file -> mark the ledger entry
done. After a crash the file is still listed, the ledger says it was imported, and the
collector finishes the move without importing it again.

Faults stay with their file: a file that cannot be moved or reported on (a name too long, a
symbolic link in the way, a folder that is a file) is marked ``error`` with the reason and
retried at the next poll, and the files after it are still taken; its ledger entry is reused,
never repeated. A failed connection ends the poll (the next one starts over). A full spool
disk or a full or unreachable database ends it with one line (``faults.operational``).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

from engine.clock import Clock, local_today
from engine.config import Config, SourceSettings
from engine.intake.faults import Unavailable, operational
from engine.intake.importer import ImportReport, import_file
from engine.intake.reports import error_report, fitted, numbered, report_stem
from engine.plugins import Plugins
from engine.plugins.format import Format, FormatContext, Verdict
from engine.plugins.source import RemoteFile, Source, SourceError, join, unsafe_reason
from engine.problems import Catalogue, Problem
from engine.store import Store
from engine.store.files import Observation

log = logging.getLogger(__name__)

MESSAGES = Catalogue(
    {
        "duplicate-file": (
            "F10",
            "this very file (same name and content) was already imported on {when}; it is not "
            "imported twice. To send it again, give it a new name (a mailing: a new sequence "
            "number)",
            "este mesmo arquivo (mesmo nome e conteúdo) já foi importado em {when}; ele não é "
            "importado duas vezes. Para enviá-lo de novo, dê a ele um novo nome (num mailing, "
            "uma nova sequência)",
        ),
        "unsafe-name": (
            "F13",
            "the remote name {name!r} is not a safe file name ({why}); rename it",
            "o nome remoto {name!r} não é um nome de arquivo seguro ({why}); renomeie-o",
        ),
        "symlink": (
            "F13",
            "`{name}` is a symbolic link: disparo never follows links (one could lead outside "
            "the source's folder), so it is left where it is; put the file itself (or a real "
            "folder) there",
            "`{name}` é um link simbólico: o disparo nunca segue links (um link pode levar "
            "para fora da pasta da origem), então ele fica onde está; coloque ali o próprio "
            "arquivo (ou uma pasta de verdade)",
        ),
        "unreadable": (
            "F13",
            "`{name}` cannot be read ({why}), so nothing in it is taken; if it is a link to "
            "somewhere outside the source's folder, put the files themselves there",
            "`{name}` não pode ser lido ({why}), então nada dele é recebido; se for um link "
            "para fora da pasta da origem, coloque ali os próprios arquivos",
        ),
        "cannot-move": (
            "F11",
            "the file was {done} but could not be moved to `{folder}/` ({why}); it stays here "
            "and the move is retried at every poll — nothing is imported twice",
            "o arquivo foi {done_pt}, mas não pôde ser movido para `{folder}/` ({why}); ele "
            "fica aqui e a movimentação é tentada de novo a cada varredura — nada é importado "
            "duas vezes",
        ),
        "cannot-read": (
            "F9",
            "the file could not be downloaded ({why}); it is retried at the next poll",
            "o arquivo não pôde ser baixado ({why}); ele é tentado de novo na próxima varredura",
        ),
        "internal-error": (
            "F12",
            "an unexpected error stopped the work on this file ({error}); nothing of it was "
            "imported, it is retried at the next poll, and the engine's log has the details",
            "um erro inesperado interrompeu o trabalho com este arquivo ({error}); nada dele "
            "foi importado, ele é tentado de novo na próxima varredura, e o log do motor tem "
            "os detalhes",
        ),
    }
)

#: failures of the connection itself: the session is gone, the poll ends (the next one
#: reconnects); any other ``SourceError`` is about one file, which waits while the rest go on
SESSION_FAILURES = frozenset(
    {"dns", "refused", "timeout", "tls", "hostkey", "auth", "private-host", "lost", "config"}
)
#: the folder of a source's spool holding the rejected-rows reports of imported files until
#: their move is done (a failed move must not lose them)
PENDING = "pending"
#: files this big say how far their import got (the file's status and the log): a million
#: rows take a minute or more
PROGRESS_BYTES = 8 << 20
#: seconds between two such reports (wall time: it is what an operator watching waits)
PROGRESS_EVERY = 10.0
#: the names the collector gives its files in the spool: downloads in progress, downloads,
#: their rejected-rows reports, error reports being published
_SPOOLED = re.compile(
    r"\.[0-9a-f]{32}\.part|[0-9a-f]{16}-[0-9a-f]{8}\.dat(\.rejeitados\.csv)?"
    r"|\.[0-9a-f]{32}\.erro\.txt"
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
    #: files that could not be moved or read, waiting for the next poll
    errors: list[str] = field(default_factory=list)
    finished_moves: int = 0
    #: seconds until the youngest file waiting for its minimum age (F8) may be taken
    wait: float | None = None

    def wait_at_least(self, seconds: float) -> None:
        self.wait = seconds if self.wait is None else min(self.wait, seconds)

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
        listed again after ``settle`` seconds, or once it is as old as its source's
        ``min_age`` when that is later.
        """
        results: dict[str, PollSummary] = {}
        pending = [s.name for s in self.sources()]
        for round_ in range(max_rounds):
            for name in pending:
                results[name] = await self.poll(name)
            pending = [n for n in pending if not results[n].settled and results[n].ok]
            if not pending or round_ == max_rounds - 1:
                break
            waits = [w for n in pending if (w := results[n].wait) is not None]
            await self.clock.sleep(max([settle, *waits]))
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
            with self._spool_lock(settings), source.session():
                listing = source.list_files()
                summary.listed = len(listing)
                self._handle_listing(settings, source, fmt, listing, summary)
        except SourceError as exc:
            summary.ok = False
            summary.error = exc.describe()
            log.warning("source %s: %s", settings.name, summary.error)
        except Unavailable as exc:
            summary.ok = False
            summary.error = str(exc)
            log.warning("source %s: %s", settings.name, summary.error)
        except Exception as exc:
            line = operational(exc, self._spool_path(settings))
            if line is None:
                raise
            summary.ok = False
            summary.error = line
            log.warning("source %s: %s", settings.name, line)
        state = "ok" if summary.ok else "error"
        try:
            self.store.files.set_source_state(
                settings.name,
                status=state,
                message=summary.error,
                polled_at=started,
                next_poll_at=self.next_poll(settings, started),
            )
        except Exception as exc:
            line = operational(exc)
            if line is None:
                raise
            log.warning("source %s: recording the poll: %s", settings.name, line)
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
        links = [f for f in safe if f.symlink or f.unreadable]
        safe = [f for f in safe if not (f.symlink or f.unreadable)]
        # F13: such a name is never used as a path; it is recorded escaped, and left alone
        shown = {ascii(f.path)[1:-1]: f for f in refused}
        observed = self.store.files.observe(
            name,
            [(f.path, f.size, f.mtime) for f in safe + links]
            + [(p, f.size, f.mtime) for p, f in shown.items()],
        )
        for escaped, f in shown.items():
            why = unsafe_reason(f.path) or ""
            summary.refused.append(escaped)
            log.warning("source %s: refused remote name %s: %s", name, escaped, why)
            self._status(
                name, escaped, "refused", (MESSAGES.make("unsafe-name", name=escaped, why=why),)
            )
        for f in links:
            summary.refused.append(f.path)
            refusal = (
                MESSAGES.make("unreadable", name=f.path, why=f.unreadable)
                if f.unreadable
                else MESSAGES.make("symlink", name=f.path)
            )
            self._status(name, f.path, "refused", (refusal,))
        paths = {f.path for f in safe}
        by_path = {f.path: f for f in safe}
        taken: set[str] = set()  # companions taken along with their file in this poll
        for f in safe:
            obs = observed.get(f.path)
            if obs is None or obs.status in ("imported", "rejected", "duplicate"):
                continue
            if f.path in taken:
                continue
            try:
                taken.update(
                    self._consider(settings, source, fmt, f, observed, paths, by_path, summary)
                )
            except SourceError as exc:
                if exc.category in SESSION_FAILURES:
                    raise
                wrong: Problem | None = None
                if isinstance(exc, _CannotMove):
                    wrong = exc.problem
                elif exc.category != "not-found":  # (not found: gone while being read)
                    wrong = MESSAGES.make("cannot-read", why=str(exc))
                self._file_error(name, f.path, wrong, summary)
            except Exception as exc:
                line = operational(exc, self._spool_path(settings))
                if line is not None:
                    raise Unavailable(line) from None
                log.exception("source %s: working on %s failed", name, f.path)
                error = f"{type(exc).__name__}: {exc}"
                self._file_error(
                    name, f.path, MESSAGES.make("internal-error", error=error), summary
                )

    def _consider(
        self,
        settings: SourceSettings,
        source: Source,
        fmt: Format,
        f: RemoteFile,
        observed: dict[str, Observation],
        paths: set[str],
        by_path: dict[str, RemoteFile],
        summary: PollSummary,
    ) -> tuple[str, ...]:
        """What to do with one listed file, and do it; returns the companions taken with it
        (the listing's other files that went where it went)."""
        name = settings.name
        verdict = fmt.inspect(f.path, paths)
        if verdict.action == "ignore":
            self._status(name, f.path, verdict.status, verdict.problems)
            return ()
        group = [observed[p] for p in (f.path, *verdict.companions) if p in observed]
        if verdict.action == "wait":
            if not self._overdue(group, verdict):
                log.debug(
                    "source %s: %s waits: %s",
                    name,
                    f.path,
                    "; ".join(p.message for p in verdict.problems),
                    extra=_file_fields("file.waiting", name, f.path, list(verdict.problems)),
                )
                summary.waiting.append(f.path)
                self._status(name, f.path, verdict.status, verdict.problems)
                return ()
            # waited too long (a triplet send still incomplete): reported, its files rejected
            verdict = Verdict("reject", "rejected", verdict.give_up, verdict.companions)
        if not self._stable(settings, source, group, summary):
            summary.unstable.append(f.path)
            self._status(name, f.path, "unstable")
            return ()
        if verdict.action == "reject":
            self._reject_by_name(settings, source, f, verdict, summary)
            return verdict.companions
        self._take(
            settings,
            source,
            fmt,
            f,
            [by_path[c] for c in verdict.companions if c in by_path],
            summary,
        )
        return verdict.companions

    def _overdue(self, group: list[Observation], verdict: Verdict) -> bool:
        """A ``wait`` verdict's ``give_up_after`` has passed since the group was first seen."""
        if verdict.give_up_after is None or not verdict.give_up:
            return False
        first = min((o.first_seen_at for o in group), default=None)
        return first is not None and self.clock.now() - first >= verdict.give_up_after

    def _stable(
        self,
        settings: SourceSettings,
        source: Source,
        group: list[Observation],
        summary: PollSummary,
    ) -> bool:
        """F8: every file of the group looked the same on ``stable_listings`` listings, and
        for at least the source's ``min_age`` (on this engine's clock: the server's may be
        off). A writer pausing longer than the time between two listings still has to pause
        longer than ``min_age`` to be taken for done."""
        now = self.clock.now()
        ready = True
        for obs in group:
            if obs.stable_listings < settings.stable_listings:
                ready = False
            left = (obs.unchanged_since + source.min_age - now).total_seconds()
            if left > 0:
                ready = False
                summary.wait_at_least(left)
        return ready

    def _file_error(
        self, source: str, path: str, problem: Problem | None, summary: PollSummary
    ) -> None:
        """The file waits for the next poll (None: it went away while being read)."""
        if problem is None:
            summary.unstable.append(path)
            self._status(source, path, "unstable")
            return
        summary.errors.append(path)
        log.warning("source %s: %s: %s", source, path, problem.message)
        self._status(source, path, "error", (problem,))

    def _statuses(
        self,
        source: str,
        paths: list[str],
        status: str,
        problems: tuple[Problem, ...] = (),
        file_id: int | None = None,
    ) -> None:
        """A file's outcome, and its companions' (they went where it went)."""
        for path in paths:
            self._status(source, path, status, problems, file_id)

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

    def _spool_path(self, settings: SourceSettings) -> Path:
        return self.config.engine.spool_dir / settings.name

    def _spool(self, settings: SourceSettings) -> Path:
        folder = self._spool_path(settings)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextmanager
    def _spool_lock(self, settings: SourceSettings) -> Iterator[Path]:
        """The source's spool, for this poll only: a lock (``flock`` on the folder itself)
        keeps another engine on this machine out of it meanwhile, so whatever is in it when
        the lock is taken was left by a process that died (kill -9, power loss): removed."""
        folder = self._spool(settings)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._clean_spool(settings.name, folder)
            yield folder
        finally:
            os.close(fd)  # releases the lock

    def _clean_spool(self, source: str, folder: Path) -> None:
        """Remove the downloads, temporary reports and rejected-rows reports a process that
        died left; keep the reports of imported files still waiting for their move."""
        removed = 0
        for entry in folder.iterdir():
            # only the collector's own names: the publishing service writes here too
            if _SPOOLED.fullmatch(entry.name) and entry.is_file():
                entry.unlink(missing_ok=True)
                removed += 1
        pending = folder / PENDING
        if pending.is_dir():
            waiting = {e.id for e in self.store.files.pending_remote(source)}
            for entry in pending.iterdir():
                file_id = entry.name.split(".", 1)[0]
                if not (file_id.isdigit() and int(file_id) in waiting):
                    entry.unlink(missing_ok=True)
                    removed += 1
        if removed:
            log.info(
                "source %s: removed %d file(s) left in the spool by a run that died",
                source,
                removed,
            )

    def _pending_report(self, settings: SourceSettings, file_id: int) -> Path:
        return self._spool(settings) / PENDING / f"{file_id}.rejeitados.csv"

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
                progress=self._progress(settings.name, f) if f.size >= PROGRESS_BYTES else None,
            )
            if report.rejected_csv is not None:
                spooled.append(report.rejected_csv)
                if report.outcome == "imported" and report.file_id is not None:
                    # kept until the file is moved: a failed move must not lose it
                    keep = self._pending_report(settings, report.file_id)
                    keep.parent.mkdir(exist_ok=True)
                    report.rejected_csv = report.rejected_csv.replace(keep)
            summary.reports.append(report)
            if self.on_report is not None:
                self.on_report(settings.name, report)
            self._settle(settings, source, fmt, f, [c.path for c in companions], report)
        finally:
            for path in spooled:
                path.unlink(missing_ok=True)
            # the importer's rejected-rows report, when the import did not finish
            spool_file.with_name(spool_file.name + ".rejeitados.csv").unlink(missing_ok=True)

    def _progress(self, source: str, f: RemoteFile) -> Callable[[int], None]:
        """How far a big file's import got (bytes read), said every ``PROGRESS_EVERY``
        seconds: the file's status (``importing``, shown by ``disparo sources`` and the UI)
        and a log line."""
        last = time.monotonic()

        def report(done: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last < PROGRESS_EVERY:
                return
            last = now
            share = min(99, done * 100 // max(f.size, 1))
            message = f"{share}% read ({done:,} of {f.size:,} bytes)"
            log.info("source %s: importing %s: %s", source, f.path, message)
            self.store.files.set_status(source, f.path, "importing", message=message)

        return report

    def _settle(
        self,
        settings: SourceSettings,
        source: Source,
        fmt: Format,
        f: RemoteFile,
        companions: list[str],
        report: ImportReport,
    ) -> None:
        """Publish the reports, move the file (and its companions), mark the ledger done."""
        name = settings.name
        if report.outcome == "duplicate":
            entry = self.store.files.get(report.file_id) if report.file_id else None
            if entry is not None and not entry.remote_done:
                # imported before a crash (or by another node) but never moved: finish that,
                # with the rejected-rows report kept for it
                kept = self._pending_report(settings, entry.id)
                extra = [(kept, ".rejeitados.csv")] if kept.is_file() else []
                self._settle_move(settings, source, f, companions, "imported", extra)
                self.store.files.mark_remote_done(entry.id)
                kept.unlink(missing_ok=True)
                self._statuses(name, [f.path, *companions], "imported", file_id=entry.id)
                return
            when = (
                entry.created_at.astimezone(self.config.tz).strftime("%d/%m/%Y %H:%M")
                if entry
                else "?"
            )
            problem = (
                fmt.duplicate_problem(f.path, entry.created_at) if entry else None
            ) or MESSAGES.make("duplicate-file", when=when)
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
            self._statuses(name, [f.path, *companions], "duplicate", (problem,), file_id)
            return
        assert report.file_id is not None
        if report.outcome == "imported":
            log.info(
                "source %s: imported %s: %s rows, %s contacts (%s new)%s%s%s",
                name,
                f.path,
                report.rows,
                report.contacts,
                report.new_contacts,
                f", {sum(report.rejected_rows.values())} rows rejected"
                if report.rejected_rows
                else "",
                "".join(
                    f", {n} {what}"
                    for n, what in (
                        (report.removed, f"left list {report.wallet}"),
                        (report.opted_out, "addresses opted out"),
                    )
                    if n
                ),
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
            self._settle_move(settings, source, f, companions, "imported", extra)
            self.store.files.mark_remote_done(report.file_id)
            if report.rejected_csv is not None:
                report.rejected_csv.unlink(missing_ok=True)
            self._statuses(name, [f.path, *companions], "imported", file_id=report.file_id)
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
            self._statuses(
                name, [f.path, *companions], "rejected", tuple(report.problems), report.file_id
            )

    def _settle_move(
        self,
        settings: SourceSettings,
        source: Source,
        f: RemoteFile,
        companions: list[str],
        done: str,
        reports: list[tuple[Path, str]],
    ) -> None:
        """Move an imported file to ``processed/``; a failure that is the file's (not the
        connection's) says so in plain words and leaves the file for the next poll."""
        folder = settings.processed_dir
        try:
            self._move(settings, source, f.path, companions, folder, reports)
        except SourceError as exc:
            if exc.category in SESSION_FAILURES:
                raise
            raise _CannotMove(folder, done, str(exc)) from None

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
        self._statuses(
            settings.name, [f.path, *verdict.companions], "rejected", tuple(problems), file_id
        )

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
        except SourceError as exc:
            if exc.category in SESSION_FAILURES:
                raise
            raise _CannotMove(settings.rejected_dir, "rejected", str(exc)) from None
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
        numbered twin), with its companions beside it and the reports named after it. Every
        name written fits the source's ``name_max``."""
        if not source.writable:
            return  # a read-only source: the file stays; the ledger keeps it imported once
        limit = source.name_max
        target = join(folder, path)
        for counter in range(1, 1001):
            candidate = target if counter == 1 else numbered(target, counter, limit)
            moves = [
                (c, _companion_target(path, c, candidate, folder, counter, limit))
                for c in companions
            ]
            try:
                if source.exists(candidate) or any(source.exists(new) for _, new in moves):
                    continue
                for local, suffix in reports:
                    with local.open("rb") as data:
                        source.upload(data, fitted(candidate, suffix, limit))
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
                        "reports": [fitted(candidate, suffix, limit) for _, suffix in reports],
                    },
                )
                break
            except FileExistsError:
                continue
            except SourceError as exc:
                if exc.category == "not-found":
                    return  # moved already (another node, or the customer took it back)
                raise
        else:  # pragma: no cover - a full folder
            raise SourceError("io", f"cannot find a free name for {target}")
        for companion, new in moves:
            with suppress(FileExistsError):
                try:
                    source.move(companion, new)
                except SourceError as exc:
                    if exc.category != "not-found":
                        raise


def _companion_target(
    path: str, companion: str, candidate: str, folder: str, counter: int, limit: int
) -> str:
    """Where a companion goes when its file goes to ``candidate``: a ``<stem>.html`` beside
    ``<stem>.csv`` is named after where the file went (``a.2.csv`` -> ``a.2.html``); another
    (a triplet's CONF and HTML beside its MAIL) keeps its own name under ``folder``, numbered
    like the file when the file's name was taken."""
    stem = report_stem(path).rpartition("/")[2]
    if companion.rpartition("/")[2].lower().startswith(stem.lower() + "."):
        return fitted(candidate, "." + companion.rsplit(".", 1)[-1], limit)
    own = join(folder, companion)
    return own if counter == 1 else numbered(own, counter, limit)


class _CannotMove(SourceError):
    """A file's move (or its reports) failed for a reason of its own: it waits."""

    def __init__(self, folder: str, done: str, why: str) -> None:
        super().__init__("io", why)
        done_pt = {"imported": "importado", "rejected": "recusado"}.get(done, done)
        self.problem = MESSAGES.make(
            "cannot-move", folder=folder.strip("/"), done=done, done_pt=done_pt, why=why
        )


def _file_fields(
    event: str, source: str, path: str, problems: list[Problem], **more: object
) -> dict[str, object]:
    """The ``extra`` fields of a log record about one file (JSON logs carry them)."""
    fields: dict[str, object] = {"event": event, "source": source, "path": path}
    if problems:
        fields["rules"] = [p.rule for p in problems]
        fields["codes"] = [p.code for p in problems]
    return fields | more

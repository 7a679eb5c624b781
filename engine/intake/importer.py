"""Import one downloaded file: the format reads it, the store writes it in one transaction (F12).

Blocking (parsing, hygiene and SQLite writes): the collector runs it in a worker thread.

A big file on SQLite is read by two processes (issue 16, goal 4): when the format can split it
(``ImportSpec.split``), a second process parses the tail and stages its rows in a SQLite file
of its own while this one parses and stages the head; the session adopts the tail's rows once
both are done, and the commit is the same single transaction. The rejected rows, their line
numbers and messages are the same as in one process; a failed second process fails the import
with its error, and nothing is imported.
"""

from __future__ import annotations

import gc
import hashlib
import os
import pickle
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from engine.intake.faults import refused_data
from engine.intake.reports import RejectedRows
from engine.intake.tail import CONTACT_FIELDS as CONTACT_FIELDS
from engine.intake.tail import STAGING_GC_THRESHOLD, TailDone, tail_process
from engine.lifeline import forkserver
from engine.plugins.format import (
    FileRejected,
    Format,
    ImportSpec,
    RejectedRow,
    RowsTail,
)
from engine.problems import Catalogue, Problem
from engine.store import Store
from engine.store.imports import (
    CommitFacts,
    DuplicateFile,
    DuplicateSequence,
    EmptyAudience,
    FileFacts,
    ImportSession,
    KeptRow,
    MailingFacts,
    StagedRow,
)

#: files from this size on (bytes) are read by two processes on SQLite when the format can
#: split them: below it, starting the second process costs more than it saves
SPLIT_BYTES = 8 << 20
#: the share of a split file's bytes the second process reads: it starts light (~0.15 s of
#: CPU, engine.intake.tail) and stages a row a little faster than the head (no session), so
#: halves finish together (measured at 400,000 rows: 0.35 left the head staging ~1.5 s
#: longer than the tail; 0.6 made the head wait ~1 s for the tail)
TAIL_SHARE = 0.5

MESSAGES = Catalogue(
    {
        "empty-file": (
            "N22",
            "the file has a header but no rows",
            "o arquivo tem cabeçalho, mas nenhuma linha",
        ),
        "no-valid-rows": (
            "N24",
            "none of the file's {rows} row(s) can be used (see {report}); fix them and send "
            "the file again",
            "nenhuma das {rows} linha(s) do arquivo pode ser usada (veja {report}); corrija-as "
            "e envie o arquivo de novo",
        ),
        "refused-data": (
            "F12",
            "the database refused the file's data ({error}); nothing of it was imported. The "
            "file is probably damaged or not CSV text: check it and send it again",
            "o banco de dados recusou os dados do arquivo ({error}); nada dele foi importado. "
            "O arquivo provavelmente está danificado ou não é um texto CSV: confira-o e envie "
            "de novo",
        ),
        "no-recipients": (
            "D3",
            "no row has the address the channel needs after merging and suppressions",
            "nenhuma linha tem o endereço que o canal precisa depois de unificar e aplicar "
            "as supressões",
        ),
    }
)

Outcome = Literal["imported", "rejected", "duplicate"]


@dataclass
class ImportReport:
    """What happened to one file (the summary of ``disparo import`` and of each collected file)."""

    path: str
    outcome: Outcome
    problems: list[Problem] = field(default_factory=list)
    #: the format that read the file (None: it was refused before reading)
    format: str | None = None
    file_id: int | None = None
    wallet: str | None = None
    rows: int = 0
    imported_rows: int = 0
    contacts: int = 0
    new_contacts: int = 0
    merged: int = 0
    rejected_rows: Counter[str] = field(default_factory=Counter)
    recipients: int = 0
    pending: int = 0
    suppressed: int = 0
    skipped: int = 0
    duplicate_addresses: int = 0
    batches: int = 0
    campaign_id: int | None = None
    channel: str | None = None
    held_reason: str | None = None
    #: the local ``<name>.rejeitados.csv`` to publish, when rows were rejected
    rejected_csv: Path | None = None
    #: where the collector moved the file and published its reports (paths on the source)
    published: list[str] = field(default_factory=list)
    #: a list sync in replace mode: members who left the list (S1)
    removed: int | None = None
    #: a file with an opt-out column: addresses it suppressed (new suppressions, S1)
    opted_out: int | None = None


def file_digest(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def import_file(
    store: Store,
    fmt: Format,
    *,
    source: str,
    path: str,
    spool: Path,
    size: int,
    mtime: datetime | None,
    sha256: str,
    companions: Mapping[str, Path] | None = None,
    actor: str = "collector",
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``spool`` (the local copy of ``path`` on ``source``) once, whole or not at all."""
    dedupe_key = fmt.dedupe_key(path, sha256)
    earlier = store.files.imported(source, dedupe_key)
    if earlier is not None:
        return ImportReport(path, "duplicate", file_id=earlier.id)

    def reject(problems: list[Problem], report: ImportReport | None = None) -> ImportReport:
        """Record the file as rejected (without a dedupe key: it may be sent again, fixed)."""
        report = report or ImportReport(path, "rejected")
        report.outcome = "rejected"
        report.problems = problems
        report.file_id = store.files.record_rejection(
            source=source,
            path=path,
            size=size,
            mtime=mtime,
            sha256=sha256,
            code=problems[0].code,
            message="\n".join(p.message for p in problems),
            rows_total=report.rows,
            rows_rejected=sum(report.rejected_rows.values()),
        )
        return report

    try:
        spec = fmt.prepare(path, spool, companions or {})
    except FileRejected as exc:
        return reject(exc.problems)
    report = ImportReport(path, "imported", wallet=spec.wallet, format=fmt.name)
    if spec.campaign is not None:
        report.channel = spec.campaign.channel
        report.held_reason = spec.campaign.status_reason
    try:
        return _import(
            store,
            spec,
            report,
            reject,
            source,
            path,
            spool,
            size,
            mtime,
            sha256,
            dedupe_key,
            actor,
            progress,
        )
    except Exception as exc:
        # data the database refuses is the file's own problem: retrying would fail forever
        why = refused_data(exc)
        if why is None:
            raise
        return reject([MESSAGES.make("refused-data", error=why)], report)
    finally:
        spec.close()


def _import(
    store: Store,
    spec: ImportSpec,
    report: ImportReport,
    reject: Callable[[list[Problem], ImportReport | None], ImportReport],
    source: str,
    path: str,
    spool: Path,
    size: int,
    mtime: datetime | None,
    sha256: str,
    dedupe_key: str,
    actor: str,
    progress: Callable[[int], None] | None,
) -> ImportReport:
    mailing = spec.mailing
    if mailing and store.imports.sequence_taken(source, mailing.file_date, mailing.sequence):
        return reject([mailing.duplicate_problem], report)

    rejected = RejectedRows(spool.with_name(spool.name + ".rejeitados.csv"), spec.header)
    kept: list[KeptRow] = []
    tail = _split(store, spec, spool)
    try:
        with store.imports.session() as session:
            if tail is None:
                _stage(session, spec, report, rejected, progress, kept)
            else:
                with _TailProcess(tail) as second:
                    _stage(session, spec, report, rejected, progress, kept)
                    part = second.result()
                    for bad in second.rejected():
                        _rejected_row(bad, spec, report, rejected, kept)
                    report.rows += part.rows
                    report.imported_rows += part.staged.rows
                    session.adopt(part.staged)
            report.rejected_csv = rejected.close()
            if report.imported_rows == 0:
                if spec.empty_problem is not None:
                    return reject([spec.empty_problem], report)
                if report.rows == 0:
                    return reject([MESSAGES.make("empty-file")], report)
                name = path.rsplit("/", 1)[-1].rsplit(".", 1)[0] + ".rejeitados.csv"
                return reject(
                    [MESSAGES.make("no-valid-rows", rows=report.rows, report=name)], report
                )
            try:
                result = session.commit(
                    _facts(spec, source, path, size, mtime, sha256, dedupe_key, report, actor),
                    kept,
                )
            except DuplicateFile:
                return ImportReport(path, "duplicate")
            except DuplicateSequence:
                assert mailing is not None
                return reject([mailing.duplicate_problem], report)
            except EmptyAudience:
                assert spec.campaign is not None
                problem = spec.empty_campaign_problem or MESSAGES.make("no-recipients")
                return reject([problem], report)
    finally:
        rejected.close()
    report.file_id = result.file_id
    report.contacts = result.contacts
    report.new_contacts = result.new_contacts
    report.merged = result.merged
    report.campaign_id = result.campaign_id
    report.recipients = result.recipients
    report.pending = result.pending
    report.suppressed = result.suppressed
    report.skipped = result.skipped
    report.duplicate_addresses = result.duplicate_addresses
    report.batches = result.batches
    if spec.replace_list:
        report.removed = result.removed
    if spec.opt_out_column:
        report.opted_out = result.opted_out
    return report


_gc_lock = threading.Lock()
_gc_users = 0
_gc_threshold: tuple[int, int, int] = gc.get_threshold()


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect garbage less often while a file is staged: each chunk's rows live a moment,
    long enough to be promoted, and every few tens of thousands of rows that set off a full
    collection over every object of the process (~10 % of an import without hygiene). Rows
    hold no cycles; other threads' cyclic garbage is collected a little later. Nested or
    concurrent imports share one setting, put back when the last one ends."""
    global _gc_users, _gc_threshold
    with _gc_lock:
        if _gc_users == 0:
            _gc_threshold = gc.get_threshold()
            gc.set_threshold(max(STAGING_GC_THRESHOLD, _gc_threshold[0]), *_gc_threshold[1:])
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_threshold)


@_fewer_collections()
def _stage(
    session: ImportSession,
    spec: ImportSpec,
    report: ImportReport,
    rejected: RejectedRows,
    progress: Callable[[int], None] | None,
    kept: list[KeptRow],
) -> None:
    """Stage the rows chunk by chunk (rows are tuples laid out as ``ContactRow`` or, with six
    fields, ``RejectedRow``; a chunk is staged in one driver call).

    In this thread on purpose: staging from a second thread while this one parses was
    measured slower (the two fight over the interpreter lock for every bound row).
    """
    prospects = spec.campaign is not None and spec.prospects_only
    for chunk in spec.rows:
        report.rows += len(chunk)
        contacts: list[StagedRow] = chunk  # type: ignore[assignment]
        if not all(map(CONTACT_FIELDS.__eq__, map(len, chunk))):  # C loops: the common case
            contacts = [r for r in chunk if len(r) == CONTACT_FIELDS]
            for row in chunk:
                if len(row) != CONTACT_FIELDS:
                    _rejected_row(row, spec, report, rejected, kept)
        report.imported_rows += len(contacts)
        if prospects and contacts:
            # N27: without a `prospect` column, a prospect is a phone the base does not know
            unknown = {r[5] for r in contacts if r[8] is None and r[5]}
            known = session.known_phones(sorted(unknown))
            contacts = [
                r if r[8] is not None else (*r[:8], r[5] is not None and r[5] not in known)
                for r in contacts
            ]
        session.stage(contacts)
        if progress is not None:
            progress(spec.progress())


def _rejected_row(
    row: Sequence[object],
    spec: ImportSpec,
    report: ImportReport,
    rejected: RejectedRows,
    kept: list[KeptRow],
) -> None:
    """A rejected row: counted, written to the report, kept when the format asks."""
    bad = RejectedRow._make(row)
    report.rejected_rows[bad.code] += 1
    rejected.add(bad)
    if spec.keep_rejected is not None:
        at = spec.keep_rejected
        address = bad.values[at] if at < len(bad.values) else ""
        kept.append(
            KeptRow(
                bad.line,
                # as written (no NUL: PostgreSQL cannot store one), cut to fit
                address.replace("\0", "").strip()[:320],
                bad.code,
                bad.rule,
                bad.reason,
                bad.reason_pt,
            )
        )


def _split(store: Store, spec: ImportSpec, spool: Path) -> RowsTail | None:
    """The tail a second process reads, when the file is big, the store SQLite and the
    machine has a second core, and the format can split the file (``ImportSpec.split``)."""
    if spec.split is None or store.dialect != "sqlite" or (os.cpu_count() or 1) < 2:
        return None
    if spec.campaign is not None and spec.prospects_only:
        return None  # N27 asks the base which phones it knows, chunk by chunk
    if spool.stat().st_size < SPLIT_BYTES or forkserver() is None:
        return None
    return spec.split(TAIL_SHARE)


class _TailProcess:
    """The second process reading a file's tail (forkserver: the engine has threads, and a
    forked child could inherit a held lock); on the way out its files are removed, and it
    ends (killed if it is still reading: the import failed)."""

    def __init__(self, tail: RowsTail) -> None:
        self.tail = tail
        self.folder = Path(tempfile.mkdtemp(prefix="disparo-import-"))
        self._answered = False

    def __enter__(self) -> _TailProcess:
        context = forkserver()
        assert context is not None  # _split splits the file only when the fork server runs
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=tail_process, args=(self.tail, str(self.folder), child), daemon=True
        )
        try:
            self._process.start()
        finally:
            child.close()
        return self

    def result(self) -> TailDone:
        """Wait for the tail; raise its error if it failed."""
        try:
            done = self._pipe.recv()
        except EOFError:
            self._process.join()
            raise RuntimeError(
                "the process reading the file's second half ended without a result (exit "
                f"code {self._process.exitcode}); nothing of the file was imported"
            ) from None
        self._answered = True
        if isinstance(done, BaseException):
            raise done
        assert isinstance(done, TailDone)
        return done

    def rejected(self) -> Iterator[Sequence[object]]:
        """The tail's rejected rows, in file order (after ``result``)."""
        with (self.folder / "rejected.pickle").open("rb") as source:
            while True:
                try:
                    chunk = pickle.load(source)  # noqa: S301 - our own process's file
                except EOFError:
                    return
                yield from chunk

    def __exit__(self, *exc: object) -> None:
        try:
            if not self._answered and self._process.is_alive():
                self._process.kill()  # still reading: the import failed meanwhile
            self._pipe.close()  # an answered process sees it and ends
            self._process.join()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _facts(
    spec: ImportSpec,
    source: str,
    path: str,
    size: int,
    mtime: datetime | None,
    sha256: str,
    dedupe_key: str,
    report: ImportReport,
    actor: str,
) -> CommitFacts:
    m = spec.mailing
    return CommitFacts(
        file=FileFacts(source, path, size, mtime, sha256, dedupe_key),
        wallet=spec.wallet,
        tag=spec.tag,
        replace_tags=spec.replace_tags,
        remove_other_wallets=spec.remove_other_wallets,
        mailing=(
            MailingFacts(m.name, m.file_date, m.sequence, m.description, m.params) if m else None
        ),
        campaign=spec.campaign,
        rows_total=report.rows,
        rows_rejected=sum(report.rejected_rows.values()),
        actor=actor,
        prospects_only=spec.prospects_only,
        empty_is_error=spec.empty_campaign_problem is not None,
        replace_list=spec.replace_list,
        opt_out_reason=(
            f"opt-out column `{spec.opt_out_column}` of {path} (S1)"
            if spec.opt_out_column
            else None
        ),
    )

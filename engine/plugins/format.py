"""What a file format provides: which listed files are its own, and their contents as contacts.

A format reads; the importer (``engine.intake.importer``) writes, in one transaction (F12). The
values below cross that border.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

from engine.campaign import Campaign
from engine.config import Config, Configurable, SourceSettings
from engine.mailing_names import BUILTIN_WORDS, ChannelWord
from engine.problems import Problem
from engine.rows import ContactRow as ContactRow  # defined there: light for other processes
from engine.rows import RejectedRow as RejectedRow
from engine.schedule import Pacing


@dataclass(frozen=True)
class FormatContext:
    """What a format may know while it reads: the configuration and the processing time."""

    config: Config
    source: str
    #: the processing day in the configured time zone (N5)
    today: date
    #: now, timezone-aware
    now: datetime
    #: the wallet of files that name none (``disparo import --wallet``)
    wallet: str | None = None
    #: the words that select a channel in file names (N7): built-in and plugins' channels
    words: Mapping[str, ChannelWord] = field(default_factory=lambda: dict(BUILTIN_WORDS))


Action = Literal["ignore", "wait", "reject", "import"]


@dataclass(frozen=True)
class Verdict:
    """What to do with a listed file, before reading it.

    ``status`` is shown to operators: ``not-mailing``, ``companion``, ``waiting`` (dated a later
    day), ``ignored`` (an earlier day), ``rejected`` or ``ready``.
    """

    action: Action
    status: str
    problems: tuple[Problem, ...] = ()
    #: other listed files read with this one and moved along with it (``<stem>.html``)
    companions: tuple[str, ...] = ()
    #: a ``wait`` that has lasted this long (since the file or one of its companions was
    #: first listed) becomes a rejection with ``give_up``: a triplet send still incomplete
    #: after ``incomplete_after`` is reported, its files moved to the rejected folder
    give_up_after: timedelta | None = None
    give_up: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class MailingRecord:
    """The mailing a file is (N1–N6): its name, day, sequence and parameters."""

    name: str
    file_date: date
    sequence: int
    description: str
    params: Mapping[str, Any]
    #: the problem reported when the source already has this date and sequence (N6)
    duplicate_problem: Problem


class RowsTail(Protocol):
    """The rows of a file's tail, read in another process (``ImportSpec.split``): picklable;
    ``chunks`` yields them as ``ImportSpec.rows`` would have, with their line numbers."""

    def chunks(self) -> Iterator[Sequence[tuple[Any, ...]]]:
        """The tail's rows, in file order, in chunks."""
        ...


@dataclass
class ImportSpec:
    """Everything the importer needs from a format for one file."""

    wallet: str
    tag: str
    header: list[str]
    #: the rows, in file order, in chunks; a row is a ``ContactRow`` or a ``RejectedRow`` or a
    #: plain tuple with the same layout (rows made in worker processes travel as tuples)
    rows: Iterable[Sequence[tuple[Any, ...]]]
    replace_tags: bool = False
    remove_other_wallets: bool = False
    mailing: MailingRecord | None = None
    #: the campaign the file creates (``id`` None; ``status_reason`` says why it must wait
    #: when no sender account can send it yet), its recipients materialised at import (D3)
    campaign: Campaign | None = None
    #: send only to prospect rows (N27, ``whatsapp-prospect``)
    prospects_only: bool = False
    #: the problem reported when the campaign would have no recipient (N20 for prospects);
    #: None: an empty campaign is created
    empty_campaign_problem: Problem | None = None
    #: bytes read so far of the file, for progress bars
    progress: Callable[[], int] = lambda: 0
    #: releases the open file; the importer calls it whatever happens
    close: Callable[[], None] = lambda: None
    #: raised (as a rejection) when the file has no usable row at all
    empty_problem: Problem | None = None
    #: the list becomes exactly the file (S1): members of the wallet the file does not hold
    #: leave it (their history stays)
    replace_list: bool = False
    #: the header of the file's opt-out column (S1), when it has one: then a row's
    #: ``prospect`` field says whether the contact opted out, and its addresses are suppressed
    #: (origin ``unsubscribe``; never lifted by a later row that says otherwise)
    opt_out_column: str | None = None
    #: keep the rejected rows in the store, with the address found at this index of their
    #: values, for result files that list every contact not sent to (a triplet's RETORNADO);
    #: None: they are only listed in ``<name>.rejeitados.csv``
    keep_rejected: int | None = None
    #: the file's tail for another process (issue 16, goal 4): ``split(share)``, called before
    #: ``rows`` are read, returns a picklable ``RowsTail`` with the rows of about ``share`` of
    #: the file's end, and ``rows`` then stop where it begins; None (or it returns None): the
    #: file is read whole here (e.g. a quoted cell could hold a line break)
    split: Callable[[float], RowsTail | None] | None = None


class Format(Configurable, ABC):
    """An input file format. Subclasses set ``name`` (``format`` in a source's settings),
    optionally ``config_keys`` (their own keys in the source's table, handed back in the
    source's ``options``) and ``publishers`` (what a source of this format publishes when it
    does not say, ``publish``)."""

    name: ClassVar[str]
    publishers: ClassVar[tuple[str, ...]] = ()
    #: the schedule (a cron expression, F7) of a source of this format that sets neither
    #: ``every`` nor ``cron``; None: every 2 minutes
    default_cron: ClassVar[str | None] = None

    def __init__(self, context: FormatContext) -> None:
        self.context = context

    @classmethod
    def check_settings(
        cls, settings: SourceSettings, accounts: Mapping[str, str]
    ) -> list[tuple[str, str]]:
        """Checks of the format's keys in a source's table, across keys and against the
        accounts the configuration declares (name -> channel): ``(key, message)`` for each
        problem, reported with the file and the key when the configuration is read."""
        return []

    @classmethod
    def source_pacing(cls, settings: SourceSettings) -> Pacing | None:
        """The pacing every campaign of a source of this format gets from the source's own
        keys (D6: a triplet source's ``batch_size`` and ``batch_every``), for ``disparo plan
        --source``; None: the file says (or no pacing)."""
        return None

    @abstractmethod
    def inspect(self, path: str, listing: set[str]) -> Verdict:
        """Decide from the name (and the other names listed) what to do with ``path``."""

    @abstractmethod
    def prepare(self, path: str, spool: Path, companions: Mapping[str, Path]) -> ImportSpec:
        """Open the downloaded file and describe its import; raise ``FileRejected`` when it
        cannot be imported. Rows are read lazily while the importer consumes them."""

    def contacts(self, path: str, spool: Path) -> ImportSpec:
        """Open a plain contact file (a group's ``groups import``): its rows as contacts, with
        the format's CSV reading and address hygiene, and no mailing nor campaign. By
        default a format reads none: ``FileRejected``."""
        from engine.problems import Problem

        raise FileRejected(
            [
                Problem(
                    "no-contacts",
                    "N22",
                    f"the `{self.name}` format reads no plain contact files; use the "
                    "`mailing` format's CSV",
                    f"o formato `{self.name}` não lê arquivos simples de contatos; use o CSV "
                    "do formato `mailing`",
                )
            ]
        )

    def dedupe_key(self, path: str, sha256: str) -> str:
        """What makes two files "the same" (F10): by default the name and the content."""
        return f"{path}\n{sha256}"

    def duplicate_problem(self, path: str, imported_at: datetime) -> Problem | None:
        """What the report of a file that is "the same" as one imported before (its
        ``dedupe_key``) says; None: the collector's own (F10, ``duplicate-file``)."""
        return None


class FileRejected(Exception):
    """A whole file is refused; ``problems`` say why (written to ``<name>.erro.txt``)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))

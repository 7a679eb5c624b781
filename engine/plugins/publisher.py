"""What a publisher provides: files written back to a source for the customer's systems —
result files of a send, periodic exports of a list (plugin API v1, see docs/plugins.md).

A source names its publishers in ``publish = ["…"]``. The engine asks each publisher what is
``due()`` now, skips what the publication ledger already holds, plans each new one in the
ledger (its path and detail fixed), has the publisher ``write()`` it into a local temporary
file, uploads it under a temporary name and renames it on the source, and only then records
it as published: a publication is done exactly once, a failed one is tried again with the same
detail on the next run, and a crash in the middle leaves no partial file and publishes the
same file again.

Incremental publications (an export of what happened since the previous one) set ``chain``
and ``previous``: the publications of a chain are planned one after the other, the next only
once the one before it is published, so the range a publication covers (in its ``detail``)
starts exactly where the published one before it ended (S3).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from engine.campaign import Campaign
from engine.clock import Clock
from engine.config import Config, Configurable, SourceSettings

if TYPE_CHECKING:
    from engine.store import Store


@dataclass(frozen=True)
class Publication:
    """One file to publish: ``key`` makes it once-only in the ledger (per source and
    publisher), ``path`` is where it goes on the source (relative to its root, POSIX style),
    ``detail`` is what the publisher needs to write it (a campaign id, an event range…); it
    is recorded in the ledger with the publication, so an incremental export finds where the
    previous one ended there. A publication about an imported file says which in
    ``detail["file_id"]`` (``disparo sources`` shows it beside the file)."""

    key: str
    path: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: when it is (or, in ``planned()``, will be) due; None: not known yet (its campaign is
    #: still running) or not said
    due_at: datetime | None = None
    #: the sequence an incremental publication belongs to (e.g. an export's kind), or None
    chain: str | None = None
    #: in a chain, the key of the publication this one continues (None: the first); it is
    #: planned only while that is still the chain's newest and is published
    previous: str | None = None


@dataclass(frozen=True)
class FileCampaign:
    """A campaign made from a file a source's collector imported."""

    #: the file's entry in the ledger, and its path on the source
    file_id: int
    path: str
    imported_at: datetime
    campaign_id: int
    name: str
    #: the campaign's status (D1); over once ``completed``, ``cancelled`` or ``expired``
    status: str
    finished_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "cancelled", "expired")


#: what recipients did: open (a click counts as one, as the campaign's counters count it),
#: click, unsubscribe (either scope, D19)
InteractionKind = Literal["open", "click", "unsubscribe"]


@dataclass(frozen=True)
class Interaction:
    """One open, click or unsubscribe of a recipient."""

    kind: str
    at: datetime
    address: str
    #: a click's link (as clicked: a link made per recipient has the recipient's values)
    url: str | None = None


#: why a recipient did not get the message
NotSentReason = Literal[
    "invalid", "suppressed", "bounced", "soft-bounce", "expired", "cancelled", "failed", "skipped"
]


@dataclass(frozen=True)
class NotSent:
    """A contact of a file that did not get the message: ``reason`` says why in one word,
    ``detail`` in the provider's or disparo's words (Portuguese where disparo has them)."""

    address: str
    #: when it was known (the bounce, the end of the campaign, the import for ``invalid``)
    at: datetime
    reason: str
    detail: str


class PublishReads(Protocol):
    """What publishers read, kept stable across releases (plugin API v1) while the store's
    queries change. Iterators stream: a million-row campaign is never held whole."""

    def file_campaigns(
        self, source: str, *, finished: bool = False, limit: int | None = None
    ) -> list[FileCampaign]:
        """The campaigns made from the files of ``source`` (only those over, with
        ``finished``), newest file first."""

    def campaign(self, campaign_id: int) -> Campaign | None:
        """One campaign with its counters (D18)."""

    def interactions(
        self, campaign_id: int, kind: InteractionKind, *, first: bool = False
    ) -> Iterator[Interaction]:
        """Every open, click or unsubscribe of the campaign in time order; with ``first``,
        each recipient's first only."""

    def not_sent(self, campaign_id: int) -> Iterator[NotSent]:
        """Every contact of the campaign's file that did not get the message: the campaign's
        recipients not sent to (or bounced), then the file's rows kept as unusable (an
        invalid address, ``ImportSpec.keep_rejected``)."""

    def write_results(self, campaign_id: int, out: IO[str]) -> int:
        """The campaign's per-recipient results file (D17, E2: the columns and cells of
        ``disparo campaign results --csv``) into ``out``; returns the recipients written."""

    def published(self, source: str, publisher: str) -> list[Publication]:
        """What the ledger holds of a source's publisher, oldest first, with the ``detail``
        each was recorded with (where an incremental export ended) and, as ``due_at``, when
        it was published."""


@dataclass(frozen=True)
class PublishContext:
    """What a publisher may use: the configuration, the clock, ``reads`` (the stable façade
    over what was sent and what came of it), and the store itself (not part of the plugin
    API: its queries may change). It never writes there: the engine records publications."""

    config: Config
    clock: Clock
    store: Store
    reads: PublishReads


class Publisher(Configurable, ABC):
    """A kind of publication. Subclasses set ``name`` (what a source's ``publish`` names)
    and, optionally, ``config_keys``: their own keys in the source's table."""

    name: ClassVar[str]

    def __init__(self, source: SourceSettings, context: PublishContext) -> None:
        self.source = source
        self.context = context

    @abstractmethod
    def due(self, now: datetime) -> Iterable[Publication]:
        """Every publication that should exist on the source at ``now`` (those already in the
        ledger included: the engine skips them). Must not write anything."""

    def on_demand(self, now: datetime) -> Iterable[Publication]:
        """What to publish now because an operator asked for this source
        (``disparo publish SOURCE``), beyond what is ``due()``: e.g. an export run off its
        schedule. The default: nothing more. Must not write anything."""
        return ()

    def next_due(self, now: datetime) -> datetime | None:
        """When the next publication falls due after ``now`` (shown in the UI), if known."""
        return None

    @abstractmethod
    def write(self, publication: Publication, out: IO[bytes]) -> None:
        """Write the publication's bytes to ``out`` (a local temporary file). The publication
        is the one planned: its ``detail`` is the same on every attempt."""

    def planned(self, now: datetime) -> Iterable[Publication]:
        """What will be due after ``now``, each with its ``due_at`` (None: not known yet),
        for ``disparo sources`` and the terminal UI; by default nothing is said. Must not
        write anything."""
        return ()

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any, ClassVar

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
    previous one ended there."""

    key: str
    path: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    #: the sequence an incremental publication belongs to (e.g. an export's kind), or None
    chain: str | None = None
    #: in a chain, the key of the publication this one continues (None: the first); it is
    #: planned only while that is still the chain's newest and is published
    previous: str | None = None


@dataclass(frozen=True)
class PublishContext:
    """What a publisher may use: the configuration, the clock, and the store to read what it
    publishes (it never writes there: the engine records publications)."""

    config: Config
    clock: Clock
    store: Store


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

"""A campaign's schedule (spec/dispatch.md D5–D9): its pacing, batch sizes, release times,
projected finish and what expires at the deadline.

Pure: times in, times out. This is the one computation of the schedule: the dispatcher
releases batches with ``released_count``, and ``disparo plan``, ``disparo campaign show`` and
the terminal UI all print a ``Schedule`` made by ``plan`` (a campaign not created yet) or
``live`` (a campaign in the store, its pauses and what is left of each batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from engine.campaign import Campaign

#: messages per second when no sender account says otherwise (D9, D10)
DEFAULT_RATE = 10.0


@dataclass(frozen=True)
class Pacing:
    """How a campaign's recipients are released (D5, D6): ``percent`` of them per batch
    (``_qPPMMM``) or batches of at most ``size`` (a triplet source's ``batch_size``), one
    batch every ``interval``. No pacing (D7) is ``None`` wherever a ``Pacing`` is expected."""

    kind: Literal["percent", "size"]
    value: int
    interval: timedelta

    def __post_init__(self) -> None:
        if self.kind not in ("percent", "size"):
            raise ValueError(f"pacing kind must be percent or size, got {self.kind!r}")
        if self.kind == "percent" and not 1 <= self.value <= 100:
            raise ValueError(f"percent must be 1–100, got {self.value}")
        if self.kind == "size" and self.value < 1:
            raise ValueError(f"size must be at least 1, got {self.value}")
        if self.interval <= timedelta(0):
            raise ValueError("interval must be positive")

    @classmethod
    def percent(cls, percent: int, interval: timedelta) -> Pacing:
        """``_qPPMMM``: ``percent`` of the recipients every ``interval`` (D5)."""
        return cls("percent", percent, interval)

    @classmethod
    def size(cls, size: int, interval: timedelta) -> Pacing:
        """Batches of at most ``size`` recipients every ``interval`` (D6)."""
        return cls("size", size, interval)

    @property
    def interval_minutes(self) -> int:
        return int(self.interval.total_seconds() // 60)

    def batch_size(self, recipients: int) -> int:
        """Recipients per batch: ceil(N × PP / 100) (D5) or the fixed size (D6)."""
        if recipients <= 0:
            return 0
        if self.kind == "percent":
            return max(1, math.ceil(recipients * self.value / 100))
        return min(self.value, recipients)

    def describe(self) -> str:
        """``15 % every 20 min``, ``5,000 every 1 h``."""
        what = f"{self.value} %" if self.kind == "percent" else f"{self.value:,}"
        return f"{what} every {interval_text(self.interval)}"

    def as_json(self) -> dict[str, int]:
        """``{"percent": 15, "interval_minutes": 20}`` (check-name's JSON) or
        ``{"size": 5000, "interval_minutes": 60}``."""
        return {self.kind: self.value, "interval_minutes": self.interval_minutes}


def interval_text(interval: timedelta) -> str:
    """``20 min``, ``1 h``, ``1 h 30 min``, ``45 s``."""
    seconds = int(interval.total_seconds())
    if seconds % 60:
        return f"{seconds} s"
    hours, minutes = divmod(seconds // 60, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    return f"{hours} h" if hours else f"{minutes} min"


def batch_sizes(recipients: int, pacing: Pacing | None) -> list[int]:
    """Every batch's size, in order; the last holds the remainder. Sums to ``recipients``."""
    if recipients <= 0:
        return []
    size = pacing.batch_size(recipients) if pacing is not None else recipients
    full, rest = divmod(recipients, size)
    return [size] * full + ([rest] if rest else [])


def batch_of(position: int, recipients: int, pacing: Pacing | None) -> int:
    """The 1-based batch holding the recipient at 0-based ``position`` of the stable order."""
    size = pacing.batch_size(recipients) if pacing is not None else recipients
    return position // size + 1 if size > 0 else 1


def release_at(start: datetime, index: int, pacing: Pacing | None) -> datetime:
    """Batch ``index`` (1-based) is released at start + (index − 1) × interval (D5, D6)."""
    if pacing is None:
        return start
    return start + (index - 1) * pacing.interval


@dataclass(frozen=True)
class Batch:
    """One batch of a schedule: its size, release, what is left of it, and when sending what
    is left begins and ends at the schedule's rate."""

    index: int
    size: int
    release_at: datetime
    #: recipients of the batch not settled yet (all of them before it is sent)
    open: int
    begin_at: datetime
    done_at: datetime
    #: of ``open``, how many start before the deadline (all of them without a deadline)
    sent: int

    @property
    def done(self) -> int:
        """Settled: sent, or ended otherwise (failed, suppressed, expired, cancelled…)."""
        return self.size - self.open

    @property
    def expiring(self) -> int:
        """Open recipients that would not start before the deadline (D8)."""
        return self.open - self.sent

    @property
    def expired(self) -> bool:
        """Nothing of what is open starts before the deadline (released at or after it)."""
        return self.sent == 0 and self.open > 0


@dataclass(frozen=True)
class Schedule:
    """A campaign's schedule at ``rate`` messages per second, seen at ``now``."""

    recipients: int
    start_at: datetime
    deadline: datetime | None
    rate: float
    now: datetime
    pacing: Pacing | None
    batches: tuple[Batch, ...]
    #: batches released at ``now`` (none before the start, D2)
    released: int
    #: when what is open would be sent (None: nothing left); ignores the deadline
    finish_at: datetime | None
    #: open recipients that would not be sent before the deadline (D8)
    expired: int

    @property
    def next_release(self) -> Batch | None:
        """The first batch not released yet."""
        return self.batches[self.released] if self.released < len(self.batches) else None

    @property
    def open(self) -> int:
        return sum(b.open for b in self.batches)

    def as_json(self, tz: tzinfo) -> dict[str, Any]:
        """D9's JSON: ``batches`` [{index, size, release_at, done_at, expired}], ``finish_at``,
        ``expired``, plus ``recipients``, ``rate``, ``start_at``, ``deadline``, ``released``
        and each batch's ``open``; times in ``tz``, ISO 8601 with their offset."""

        def t(value: datetime | None) -> str | None:
            return value.astimezone(tz).isoformat(timespec="seconds") if value else None

        return {
            "recipients": self.recipients,
            "rate": self.rate,
            "start_at": t(self.start_at),
            "deadline": t(self.deadline),
            "pacing": self.pacing.as_json() if self.pacing else None,
            "released": self.released,
            "batches": [
                {
                    "index": b.index,
                    "size": b.size,
                    "open": b.open,
                    "release_at": t(b.release_at),
                    "done_at": t(b.done_at),
                    "expired": b.expired,
                }
                for b in self.batches
            ],
            "finish_at": t(self.finish_at),
            "expired": self.expired,
        }


def _seconds(messages: int, rate: Fraction) -> timedelta:
    return timedelta(microseconds=round(Fraction(messages * 1_000_000) / rate))


def _sent_before(deadline: datetime | None, begin: datetime, size: int, rate: Fraction) -> int:
    """How many of ``size`` messages, started at ``rate``/s from ``begin``, start before
    ``deadline``: message j starts at begin + j / rate (D8: none at or after the deadline)."""
    if deadline is None:
        return size
    room = deadline - begin
    micros = (room.days * 86_400 + room.seconds) * 1_000_000 + room.microseconds
    if micros <= 0:
        return 0
    return min(size, math.ceil(Fraction(micros) * rate / 1_000_000))


def _released(
    start: datetime, shift: timedelta, now: datetime, pacing: Pacing | None, n: int
) -> int:
    """Batches released at ``now`` (D2, D5–D7): none before the start; then one more every
    interval, the clock stopped while the campaign was paused or held (``shift``)."""
    if n == 0:
        return 0
    elapsed = now - start - shift
    if elapsed < timedelta(0):
        return 0
    if pacing is None:
        return n
    return min(n, int(elapsed // pacing.interval) + 1)


def _schedule(
    *,
    sizes: Sequence[int],
    open_: Sequence[int],
    start_at: datetime,
    shift: timedelta,
    now: datetime,
    pacing: Pacing | None,
    rate: float,
    deadline: datetime | None,
) -> Schedule:
    """One batch after the other at ``rate``: a batch begins at its release or when what is
    open before it is done, whichever is later, and never before ``now`` (D5, D8)."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    exact = Fraction(str(rate))
    batches: list[Batch] = []
    t = max(now, start_at + shift)
    left = False
    for index, (size, open_n) in enumerate(zip(sizes, open_, strict=True), start=1):
        released = release_at(start_at, index, pacing) + shift
        if open_n <= 0:
            batches.append(Batch(index, size, released, 0, released, released, 0))
            continue
        left = True
        begin = max(released, t)
        done = begin + _seconds(open_n, exact)
        sent = _sent_before(deadline, begin, open_n, exact)
        batches.append(Batch(index, size, released, open_n, begin, done, sent))
        t = done
    return Schedule(
        recipients=sum(sizes),
        start_at=start_at,
        deadline=deadline,
        rate=rate,
        now=now,
        pacing=pacing,
        batches=tuple(batches),
        released=_released(start_at, shift, now, pacing, len(sizes)),
        finish_at=t if left else None,
        expired=sum(b.expiring for b in batches),
    )


def plan(
    recipients: int,
    start_at: datetime,
    *,
    pacing: Pacing | None = None,
    rate: float = DEFAULT_RATE,
    deadline: datetime | None = None,
) -> Schedule:
    """The schedule of a campaign of ``recipients`` starting at ``start_at`` (D9), before
    anything is sent: every batch whole, seen from its start."""
    sizes = batch_sizes(recipients, pacing)
    return _schedule(
        sizes=sizes,
        open_=sizes,
        start_at=start_at,
        shift=timedelta(0),
        now=start_at,
        pacing=pacing,
        rate=rate,
        deadline=deadline,
    )


def released_count(campaign: Campaign, now: datetime) -> int:
    """How many of the campaign's batches are released at ``now`` (what the dispatcher
    releases). The schedule starts when the campaign did and shifts by its pauses."""
    start = campaign.started_at or campaign.start_at
    return _released(start, campaign.paused_for(now), now, campaign.pacing, campaign.batches)


def live(
    campaign: Campaign,
    now: datetime,
    *,
    rate: float,
    open_by_batch: Mapping[int, int] | None = None,
) -> Schedule:
    """The schedule of a campaign in the store at ``now``: its batches as cut at creation
    (from its ``audience``), released on its pacing from when it started, shifted by its
    pauses; what is left of each batch (``open_by_batch``, batch -> open deliveries; every
    batch whole when not given) is projected at ``rate`` from ``now``. A finished campaign
    has nothing open."""
    sizes = batch_sizes(campaign.audience, campaign.pacing)
    if len(sizes) != campaign.batches:  # a campaign of another shape: keep the stored count
        sizes = (sizes + [0] * campaign.batches)[: campaign.batches]
    if campaign.finished:
        open_ = [0] * len(sizes)
    elif open_by_batch is None:
        open_ = list(sizes)
    else:
        open_ = [min(size, max(0, open_by_batch.get(k, 0))) for k, size in enumerate(sizes, 1)]
    return _schedule(
        sizes=sizes,
        open_=open_,
        start_at=campaign.started_at or campaign.start_at,
        shift=campaign.paused_for(now),
        now=now,
        pacing=campaign.pacing,
        rate=rate,
        deadline=campaign.deadline,
    )

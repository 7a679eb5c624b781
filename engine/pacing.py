"""Pacing math (spec/dispatch.md D5–D9): batch sizes, release times, expected finish, expirations.

Pure: times in, times out. The dispatcher releases batches with these functions and
``disparo plan`` prints the same schedule without sending.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from fractions import Fraction
from typing import Any

DEFAULT_RATE = 10.0  # messages per second when no sender account says otherwise (D9, D10)


@dataclass(frozen=True)
class PercentPacing:
    """``_qPPMMM`` (D5): ``percent`` of the recipients per batch, one batch every ``interval``."""

    percent: int
    interval: timedelta

    def __post_init__(self) -> None:
        if not 1 <= self.percent <= 100:
            raise ValueError(f"percent must be 1–100, got {self.percent}")
        if self.interval <= timedelta(0):
            raise ValueError("interval must be positive")


@dataclass(frozen=True)
class SizePacing:
    """Size pacing (D6): batches of at most ``size`` recipients, one every ``interval``."""

    size: int
    interval: timedelta

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")
        if self.interval <= timedelta(0):
            raise ValueError("interval must be positive")


Pacing = PercentPacing | SizePacing


def batch_size(recipients: int, pacing: Pacing | None) -> int:
    """Recipients per batch: ceil(N × PP / 100) (D5), the fixed size (D6), or all (D7)."""
    if recipients <= 0:
        return 0
    if pacing is None:
        return recipients
    if isinstance(pacing, PercentPacing):
        return max(1, math.ceil(recipients * pacing.percent / 100))
    return min(pacing.size, recipients)


def batch_sizes(recipients: int, pacing: Pacing | None) -> list[int]:
    """Every batch's size, in order; the last holds the remainder. Sums to ``recipients``."""
    size = batch_size(recipients, pacing)
    if size == 0:
        return []
    full, rest = divmod(recipients, size)
    return [size] * full + ([rest] if rest else [])


def batch_index(position: int, recipients: int, pacing: Pacing | None) -> int:
    """The 1-based batch holding the delivery at 0-based ``position`` of the stable order."""
    size = batch_size(recipients, pacing)
    return position // size + 1 if size else 1


def release_at(start: datetime, index: int, pacing: Pacing | None) -> datetime:
    """Batch ``index`` (1-based) is released at start + (index − 1) × interval (D5, D6)."""
    if pacing is None:
        return start
    return start + (index - 1) * pacing.interval


@dataclass(frozen=True)
class PlannedBatch:
    """One batch of a plan: when it is released, when sending it begins and ends."""

    index: int
    size: int
    release_at: datetime
    begin_at: datetime
    done_at: datetime
    #: messages handed to the provider before the deadline (all of them without a deadline)
    sent: int

    @property
    def expired(self) -> bool:
        """Released at or after the deadline: nothing of it is sent (D8)."""
        return self.sent == 0 and self.size > 0

    @property
    def expiring(self) -> int:
        return self.size - self.sent


@dataclass(frozen=True)
class Plan:
    """A campaign's schedule at a given rate (D9)."""

    recipients: int
    start_at: datetime
    deadline: datetime | None
    rate: float
    batches: tuple[PlannedBatch, ...]
    finish_at: datetime
    #: recipients that would not be sent before the deadline
    expired: int

    def as_json(self, tz: tzinfo) -> dict[str, Any]:
        """D9's JSON: ``batches`` [{index, size, release_at, done_at, expired}], ``finish_at``,
        ``expired``; times in ``tz`` as ISO 8601 with their offset."""

        def t(value: datetime) -> str:
            return value.astimezone(tz).isoformat(timespec="seconds")

        return {
            "recipients": self.recipients,
            "rate": self.rate,
            "start_at": t(self.start_at),
            "deadline": t(self.deadline) if self.deadline else None,
            "batches": [
                {
                    "index": b.index,
                    "size": b.size,
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


def plan(
    recipients: int,
    start_at: datetime,
    *,
    pacing: Pacing | None = None,
    rate: float = DEFAULT_RATE,
    deadline: datetime | None = None,
) -> Plan:
    """The schedule of a campaign of ``recipients`` starting at ``start_at``.

    One sender account sends one batch after the other at ``rate`` messages per second, so a
    batch begins at its release or when the previous one is done, whichever is later. The
    expected finish ignores the deadline (it is a projection); ``expired`` counts the messages
    that would still be unsent when the deadline passes.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    exact_rate = Fraction(str(rate))
    batches: list[PlannedBatch] = []
    previous_done = start_at
    for index, size in enumerate(batch_sizes(recipients, pacing), start=1):
        released = release_at(start_at, index, pacing)
        begin = max(released, previous_done)
        done = begin + _seconds(size, exact_rate)
        sent = _sent_before(deadline, begin, size, exact_rate)
        batches.append(PlannedBatch(index, size, released, begin, done, sent))
        previous_done = done
    expired = sum(b.expiring for b in batches)
    return Plan(
        recipients=recipients,
        start_at=start_at,
        deadline=deadline,
        rate=rate,
        batches=tuple(batches),
        finish_at=previous_done,
        expired=expired,
    )

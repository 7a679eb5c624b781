"""Time for the engine: a real clock, and a test clock that jumps forward on demand.

Engine code asks an injected clock for "now" and sleeps through it; it never calls
``datetime.now()`` itself (a test enforces this), so tests can run days of pacing,
deadlines and 24-hour guard windows in milliseconds.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import time
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol

# asyncio is imported where it runs: the CLI's read-only commands import this module and
# start ~30 ms sooner without it (issue 16, goal 7)
if TYPE_CHECKING:
    import asyncio


class Clock(Protocol):
    """What the engine needs from time."""

    def now(self) -> datetime:
        """The current instant, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for rates and timeouts)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


def local_now(clock: Clock, tz: tzinfo) -> datetime:
    """Now, in the configured time zone."""
    return clock.now().astimezone(tz)


def local_today(clock: Clock, tz: tzinfo) -> date:
    """Today's date in the configured time zone (N5: the processing day)."""
    return local_now(clock, tz).date()


class RealClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(max(0.0, seconds))


class TestClock:
    """A clock that stands still until told to move.

    ``sleep`` parks the caller until ``advance``/``set`` moves time past its wake-up; the
    sleepers wake in time order, and each gets the chance to run (and to sleep again) before
    time moves on, so a loop that sleeps 20 minutes between batches sees exactly the instants
    it would see in real life.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime | None = None) -> None:
        start = start or datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
        if start.tzinfo is None:
            raise ValueError("TestClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._origin = self._now
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return (self._now - self._origin).total_seconds()

    async def sleep(self, seconds: float) -> None:
        import asyncio

        if seconds <= 0:
            await asyncio.sleep(0)
            return
        # a positive sleep always moves time (a microsecond at least: timedelta's resolution)
        wake = self._now + max(timedelta(seconds=seconds), timedelta(microseconds=1))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (wake, next(self._order), future))
        try:
            await future
        finally:
            if not future.done():
                future.cancel()

    @property
    def sleepers(self) -> int:
        """How many callers are waiting on this clock."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def _settle(self) -> None:
        # Let woken tasks run until they block again (several hops: a woken task may await
        # a thread or another task before it sleeps again).
        import asyncio

        for _ in range(20):
            await asyncio.sleep(0)

    async def advance(self, delta: timedelta | float) -> None:
        """Move time forward by ``delta`` (a timedelta or seconds), waking sleepers in order."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError("time never goes back")
        await self.set(self._now + delta)

    async def set(self, when: datetime) -> None:
        """Move time forward to ``when``, waking sleepers in order."""
        when = when.astimezone(UTC)
        if when < self._now:
            raise ValueError("time never goes back")
        await self._settle()
        while self._sleepers and self._sleepers[0][0] <= when:
            wake, _, future = heapq.heappop(self._sleepers)
            if future.done():
                continue
            self._now = max(self._now, wake)
            future.set_result(None)
            await self._settle()
        self._now = when
        await self._settle()

    def jump(self, delta: timedelta | float) -> None:
        """Move time forward without waking anyone (for synchronous tests)."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        self._now += delta


async def wait_event(clock: Clock, event: asyncio.Event, seconds: float) -> bool:
    """Wait until ``event`` is set or ``seconds`` of the clock's time passed; True if set."""
    import asyncio

    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    sleeper = asyncio.ensure_future(clock.sleep(seconds))
    try:
        await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (waiter, sleeper):
            if not task.done():
                task.cancel()
        for task in (waiter, sleeper):
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return event.is_set()

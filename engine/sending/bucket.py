"""A token bucket per sender account (D10): over any 1-second window no more than
rate + burst messages start."""

from __future__ import annotations

import math
from collections import deque

from engine.clock import Clock

#: what a start may be late by on its way to the provider (the event loop, a loaded machine)
#: and still be counted in the right second there: the last ``rate + burst`` starts span at
#: least 1 s plus this (at most ``burst / rate``, so the sustained rate is never lowered)
SLACK = 0.05
#: the starts remembered for that: above this many a second, the bucket alone paces
WINDOW_LIMIT = 10_000


class TokenBucket:
    """``rate`` tokens a second, up to ``burst`` saved; ``take()`` waits for one."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.stamp = clock.monotonic()
        self.held_until = self.stamp
        #: at most this many starts in any window of ``span`` seconds (rate + burst in 1 s,
        #: with the slack for a start's jitter on its way out)
        self.most = math.floor(rate + burst + 1e-9)
        self.span = 1.0 + min(SLACK, burst / rate)
        self.starts: deque[float] | None = deque() if self.most <= WINDOW_LIMIT else None

    def _refill(self) -> None:
        now = self.clock.monotonic()
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def try_take(self) -> float:
        """Take a token now and return 0, or return how many seconds until one is there."""
        self._refill()
        if self.tokens >= 1 - 1e-9:  # 0.1 s × 10/s may add up to 0.9999999999
            starts = self.starts
            if starts is not None:
                if len(starts) >= self.most:
                    # the start rate + burst starts ago is too recent: a start late by a few
                    # ms on its way out would put rate + burst + 1 in one second there
                    wait = starts[0] + self.span - self.stamp
                    if wait > 1e-9:
                        return wait
                    starts.popleft()
                starts.append(self.stamp)
            self.tokens = max(0.0, self.tokens - 1)
            return 0.0
        return max((1 - self.tokens) / self.rate, 1e-6)

    def level(self) -> float:
        """The tokens there now (negative while a provider's hold-off lasts)."""
        self._refill()
        return self.tokens

    def adopt(self, tokens: float, elapsed: float) -> None:
        """Continue the bucket another holder of the account left (D10 across engine
        nodes): it had ``tokens`` ``elapsed`` seconds ago, refilled at the rate since. Never
        more than this bucket has now.

        The other holder's last starts are not known here, and may be as recent as the
        hand-over. So that the slack holds across holders too (no window of ``span``
        seconds, the hand-over inside it, with more than ``rate + burst`` starts of both),
        the carried tokens are ``rate × (span - 1)`` fewer, below zero if need be: the
        tokens bound the other holder's starts in the ``span`` before the hand-over by
        ``burst + rate × span - tokens``, and this bucket's after it by what it carries
        plus the refill. A hand-over costs the account at most that slack (50 ms) of
        sending, and only when it had few tokens left."""
        self._refill()
        late = self.span - 1.0
        carried = tokens + (max(0.0, elapsed) - late) * self.rate
        self.tokens = min(self.tokens, float(self.burst), carried)

    def holding(self) -> float:
        """Seconds left of a provider's hold-off (``hold_off``); 0 when there is none."""
        return max(0.0, self.held_until - self.clock.monotonic())

    async def take(self) -> None:
        """Wait (on the clock) until a token is there, and take it."""
        while True:
            wait = self.try_take()
            if wait == 0:
                return
            await self.clock.sleep(wait)

    async def take_unless_held(self, limit: float) -> bool:
        """Take a token (waiting for it at the rate as ``take`` does), unless the account is
        held off for more than ``limit`` seconds: then take nothing and return False."""
        if self.holding() > limit:
            return False
        await self.take()
        return True

    def hold_off(self, seconds: float) -> None:
        """The provider asked to slow down (429 Retry-After): no token for ``seconds``."""
        self._refill()
        # from now, not on top of an earlier hold-off: eight sends failing together hold the
        # account for `seconds`, not eight times as long
        self.tokens = min(self.tokens, -seconds * self.rate)
        self.held_until = max(self.held_until, self.clock.monotonic() + seconds)

    def forgive(self) -> None:
        """End a hold-off now (the operator fixed what the provider complained about)."""
        self._refill()
        self.tokens = max(self.tokens, 0.0)
        self.held_until = self.clock.monotonic()

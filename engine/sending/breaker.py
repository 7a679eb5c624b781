"""The circuit breaker of a sender account (pure logic, on the clock the caller gives).

Sends that fail for a systemic reason — the relay refuses the connection, TLS or the login
fails, the provider is down, the channel raises — count as consecutive failures; any other
answer (sent, or a reason that is the recipient's) resets the count. At ``threshold`` the
breaker opens: the account sends nothing for ``pause``, then one delivery probes the channel
(half-open). A probe that works closes the breaker; one that fails opens it again for twice
as long, up to ``max_pause``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Change = Literal["opened", "reopened", "closed"]


@dataclass
class Breaker:
    threshold: int
    first_pause: timedelta
    max_pause: timedelta
    state: Literal["closed", "open"] = "closed"
    failures: int = 0
    last_error: str | None = None
    retry_at: datetime | None = None
    pause: timedelta | None = None
    opened_at: datetime | None = None
    #: a probe is in flight (half-open)
    probing: bool = False
    #: how many consecutive failures opened it
    opened_after: int = 0

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    def probe_due(self, now: datetime) -> bool:
        """Open, and time to let one delivery try the channel."""
        return self.state == "open" and (self.retry_at is None or now >= self.retry_at)

    def failed(self, reason: str, now: datetime, *, force: bool = False) -> Change | None:
        """A send failed for a systemic reason (``force``: the channel cannot even start)."""
        self.failures += 1
        self.last_error = reason
        if self.state == "open":
            if not self.probing:
                return None  # a send that had started before the breaker opened
            self.probing = False
            self.pause = min((self.pause or self.first_pause) * 2, self.max_pause)
            self.retry_at = now + self.pause
            return "reopened"
        if self.failures < self.threshold and not force:
            return None
        self.state = "open"
        self.pause = self.first_pause
        self.retry_at = now + self.pause
        self.opened_at = now
        self.opened_after = self.failures
        return "opened"

    def worked(self) -> Change | None:
        """A send got an answer that is not the channel's fault."""
        self.failures = 0
        if self.state == "open" and self.probing:
            self.state = "closed"
            self.probing = False
            self.retry_at = self.pause = None
            return "closed"
        return None

    def adopt(
        self,
        state: str,
        reason: str | None,
        retry_at: datetime | None,
        pause: timedelta | None,
        opened_at: datetime | None,
        failures: int,
    ) -> None:
        """Take over the state another engine left in the store (the account's lease moved)."""
        self.state = "open" if state == "open" else "closed"
        self.last_error = reason
        self.retry_at = retry_at
        self.pause = pause
        self.opened_at = opened_at
        self.failures = failures
        self.probing = False

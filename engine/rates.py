"""An account's reputation rates (D14, D15): hard bounces and complaints over what it sent in
the trailing 24 hours, compared exactly with its limits.

Pure. The one computation of the guard's arithmetic: the guard decides with it, and
``disparo accounts``, the terminal UI and ``/metrics`` show the same numbers and verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Limits:
    """An account's guard limits, in percent of the messages sent over 24 h (D15)."""

    bounce_limit: float = 5.0
    complaint_limit: float = 0.1
    #: fewer messages than this in the window are too few to judge
    min_sample: int = 200


def _over(count: int, sent: int, limit: float) -> bool:
    """count / sent > limit %, exactly (5.0 % of 1,000 is not above 5 %)."""
    return Fraction(count * 100) > Fraction(str(limit)) * sent


@dataclass(frozen=True)
class Rates:
    """Messages sent, hard bounces and complaints of an account over the window, and its
    limits."""

    sent: int
    bounces: int
    complaints: int
    limits: Limits = Limits()

    @property
    def bounce_rate(self) -> float:
        """Percent of the messages sent (for display; verdicts are exact)."""
        return 100 * self.bounces / self.sent if self.sent else 0.0

    @property
    def complaint_rate(self) -> float:
        return 100 * self.complaints / self.sent if self.sent else 0.0

    @property
    def judged(self) -> bool:
        """Enough messages were sent to judge the rates (``min_sample``)."""
        return self.sent >= self.limits.min_sample

    @property
    def bounces_over(self) -> bool:
        """The bounce rate is above its limit (whether or not there are enough to judge)."""
        return _over(self.bounces, self.sent, self.limits.bounce_limit)

    @property
    def complaints_over(self) -> bool:
        return _over(self.complaints, self.sent, self.limits.complaint_limit)

    def bounce_text(self) -> str:
        """``1.20%/5%``."""
        return f"{self.bounce_rate:.2f}%/{self.limits.bounce_limit:g}%"

    def complaint_text(self) -> str:
        """``0.050%/0.1%``."""
        return f"{self.complaint_rate:.3f}%/{self.limits.complaint_limit:g}%"

    def breaches(self) -> list[str]:
        """Why the guard pauses the account (D15): each rate above its limit, once enough
        messages were sent; empty when it may send."""
        if not self.judged:
            return []
        found = []
        if self.bounces_over:
            found.append(
                f"bounce rate {self.bounce_rate:.2f} % > {self.limits.bounce_limit:g} % "
                f"({self.bounces} of {self.sent} in 24 h)"
            )
        if self.complaints_over:
            found.append(
                f"complaint rate {self.complaint_rate:.3f} % > "
                f"{self.limits.complaint_limit:g} % ({self.complaints} of {self.sent} in 24 h)"
            )
        return found

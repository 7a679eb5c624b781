"""What a channel provides: one async interface to send a message through a sender account.

``open()`` once, ``prepare()`` once per campaign, ``send()`` per delivery, ``close()`` at the
end. ``send`` answers ``Sent`` (with the provider's id), ``Retry`` (a temporary failure, with
how long to wait when the provider says) or ``Failed`` (permanent, saying whether it is a hard
bounce and whether the address must be suppressed). It never raises for a delivery's own
problem: exceptions are for broken channels (the dispatcher retries those deliveries).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

from engine.addresses import Checked
from engine.campaign import Campaign
from engine.clock import Clock
from engine.config import AccountSettings, Config, Configurable
from engine.tokens import Signer


class Sent(NamedTuple):
    """Handed to the provider (its id for the message; the e-mail's Message-ID)."""

    provider_id: str | None = None
    message_id: str | None = None


class Retry(NamedTuple):
    """A temporary failure (SMTP 4xx, connection errors, HTTP 429/5xx, D13)."""

    reason: str
    retry_after: float | None = None


class Failed(NamedTuple):
    """A permanent failure (D13). ``bounce``: a hard bounce (the address is suppressed);
    ``suppress``: another reason to suppress the address (``stop``: the recipient opted out)."""

    reason: str
    bounce: bool = False
    suppress: str | None = None


SendResult = Sent | Retry | Failed


@dataclass(frozen=True)
class DeliveryInfo:
    """One recipient of a campaign, as the channel sees it."""

    id: int
    campaign_id: int
    address: str
    variables: Mapping[str, Any]
    #: per-recipient content from the file (the row's SMS text, N28)
    message: str | None = None


@dataclass(frozen=True)
class ChannelContext:
    """What a channel may use besides its account: the configuration, the clock, the signer of
    tracking and bounce tokens (None without ``[tracking]``)."""

    config: Config
    clock: Clock
    signer: Signer | None = None


class CampaignProblem(Exception):
    """A campaign cannot be sent as configured (no approved template…): it is held."""


class Channel(Configurable, ABC):
    """A way of sending. Subclasses set ``name`` (an ``[accounts.NAME]`` ``channel``), the
    address kind they send to, and ``config_keys``."""

    name: ClassVar[str]
    address_kind: ClassVar[Literal["email", "phone"]]
    default_concurrency: ClassVar[int] = 8

    def __init__(self, account: AccountSettings, context: ChannelContext) -> None:
        self.account = account
        self.context = context

    @classmethod
    def validate_account(cls, account: AccountSettings) -> list[tuple[str, str]]:
        """Checks across keys at config load: (key, message) pairs."""
        return []

    @property
    def concurrency(self) -> int:
        """How many messages may be in flight at once on this account."""
        return self.account.concurrency or self.default_concurrency

    def describe(self) -> str:
        """One line for operators: where this account sends (never a secret)."""
        return f"{self.name} ({'sandbox' if self.account.sandbox else 'live'})"

    @abstractmethod
    def normalise(self, address: str) -> Checked:
        """The address in the form the provider takes (E.164, a valid e-mail), or why not."""

    async def open(self) -> None:
        """Connect (a pool of SMTP connections, an HTTP session…)."""

    async def close(self) -> None:
        """Disconnect; never raises."""

    @abstractmethod
    def prepare(self, campaign: Campaign) -> Any:
        """Compile what is the same for every recipient (templates, headers); raise
        ``CampaignProblem`` when the campaign cannot be sent. Called once per campaign."""

    @abstractmethod
    async def send(self, prepared: Any, delivery: DeliveryInfo) -> SendResult:
        """Render and send one message."""

    def tracked_links(self, prepared: Any) -> Sequence[str]:
        """The URLs of the tracked links a prepared campaign carries, by position from 1:
        the engine records them before the first send, and the click endpoint redirects to
        them (never to a URL read from the request). None by default."""
        return ()

"""What a plugin mounts on the tracking endpoint: the routes its provider calls back — status
callbacks, inbound replies and opt-outs, bounce and complaint notifications (plugin API v1,
see docs/plugins.md).

A ``Webhooks`` subclass is registered with ``register_webhooks``; the endpoint makes one per
process with a ``WebhookContext`` and mounts its ``routes()``. Each handler checks its
provider's signature itself (a request that does not prove where it comes from gets 403 and
changes nothing), turns what it was told into ``Signal`` values and hands them to
``context.apply``: the engine maps them to deliveries, applies each once (``dedupe_key``),
never lets a status regress, suppresses on hard bounces, complaints and STOP replies, and
tells the observers.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

from engine.clock import Clock
from engine.config import Config
from engine.events import Signal
from engine.tokens import Signer

if TYPE_CHECKING:
    from aiohttp import web

#: opt-out keywords (D4): Portuguese ones and the carriers' standard ones; a message that is
#: exactly one of them (any case, surrounding spaces and punctuation) suppresses the number
STOP_WORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
    | {"SAIR", "PARAR", "CANCELAR", "DESCADASTRAR"}
)
#: opt-in keywords: they lift a suppression that a STOP made (and only that)
START_WORDS = frozenset({"START", "YES", "UNSTOP"})


def keyword(body: str) -> Literal["stop", "start"] | None:
    """``stop`` or ``start`` when an inbound message is exactly an opt-out or opt-in
    keyword (for a reply ``Signal``'s ``detail["keyword"]``), else None."""
    word = re.sub(r"[\s.!;,]+", "", body).upper()
    if word in STOP_WORDS:
        return "stop"
    if word in START_WORDS:
        return "start"
    return None


class WebhookContext(Protocol):
    """What a webhook handler may use (the tracking endpoint provides it)."""

    config: Config
    clock: Clock
    #: signs and checks the engine's tokens; maps a VERP address or a Message-ID to its
    #: delivery (``signer.delivery_named``)
    signer: Signer
    #: the endpoint's public address (``[tracking] public_url``): validate signatures that
    #: cover the URL against it, not against the request's, which a proxy rewrote
    public_url: str

    async def apply(self, signals: Iterable[Signal]) -> None:
        """Apply what came back, in one transaction, before answering the provider (so a
        provider that retries on an error never loses an event)."""

    async def delivery_by_provider_id(self, provider_id: str) -> int | None:
        """The delivery a provider's message id (``Sent.provider_id``) belongs to."""

    def count(self, route: str, outcome: str) -> None:
        """Count a request in ``/metrics`` (``disparo_tracking_requests_total``)."""


Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]


@dataclass(frozen=True)
class Route:
    """One route: ``method``, an aiohttp path pattern (``/twilio/{account}/status``) and the
    handler (an ``async def`` taking the request and answering a response)."""

    method: Literal["GET", "POST"]
    path: str
    handler: Handler


class Webhooks(ABC):
    """A plugin's routes on the tracking endpoint. Subclasses set ``name`` and implement
    ``routes``; their handlers keep their own state (caches, clients) on ``self``."""

    name: ClassVar[str]

    def __init__(self, context: WebhookContext) -> None:
        self.context = context

    @abstractmethod
    def routes(self) -> Sequence[Route]:
        """The routes to mount; their paths must not be the engine's own (``/o/``, ``/c/``,
        ``/u/``, ``/healthz``, ``/metrics``) nor another plugin's."""

    async def close(self) -> None:  # noqa: B027 - optional: most webhooks hold nothing
        """Release what the handlers hold (HTTP sessions…) when the endpoint stops."""

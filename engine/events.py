"""Event values: what came back from outside (``Signal``, which the feedback store applies),
and what observer hooks are told happened to a delivery or a campaign."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any


def _frozen(detail: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(detail or {}))


@dataclass(frozen=True)
class DeliveryEvent:
    """Something that happened to one delivery.

    ``kind`` is one of ``sent``, ``delivered``, ``failed``, ``bounced``, ``complaint``,
    ``open``, ``click``, ``unsubscribe``, ``reply``, ``stop``, ``expired``, ``suppressed``,
    ``skipped``, ``retry``.
    """

    kind: str
    at: datetime
    campaign_id: int | None
    delivery_id: int | None
    channel: str | None
    address: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", _frozen(self.detail))


@dataclass(frozen=True)
class CampaignEvent:
    """A campaign changed state (``status`` is the new one) or released a batch.

    ``kind`` is ``created``, ``status`` or ``batch-released``; ``actor`` says who or what made
    the change (``engine``, ``guard``, ``deadline``, or an operator's name).
    """

    kind: str
    at: datetime
    campaign_id: int
    status: str | None = None
    previous: str | None = None
    actor: str = "engine"
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "detail", _frozen(self.detail))


@dataclass(frozen=True)
class Signal:
    """One thing that came back, from the tracking endpoint, a webhook or the bounce mailbox
    (``origin`` says which). ``kind`` and its ``detail``:

    - ``open``: nothing required (what the client is, ``agent``, if known);
    - ``click``: ``link`` (the link's position in the campaign);
    - ``unsubscribe``: ``scope`` (``campaign`` or ``all``), ``via``;
    - ``delivered``: the provider delivered it (``recipient``);
    - ``deferred``: the provider will try again later (``status``, ``diagnostic``);
    - ``status``: a provider's status word, ``status``, ranked ``scheduled``/``accepted`` <
      ``queued`` < ``sending`` < ``sent`` < ``delivered``/``undelivered``/``failed``/
      ``canceled`` < ``read`` (statuses never regress; ``delivered`` and ``read`` also
      record a delivery and an open); ``error_code``, ``hard`` (bool: the address is bad),
      ``stop`` (bool: the recipient opted out);
    - ``bounce``: ``hard`` (bool), ``status`` (e.g. 5.1.1), ``diagnostic``;
    - ``complaint``: ``feedback_type``;
    - ``reply``: ``body``, ``to``, ``keyword`` (``stop``, ``start`` or absent).

    ``delivery_id`` names the delivery (a webhook maps the provider's id with
    ``WebhookContext.delivery_by_provider_id``, a report its VERP address or Message-ID with
    ``Signer.delivery_named``); ``address`` is needed only for a reply (the sender's number,
    E.164). ``dedupe_key`` makes a signal that comes twice (a provider's retry) count once.
    """

    kind: str
    at: datetime
    origin: str
    delivery_id: int | None = None
    dedupe_key: str | None = None
    address: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)

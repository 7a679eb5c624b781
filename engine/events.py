"""Event values handed to observer hooks: what happened to a delivery or a campaign."""

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

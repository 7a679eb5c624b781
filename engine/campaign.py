"""The campaign (D1–D18): one value for every stage — what a format creates, what the store
holds, what the dispatcher sends, what a channel prepares, what the CLI and the UI show.

A campaign comes from a file (any format), an operator (``campaign new``, the UI's form) or
an API client; its ``origin`` says which. Its ``content`` (subject, body, template…) is
read only where it is needed: lists of campaigns leave it empty.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from engine.schedule import Pacing

#: the states of a campaign (D1); a ``draft`` (an operator's campaign not started yet) has no
#: recipients and the dispatcher never sees it
STATUSES = ("draft", "scheduled", "sending", "paused", "held", "completed", "cancelled", "expired")
#: states that are over
FINISHED = frozenset({"completed", "cancelled", "expired"})
#: states that still hold work on their account
ACTIVE = ("scheduled", "sending", "paused", "held")

#: the per-campaign totals (D18), kept by the transactions that change deliveries;
#: "opened", "clicked" and "unsubscribed" count recipients, "clicks" every click
COUNTERS = (
    "sent",
    "delivered",
    "failed",
    "bounced",
    "suppressed",
    "skipped",
    "expired",
    "cancelled",
    "opened",
    "clicked",
    "clicks",
    "unsubscribed",
    "complaints",
)
#: totals of recipients that need no more work (the rest is pending, in flight or retried)
SETTLED_COUNTERS = ("sent", "failed", "bounced", "suppressed", "skipped", "expired", "cancelled")

AddressKind = Literal["email", "phone"]


@dataclass(frozen=True)
class Content:
    """What a campaign sends: subject and body for e-mail, text for SMS, an approved
    template for WhatsApp, who it comes from, and the channel's own settings."""

    subject: str | None = None
    body: str | None = None
    #: an SMS text (N28) or the WhatsApp template's name (``_nt``)
    template: str | None = None
    whatsapp_number: str | None = None
    #: the sender address asked for (``_ce``, a CONF's REMETENTE_EMAIL)
    sender: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Campaign:
    """A campaign. ``id`` is 0 until the store has it."""

    id: int = 0
    name: str
    channel: str
    #: the sender account ([accounts.NAME]); None while none can send it (held, D10)
    account: str | None = None
    wallet: str | None = None
    #: ``file``, ``operator`` or ``api:<client>``
    origin: str = "file"
    #: which contact address the channel sends to
    address_kind: AddressKind = "email"
    status: str = "scheduled"
    #: why it is held, paused, cancelled or expired
    status_reason: str | None = None
    priority: int = 0
    created_at: datetime | None = None
    start_at: datetime
    deadline: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pacing: Pacing | None = None
    #: ``_x``: drop recipients with an interaction in the last hours (D4)
    exclude_recent_hours: int | None = None
    #: deliveries made at creation (D3)
    recipients: int = 0
    #: of those, the ones cut into batches (the rest was suppressed or skipped at creation)
    audience: int = 0
    batches: int = 0
    released_batches: int = 0
    #: seconds spent paused or held, and since when it is (its schedule shifts by it)
    paused_seconds: int = 0
    paused_since: datetime | None = None
    counters: Mapping[str, int] = field(default_factory=dict)
    #: what it sends; left empty where it was not read (lists of campaigns)
    content: Content = Content()
    mailing_id: int | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def sent(self) -> int:
        return self.counters.get("sent", 0)

    @property
    def remaining(self) -> int:
        """Recipients not settled yet (pending, in flight or waiting for a retry)."""
        settled = sum(self.counters.get(k, 0) for k in SETTLED_COUNTERS)
        return max(0, self.recipients - settled)

    def paused_for(self, now: datetime) -> timedelta:
        """Time spent paused or held until ``now``."""
        running = now - self.paused_since if self.paused_since is not None else timedelta(0)
        return timedelta(seconds=self.paused_seconds) + max(running, timedelta(0))

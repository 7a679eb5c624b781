"""Amazon SES notifications (bounces, complaints, deliveries) through SNS, mounted on the
tracking endpoint as ``POST /ses`` by the e-mail channel plugin.

Only when ``[tracking] ses_topics`` lists the SNS topics to accept: every message's
signature and signing certificate are verified (``channels._sns``), other topics get 403.
Reports are mapped to their delivery by the VERP return path or the signed Message-ID.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from engine.events import Signal
from engine.plugins.webhook import Route, Webhooks

if TYPE_CHECKING:
    from aiohttp import web

    from channels._sns import Fetch, SesEvent

log = logging.getLogger(__name__)


class SesWebhooks(Webhooks):
    """``POST /ses``: SES notifications delivered by SNS over HTTPS."""

    name = "ses"
    #: how certificates and subscription confirmations are fetched (default: verified HTTPS)
    fetch: ClassVar[Fetch | None] = None

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/ses", self.ses),)

    def _verifier(self) -> Any:
        if not hasattr(self, "_sns"):
            from channels._sns import SnsVerifier

            tracking = self.context.config.tracking
            topics = tracking.ses_topics if tracking is not None else ()
            self._sns = (
                SnsVerifier(allowed_topics=topics, fetch=type(self).fetch) if topics else None
            )
        return self._sns

    async def ses(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        from channels._sns import SnsError, parse_ses

        context = self.context
        sns = self._verifier()
        if sns is None:
            context.count("ses", "refused")
            return web.Response(status=404, text="not found\n")
        try:
            message = await sns.verify(await request.read())
        except SnsError as exc:
            context.count("ses", "forbidden")
            log.warning("refused an SNS message: %s", exc)
            raise web.HTTPForbidden(text=f"{exc}\n") from None
        kind = message.get("Type")
        if kind == "SubscriptionConfirmation":
            await sns.confirm_subscription(message)
            context.count("ses", "subscribed")
            return web.Response(text="subscribed\n")
        if kind != "Notification":
            context.count("ses", "ignored")
            return web.Response(text="ok\n")
        try:
            event = parse_ses(json.loads(message.get("Message", "")))
        except ValueError:
            context.count("ses", "unreadable")
            return web.Response(text="ok\n")
        signals = self._signals(event, str(message.get("MessageId")))
        if not signals:
            context.count("ses", "unknown")
            return web.Response(text="ok\n")
        await context.apply(signals)
        context.count("ses", "ok")
        return web.Response(text="ok\n")

    def _signals(self, event: SesEvent, message_id: str) -> list[Signal]:
        context = self.context
        delivery = context.signer.delivery_named(
            [event.source] if event.source else [], event.message_id_header
        )
        if delivery is None:
            return []
        now = context.clock.now()
        signals = []
        for i, r in enumerate(event.recipients or ()):
            key = f"ses:{message_id}:{i}"
            if event.kind == "bounce":
                detail: dict[str, Any] = {
                    "hard": r.severity == "hard",
                    "status": r.status,
                    "diagnostic": r.diagnostic,
                    "recipient": r.address,
                    "bounce_type": event.bounce_type,
                }
                signals.append(Signal("bounce", now, "ses", delivery, key, detail=detail))
            elif event.kind == "complaint":
                detail = {"feedback_type": event.feedback_type, "recipient": r.address}
                signals.append(Signal("complaint", now, "ses", delivery, key, detail=detail))
            elif event.kind == "delivery":
                detail = {"recipient": r.address}
                signals.append(Signal("delivered", now, "ses", delivery, key, detail=detail))
        return signals

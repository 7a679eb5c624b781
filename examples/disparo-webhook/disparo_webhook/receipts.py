"""What the hook reports back, mounted on disparo's tracking endpoint as
``POST /webhook/{account}/receipts``: delivery receipts for the messages it was sent, and
the replies recipients send (a reply that is exactly STOP, PARAR… suppresses the number).

Each request carries ``X-Hook-Signature: sha256=<hex>``, the HMAC-SHA256 of its body with the
account's token: a request without a valid one gets 403 and changes nothing. The body is
JSON, one receipt or reply::

    {"type": "status", "id": "msg-1", "status": "delivered"}
    {"type": "status", "id": "msg-2", "status": "failed", "permanent": true}
    {"type": "reply", "id": "in-7", "from": "+5511988880001", "text": "PARAR"}
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from engine.addresses import normalise_phone
from engine.events import Signal
from engine.plugins.webhook import Route, Webhooks, keyword

if TYPE_CHECKING:
    from aiohttp import web

# aiohttp is imported when a request comes, not when plugins load (every `disparo` command
# loads them; few serve the tracking endpoint)

#: the delivery statuses the engine understands in a ``status`` signal
STATUSES = frozenset({"queued", "sent", "delivered", "read", "undelivered", "failed"})


def signature(token: str, body: bytes) -> str:
    """The ``X-Hook-Signature`` of ``body`` for an account's token."""
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


class WebhookReceipts(Webhooks):
    """Receipts and replies from the hooks of the ``webhook`` accounts."""

    name = "webhook"

    def routes(self) -> Sequence[Route]:
        return (Route("POST", "/webhook/{account}/receipts", self.receive),)

    async def _signed(self, request: web.Request) -> dict[str, Any]:
        """The request's JSON when it is signed with its account's token (else 404 or 403)."""
        from aiohttp import web

        context = self.context
        account = context.config.accounts.get(request.match_info["account"])
        if account is None or account.channel != "webhook" or account.sandbox:
            context.count("webhook", "refused")
            raise web.HTTPNotFound(text="not found\n")
        body = await request.read()
        expected = signature(account.options["token"].reveal(), body)
        given = request.headers.get("X-Hook-Signature", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            context.count("webhook", "forbidden")
            raise web.HTTPForbidden(text="invalid signature\n")
        try:
            found = json.loads(body)
        except ValueError:
            found = None
        if not isinstance(found, dict):
            context.count("webhook", "invalid")
            raise web.HTTPBadRequest(text="expected a JSON object\n")
        return found

    async def receive(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        context = self.context
        body = await self._signed(request)
        now = context.clock.now()
        if body.get("type") == "reply":
            phone = normalise_phone(str(body.get("from", ""))).value
            if phone is None:
                context.count("webhook", "unknown")
                return web.Response(status=204)
            text = str(body.get("text", ""))
            found = keyword(text)  # "stop", "start" or None
            signal = Signal(
                "reply",
                now,
                "webhook",
                address=phone,
                dedupe_key=f"webhook-in:{body['id']}" if body.get("id") else None,
                detail={"body": text[:1600], **({"keyword": found} if found else {})},
            )
        else:
            status = str(body.get("status", "")).lower()
            if status not in STATUSES:
                context.count("webhook", "invalid")
                raise web.HTTPBadRequest(text=f"status is one of {sorted(STATUSES)}\n")
            provider_id = str(body.get("id", ""))
            delivery = await context.delivery_by_provider_id(provider_id)
            if delivery is None:  # not one of ours (or long gone): nothing to do
                context.count("webhook", "unknown")
                return web.Response(status=204)
            signal = Signal(
                "status",
                now,
                "webhook",
                delivery_id=delivery,
                dedupe_key=f"webhook:{provider_id}:{status}",  # a retried receipt counts once
                detail={
                    "status": status,
                    "provider_id": provider_id,
                    **({"hard": True} if body.get("permanent") else {}),
                },
            )
        await context.apply([signal])  # stored before we answer: a retry never loses it
        context.count("webhook", "ok")
        return web.Response(status=204)

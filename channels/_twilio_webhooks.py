"""The Twilio channels' webhooks: status callbacks and incoming messages, mounted on the
tracking endpoint as ``POST /twilio/{account}/status`` and ``/twilio/{account}/inbound``.

Each request is validated with the twilio library's ``RequestValidator`` against the URL as
configured (``[tracking] public_url``, so it works behind a proxy) with the account's auth
token; a retry with the same ``I-Twilio-Idempotency-Token`` is applied once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from engine.addresses import normalise_phone
from engine.events import Signal
from engine.plugins.webhook import Route, Webhooks, keyword

if TYPE_CHECKING:
    from aiohttp import web

# aiohttp and the twilio library are imported when a request comes, not when plugins load:
# every `disparo` process loads this module (its registration), few serve webhooks

log = logging.getLogger(__name__)

#: Twilio error codes in a status callback that mean the number itself is bad
HARD_TWILIO = frozenset({21211, 21614, 30005, 30006, 63003, 63024})
#: the recipient replied STOP
STOP_TWILIO = 21610


def _twiml() -> web.Response:
    from aiohttp import web

    return web.Response(
        text='<?xml version="1.0" encoding="UTF-8"?><Response></Response>',
        content_type="text/xml",
    )


class TwilioWebhooks(Webhooks):
    """Status callbacks and incoming messages of the Twilio accounts."""

    name = "twilio"

    def routes(self) -> Sequence[Route]:
        return (
            Route("POST", "/twilio/{account}/status", self.status),
            Route("POST", "/twilio/{account}/inbound", self.inbound),
        )

    async def _form(self, request: web.Request, route: str) -> Mapping[str, str]:
        """The callback's form when its signature is valid for one of our accounts."""
        from aiohttp import web
        from twilio.request_validator import RequestValidator

        context = self.context
        name = request.match_info["account"]
        account = context.config.accounts.get(name)
        secret = account.options.get("auth_token") if account is not None else None
        if account is None or account.sandbox or secret is None:
            context.count(route, "refused")
            raise web.HTTPNotFound(text="not found\n")
        form = {k: str(v) for k, v in (await request.post()).items()}
        url = context.public_url + request.path_qs
        signature = request.headers.get("X-Twilio-Signature", "")
        if not signature or not RequestValidator(secret.reveal()).validate(url, form, signature):
            context.count(route, "forbidden")
            log.warning("refused a Twilio %s callback with a bad signature for %s", route, name)
            raise web.HTTPForbidden(text="invalid signature\n")
        sid = account.options.get("account_sid")
        if sid and form.get("AccountSid") and form["AccountSid"] != sid:
            context.count(route, "forbidden")
            raise web.HTTPForbidden(text="another account\n")
        return form

    async def status(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        context = self.context
        form = await self._form(request, "twilio-status")
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
        delivery = await context.delivery_by_provider_id(sid) if sid else None
        if delivery is None or not status:
            context.count("twilio-status", "unknown")
            return web.Response(status=204)
        code = int(form["ErrorCode"]) if form.get("ErrorCode", "").isdigit() else None
        token = request.headers.get("I-Twilio-Idempotency-Token")
        await context.apply(
            [
                Signal(
                    "status",
                    context.clock.now(),
                    "twilio",
                    delivery_id=delivery,
                    dedupe_key=f"twilio:{token}" if token else f"twilio:{sid}:{status}",
                    detail={
                        "status": status,
                        "provider_id": sid,
                        **({"error_code": code} if code else {}),
                        **({"hard": True} if code in HARD_TWILIO else {}),
                        **({"stop": True} if code == STOP_TWILIO else {}),
                    },
                )
            ]
        )
        context.count("twilio-status", "ok")
        return web.Response(status=204)

    async def inbound(self, request: web.Request) -> web.StreamResponse:
        context = self.context
        form = await self._form(request, "twilio-inbound")
        sender = form.get("From", "")
        whatsapp = sender.startswith("whatsapp:")
        phone = normalise_phone(sender.removeprefix("whatsapp:")).value
        if phone is None:
            context.count("twilio-inbound", "unknown")
            return _twiml()
        body = form.get("Body", "")
        found = keyword(body) or (
            {"stop": "stop", "start": "start"}.get(form.get("OptOutType", "").lower())
        )
        token = request.headers.get("I-Twilio-Idempotency-Token")
        sid = form.get("MessageSid") or form.get("SmsSid") or ""
        await context.apply(
            [
                Signal(
                    "reply",
                    context.clock.now(),
                    "twilio",
                    address=phone,
                    dedupe_key=(
                        f"twilio-in:{sid}" if sid else (f"twilio:{token}" if token else None)
                    ),
                    detail={
                        "body": body[:1600],
                        "to": form.get("To", ""),
                        "channel": "whatsapp" if whatsapp else "sms",
                        "provider_id": sid,
                        **({"keyword": found} if found else {}),
                    },
                )
            ]
        )
        context.count("twilio-inbound", "ok")
        return _twiml()

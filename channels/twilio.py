"""SMS and WhatsApp through the official twilio client, with its async HTTP client.

``sms-long`` and ``sms-short`` send from a number (``from_number``) or a Messaging Service;
``whatsapp-exclusive`` sends from the campaign's ``_nw`` number, ``whatsapp-shared`` from the
account's pool, ``whatsapp-prospect`` from the prospect sender, each through an approved
template (``ContentSid`` + ``ContentVariables``, ``[templates.NAME]`` in the config). With
``sandbox = true`` nothing leaves the machine: messages are appended to a JSON-lines outbox.

Twilio's errors map to D13: 429 and 5xx are temporary (honouring Retry-After), 21610 (the
recipient replied STOP) suppresses the number, invalid numbers are permanent.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from engine import hookimpl
from engine.addresses import Checked, normalise_phone
from engine.campaign import Campaign
from engine.config import AccountSettings, Key
from engine.plugins.channel import (
    CampaignProblem,
    Channel,
    ChannelContext,
    DeliveryInfo,
    Failed,
    Retry,
    SendResult,
    Sent,
)
from engine.render import compile_text, trial_render

if TYPE_CHECKING:
    # the twilio library is imported when a live account opens (channels._twilio_http):
    # loading the plugins, which every `disparo` process does, stays light
    from twilio.base.exceptions import TwilioRestException
    from twilio.http.response import Response
    from twilio.rest import Client

    from channels._twilio_http import TwilioHttp

TWILIO_API = "https://api.twilio.com"
#: the last HTTP response seen by this task (asyncio gives each send its own copy)
LAST_RESPONSE: contextvars.ContextVar[Response | None] = contextvars.ContextVar(
    "twilio_last_response", default=None
)
#: Twilio error codes that say the number itself can never receive: treated as hard bounces
INVALID_NUMBER = {
    21211: "invalid 'To' number",
    21614: "not a mobile number",
    21612: "the number cannot be reached",
    63003: "not a WhatsApp number",
}


@dataclass(frozen=True)
class PreparedMessage:
    campaign_id: int
    body: Any | None  # a compiled template (SMS)
    content_sid: str | None = None
    variables: tuple[str, ...] = ()
    from_number: str | None = None


#: a short code: 3 to 8 digits (Brazilian carriers assign 5-digit ones, such as 28282)
SHORT_CODE = re.compile(r"[0-9]{3,8}")

#: the client's keyword arguments → the form fields of Twilio's Messages API
FORM_NAMES = {
    "to": "To",
    "from_": "From",
    "body": "Body",
    "content_sid": "ContentSid",
    "content_variables": "ContentVariables",
    "messaging_service_sid": "MessagingServiceSid",
    "status_callback": "StatusCallback",
}


class TwilioChannel(Channel):
    """Common ground of the Twilio channels."""

    address_kind = "phone"
    default_concurrency = 8
    whatsapp: ClassVar[bool] = False
    config_keys: ClassVar[dict[str, Key]] = {
        "account_sid": Key("str", None, "The Twilio Account SID (AC…); required unless sandbox."),
        "auth_token": Key("secret", None, "The Twilio auth token; required unless sandbox."),
        "from_number": Key(
            "str", None, help="The sending number: E.164 (+5511…), or a short code on sms-short."
        ),
        "messaging_service_sid": Key(
            "str", None, "A Messaging Service (MG…) that picks the sender, instead of from_number."
        ),
        "api_base_url": Key("str", None, help="A Twilio-compatible API; default Twilio's."),
        "outbox": Key(
            "path",
            None,
            help="Sandbox: the JSON-lines file messages go to; default "
            "outbox/<account>.jsonl beside the config file.",
            target="created",
        ),
        "timeout": Key("duration", timedelta(seconds=30), "How long one API request may take."),
    }

    @classmethod
    def validate_account(cls, account: AccountSettings) -> list[tuple[str, str]]:
        o = account.options
        found = []
        if not account.sandbox:
            if not o.get("account_sid"):
                found.append(("account_sid", "missing: the Twilio Account SID (AC…)"))
            if o.get("auth_token") is None:
                found.append(("auth_token", "missing: `auth_token_env` or `auth_token_file`"))
        number = o.get("from_number")
        problem = cls.sender_problem(str(number)) if number else None
        if problem:
            found.append(("from_number", problem))
        return found

    @classmethod
    def sender_problem(cls, number: str) -> str | None:
        """Why ``from_number`` cannot send on this channel, or None: a number in E.164."""
        if SHORT_CODE.fullmatch(number.strip()):
            return (
                f'`{number}` is a short code: a short code sends on `channel = "sms-short"`; '
                "this channel sends from a phone number in E.164 (+5511…)"
            )
        if not normalise_phone(number).ok:
            return f"`{number}` is not a valid phone number (E.164, such as +5511999990000)"
        return None

    def __init__(self, account: AccountSettings, context: ChannelContext) -> None:
        super().__init__(account, context)
        self.client: Client | None = None
        self.http: TwilioHttp | None = None
        self._outbox: Any = None
        self._outbox_lock = asyncio.Lock()

    def describe(self) -> str:
        if self.account.sandbox:
            return f"{self.name} sandbox → {self._outbox_path()}"
        base = self.account.options.get("api_base_url") or TWILIO_API
        return f"{self.name} via {base} ({self.account.options.get('account_sid')})"

    def _outbox_path(self) -> Path:
        path: Path | None = self.account.options.get("outbox")
        return path or self.context.config.root / "outbox" / f"{self.account.name}.jsonl"

    async def open(self) -> None:
        if self.account.sandbox:
            path = self._outbox_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._outbox = path.open("a", encoding="utf-8")
            return
        from channels._twilio_http import Client, TwilioHttp

        o = self.account.options
        self.http = TwilioHttp(o.get("api_base_url"), o["timeout"].total_seconds())
        self.client = Client(o["account_sid"], o["auth_token"].reveal(), http_client=self.http)

    async def close(self) -> None:
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None
        if self.http is not None and self.http.session is not None:
            await self.http.session.close()
        self.http = self.client = None

    def normalise(self, address: str) -> Checked:
        return normalise_phone(address.removeprefix("whatsapp:"), mobile=True)

    def _status_callback(self) -> str | None:
        tracking = self.context.config.tracking
        return f"{tracking.public_url}/twilio/{self.account.name}/status" if tracking else None

    async def _post(self, delivery: DeliveryInfo, fields: dict[str, Any]) -> SendResult:
        """Create the message (or write it to the sandbox outbox)."""
        callback = self._status_callback()
        if callback:
            fields["status_callback"] = callback
        if self.account.sandbox:
            record = {
                "at": self.context.clock.now().isoformat(),
                "account": self.account.name,
                "channel": self.name,
                "campaign_id": delivery.campaign_id,
                "delivery_id": delivery.id,
                # the form fields Twilio would receive, under their names in its API
                **{FORM_NAMES[k]: v for k, v in fields.items() if v is not None},
            }
            async with self._outbox_lock:
                self._outbox.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._outbox.flush()
            return Sent(provider_id=f"SANDBOX{delivery.id}")
        assert self.client is not None
        from channels._twilio_http import TRANSPORT_ERRORS, TwilioRestException

        LAST_RESPONSE.set(None)
        try:
            message = await self.client.messages.create_async(
                **{k: v for k, v in fields.items() if v is not None}
            )
        except TwilioRestException as exc:
            return self._error(exc)
        except TRANSPORT_ERRORS as exc:
            return Retry(f"Twilio could not be reached: {exc}", scope="account")
        return Sent(provider_id=message.sid)

    def _error(self, exc: TwilioRestException) -> SendResult:
        code, status = exc.code, exc.status
        what = f"Twilio {status}" + (f" error {code}" if code else "") + f": {exc.msg}"
        if status == 429 or status >= 500:
            response = LAST_RESPONSE.get()
            after = None
            if response is not None and response.headers:
                raw = response.headers.get("Retry-After")
                if raw and str(raw).strip().isdigit():
                    after = float(raw)
            return Retry(what, after, scope="account")  # throttled or down: the account waits
        if code == 21610:
            return Failed(f"the recipient opted out (STOP): {what}", suppress="stop")
        if code in INVALID_NUMBER:
            return Failed(f"{INVALID_NUMBER[code]}: {what}", bounce=True)
        if status in (401, 403):
            return Retry(f"Twilio refused the account's credentials: {what}", 300, scope="account")
        return Failed(what)


class SmsChannel(TwilioChannel):
    """SMS from a number or a Messaging Service."""

    @classmethod
    def validate_account(cls, account: AccountSettings) -> list[tuple[str, str]]:
        found = super().validate_account(account)
        o = account.options
        if not account.sandbox and not o.get("from_number") and not o.get("messaging_service_sid"):
            found.append(("from_number", "give `from_number` or `messaging_service_sid`"))
        return found

    def prepare(self, campaign: Campaign) -> PreparedMessage:
        body = compile_text(campaign.content.body) if campaign.content.body else None
        if body is not None:
            from jinja2 import TemplateError

            try:
                trial_render(body)
            except TemplateError as exc:
                raise CampaignProblem(f"the SMS template cannot be used: {exc}") from None
        return PreparedMessage(campaign.id, body)

    async def send(self, prepared: PreparedMessage, delivery: DeliveryInfo) -> SendResult:
        checked = self.normalise(delivery.address)
        if checked.value is None:
            return Failed(checked.error or "not a valid mobile number")
        if delivery.message:
            text = delivery.message  # the row's own text (N28), sent as written
        elif prepared.body is not None:
            try:
                text = prepared.body.render(dict(delivery.variables)).strip()
            except Exception as exc:
                return Failed(f"the message could not be rendered: {exc}")
        else:
            return Failed("no message text for this recipient (N28)")
        o = self.account.options
        return await self._post(
            delivery,
            {
                "to": checked.value,
                "from_": o.get("from_number"),
                "body": text,
                "messaging_service_sid": o.get("messaging_service_sid"),
            },
        )


class SmsLongChannel(SmsChannel):
    """SMS from a long code (an ordinary number in E.164) or a Messaging Service."""

    name = "sms-long"
    file_word = "smslong"
    #: a long code (an ordinary number): carriers filter numbers that send much faster
    default_rate = 10.0


class SmsShortChannel(SmsChannel):
    """SMS from a short code (``from_number = "28282"``) or a Messaging Service."""

    name = "sms-short"
    file_word = "smsshort"
    #: a short code is provisioned for throughput (Twilio: 100 messages a second)
    default_rate = 100.0

    @classmethod
    def sender_problem(cls, number: str) -> str | None:
        """A short code: 3 to 8 digits, as the carriers assign them."""
        if SHORT_CODE.fullmatch(number.strip()):
            return None
        return (
            f"`{number}` is not a short code (3 to 8 digits, such as 28282): a phone number "
            'sends on `channel = "sms-long"`'
        )


class WhatsAppChannel(TwilioChannel):
    #: a WhatsApp Business sender (Twilio: up to 80 messages a second)
    default_rate = 80.0

    """WhatsApp through an approved template (N16)."""

    whatsapp = True

    def _sender(self, campaign: Campaign) -> str | None:
        return self.account.options.get("from_number")

    def prepare(self, campaign: Campaign) -> PreparedMessage:
        templates = self.context.config.templates
        if not campaign.content.template or campaign.content.template not in templates:
            raise CampaignProblem(
                f"the WhatsApp template `{campaign.content.template}` (_nt) is not configured: add "
                f"[templates.{campaign.content.template}] with its content_sid"
            )
        template = templates[campaign.content.template]
        sender = self._sender(campaign)
        if sender is None and not self.account.options.get("messaging_service_sid"):
            raise CampaignProblem(
                f"account {self.account.name} has no sending number for {self.name}"
            )
        return PreparedMessage(campaign.id, None, template.content_sid, template.variables, sender)

    def _from(self, prepared: PreparedMessage, to: str) -> str | None:
        return f"whatsapp:{prepared.from_number}" if prepared.from_number else None

    async def send(self, prepared: PreparedMessage, delivery: DeliveryInfo) -> SendResult:
        checked = self.normalise(delivery.address)
        if checked.value is None:
            return Failed(checked.error or "not a valid mobile number")
        values = {
            str(i): str(delivery.variables.get(name, "") or "")
            for i, name in enumerate(prepared.variables, start=1)
        }
        return await self._post(
            delivery,
            {
                "to": f"whatsapp:{checked.value}",
                "from_": self._from(prepared, checked.value),
                "content_sid": prepared.content_sid,
                "content_variables": json.dumps(values, ensure_ascii=False) if values else None,
                "messaging_service_sid": self.account.options.get("messaging_service_sid"),
            },
        )


class WhatsAppExclusiveChannel(WhatsAppChannel):
    """From the campaign's exclusive number (``_nw``, N15)."""

    name = "whatsapp-exclusive"
    file_word = "whatsappexclusivo"

    def _sender(self, campaign: Campaign) -> str | None:
        if not campaign.content.whatsapp_number:
            raise CampaignProblem("the campaign has no exclusive number (_nw, N15)")
        return campaign.content.whatsapp_number


class WhatsAppSharedChannel(WhatsAppChannel):
    """From the account's shared pool: a recipient always hears from the same number."""

    name = "whatsapp-shared"
    file_word = "whatsappcompartilhado"
    config_keys: ClassVar[dict[str, Key]] = {
        **TwilioChannel.config_keys,
        "from_numbers": Key("strings", (), help="The shared pool of sending numbers."),
    }

    def _sender(self, campaign: Campaign) -> str | None:
        pool = self.account.options.get("from_numbers") or ()
        return pool[0] if pool else self.account.options.get("from_number")

    def _from(self, prepared: PreparedMessage, to: str) -> str | None:
        pool = self.account.options.get("from_numbers") or ()
        if not pool:
            return super()._from(prepared, to)
        index = int(hashlib.sha256(to.encode()).hexdigest(), 16) % len(pool)
        return f"whatsapp:{pool[index]}"


class WhatsAppProspectChannel(WhatsAppChannel):
    """From the configured prospect sender (N27)."""

    name = "whatsapp-prospect"
    file_word = "whatsappprospect"


@hookimpl
def register_channels(register: Any) -> None:
    for cls in (
        SmsLongChannel,
        SmsShortChannel,
        WhatsAppExclusiveChannel,
        WhatsAppSharedChannel,
        WhatsAppProspectChannel,
    ):
        register(cls)


@hookimpl
def register_webhooks(register: Any) -> None:
    from channels._twilio_webhooks import TwilioWebhooks

    register(TwilioWebhooks)

"""disparo-webhook: a disparo channel that POSTs each message as JSON to a web hook.

The example package of disparo's plugin guide (docs/plugins.md). An account::

    [accounts.hook]
    channel = "webhook"
    url = "https://hooks.example.com/disparo"
    token_env = "HOOK_TOKEN"

sends the campaigns of mailing files named ``mailing_…_webhook.csv``; with ``[tracking]``
configured, the hook reports receipts and replies back (``disparo_webhook.receipts``).
"""

from __future__ import annotations

import ssl
from datetime import UTC, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, ClassVar

from engine import hookimpl
from engine.addresses import Checked, normalise_phone
from engine.config import AccountSettings, Key
from engine.plugins.channel import (
    Channel,
    ChannelContext,
    DeliveryInfo,
    Failed,
    Retry,
    SendResult,
    Sent,
    Templates,
)

if TYPE_CHECKING:
    # aiohttp and Jinja2 are imported where messages are sent: every `disparo` command
    # loads the plugins, and most never send
    import aiohttp

#: the plugin API this plugin was written for: a disparo that offers an older one refuses
#: to load it, with the reason
DISPARO_PLUGIN_API = 1


class WebhookChannel(Channel):
    """Each message POSTed as JSON to the account's ``url`` (TLS verified), with the
    account's ``token`` as a bearer token."""

    name = "webhook"  # accounts say channel = "webhook"
    address_kind = "phone"  # it sends to the contacts' phone numbers
    file_word = "webhook"  # mailing_231126_001_webhook.csv selects it
    default_rate = 5.0  # messages per second when the account sets no `rate`
    config_keys: ClassVar[dict[str, Key]] = {
        "url": Key("str", help="Where each message is POSTed (https://…)."),
        "token": Key("secret", help="Sent as `Authorization: Bearer …` (token_env or token_file)."),
        "ca_file": Key("path", None, help="A CA bundle to trust instead of the system's."),
        "timeout": Key("duration", timedelta(seconds=10), help="How long one POST may take."),
    }

    @classmethod
    def validate_account(cls, account: AccountSettings) -> list[tuple[str, str]]:
        url = account.options.get("url")
        if url is not None and not str(url).startswith("https://"):
            return [("url", f'expected an https:// URL (TLS is verified); got "{url}"')]
        return []

    def __init__(self, account: AccountSettings, context: ChannelContext) -> None:
        super().__init__(account, context)
        self.session: aiohttp.ClientSession | None = None

    def describe(self) -> str:
        where = "sandbox: nothing is posted" if self.account.sandbox else "live"
        return f"webhook → {self.account.options['url']} ({where})"

    def normalise(self, address: str) -> Checked:
        return normalise_phone(address, mobile=True)

    async def open(self) -> None:
        if self.account.sandbox:
            return
        import aiohttp

        options = self.account.options
        ca_file = options.get("ca_file")
        tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=self.concurrency),
            timeout=aiohttp.ClientTimeout(total=options["timeout"].total_seconds()),
            headers={"Authorization": f"Bearer {options['token'].reveal()}"},
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def send(self, prepared: Templates, delivery: DeliveryInfo) -> SendResult:
        import aiohttp
        from jinja2 import TemplateError

        try:
            message = prepared.render(delivery)  # the default prepare() gave the Templates
        except TemplateError as exc:
            return Failed(f"the message cannot be rendered: {exc}")
        if self.account.sandbox:
            return Sent(provider_id=f"sandbox-{delivery.id}")
        assert self.session is not None, "open() first"
        payload = {
            "to": delivery.address,
            "subject": message.subject,
            "text": message.text,
            "campaign_id": delivery.campaign_id,
            "delivery_id": delivery.id,
        }
        try:
            async with self.session.post(
                self.account.options["url"],
                json=payload,
                headers={"Idempotency-Key": f"disparo-{delivery.id}"},
                allow_redirects=False,
            ) as response:
                if 200 <= response.status < 300:
                    return Sent(provider_id=await _message_id(response))
                reason = f"HTTP {response.status}: {(await response.text())[:200]}"
                if response.status == 429 or response.status >= 500:
                    # the hook is down or throttles us: the whole account waits
                    return Retry(reason, self._retry_after(response), scope="account")
                if response.status in (401, 403):
                    # the token is refused: every message would be, so the account waits
                    # (until an operator fixes it) rather than failing each recipient
                    return Retry(f"the hook refused the token: {reason}", scope="account")
                return Failed(reason)  # the hook refuses this message
        except aiohttp.ClientConnectorCertificateError as exc:
            return Retry(f"the hook's TLS certificate is not trusted: {exc}", scope="account")
        except (TimeoutError, aiohttp.ClientError) as exc:
            return Retry(f"the hook cannot be reached: {exc!r}", scope="account")

    def _retry_after(self, response: aiohttp.ClientResponse) -> float | None:
        """``Retry-After`` in seconds, from seconds or an HTTP date (on the engine's clock)."""
        value = response.headers.get("Retry-After", "").strip()
        if value.isdigit():
            return float(value)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # an HTTP date is in GMT
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - self.context.clock.now()).total_seconds())


async def _message_id(response: aiohttp.ClientResponse) -> str | None:
    """The hook's id for the message: ``{"id": …}`` in a JSON answer, if it gives one."""
    import aiohttp

    try:
        body: Any = await response.json()
    except (aiohttp.ContentTypeError, ValueError):
        return None
    found = body.get("id") if isinstance(body, dict) else None
    return str(found) if found is not None else None


@hookimpl
def register_channels(register: Any) -> None:
    register(WebhookChannel)


@hookimpl
def register_webhooks(register: Any) -> None:
    from disparo_webhook.receipts import WebhookReceipts

    register(WebhookReceipts)

"""The HTTP side of the Twilio channels, imported when a live account opens.

The twilio library (with requests, urllib3 and aiohttp under it) costs ~30 MB and a tenth of a
second to import; every ``disparo`` process loads the plugins, so ``channels.twilio`` keeps
only what registration and configuration need and imports this module on first use.
"""

from __future__ import annotations

import base64
import logging

import aiohttp
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from channels.twilio import LAST_RESPONSE, TWILIO_API

#: the twilio library's request loggers: about ten INFO lines per request (headers, the URL,
#: the status); disparo logs what matters itself, so they say only warnings and errors,
#: unless the operator set their level (logging configuration) before the channel opened
QUIET_LOGGERS = ("twilio.http_client", "twilio.async_http_client")
for _name in QUIET_LOGGERS:
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)

#: transport failures: Twilio could not be reached (a temporary failure)
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)


class TwilioHttp(AsyncTwilioHttpClient):  # type: ignore[misc]
    """The twilio library's own async client, with three changes: the API base can point at a
    Twilio-compatible gateway (or a test fake); credentials go in an Authorization header
    (aiohttp 3.14 warns about ``auth=``); each response is kept per task, for Retry-After."""

    def __init__(self, base_url: str | None, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.base_url = (base_url or TWILIO_API).rstrip("/")

    async def request(
        self,
        method: str,
        url: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the library's signature
        allow_redirects: bool = False,
    ) -> Response:
        if url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        response: Response = await super().request(
            method,
            url,
            params=params,
            data=data,
            headers=headers,
            auth=None,
            timeout=timeout,
            allow_redirects=allow_redirects,
        )
        LAST_RESPONSE.set(response)
        return response


__all__ = ["TRANSPORT_ERRORS", "Client", "TwilioHttp", "TwilioRestException"]

"""Groups fed by an HTTP endpoint (G1–G3): read every page, check it, and replace the group's
members in one transaction only after a complete read.

``GET <url>&pagina=N`` (N from 1) answers ``{"tamanhoPagina", "pagina", "totalRegistros",
"registros": [{"nome", "email"}]}``. Pages are read until ceil(totalRegistros /
tamanhoPagina). A page whose ``pagina`` is not the one asked, a timeout, a body that is not
JSON or not that shape, records that do not add up to ``totalRegistros``, more records than
``max_records`` or a page over ``max_page_bytes`` fail the sync with the reason; the group
keeps its members. 5xx answers and refused connections are retried twice.

The URL carries a token (G3): it is never logged nor put in a message; ``redact`` shows its
scheme, host and path only, and every message is scrubbed of the query before it leaves.

The host rules of sources apply (F2, F3): the name is resolved and vetted here, and aiohttp
connects to the vetted address (its resolver is ours), with TLS verified against the name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from engine.addresses import normalise_email
from engine.clock import Clock
from engine.config import Config, GroupSettings, SecretError
from engine.hosts import HostError, check_literal, resolve
from engine.store import Store
from engine.store.groups import GroupError

log = logging.getLogger(__name__)

#: attempts per page on a 5xx answer or a refused connection
ATTEMPTS = 3
#: the pause before the second and third attempt (seconds)
BACKOFF = (0.5, 2.0)

Progress = Callable[[int, int, int], None]


class FeedError(Exception):
    """The sync failed (G2); the message says why, without the URL's token (G3)."""


@dataclass(frozen=True)
class FeedRecord:
    """One record of the feed, after hygiene."""

    name: str | None
    email: str


@dataclass(frozen=True)
class SyncResult:
    """A complete sync: the group's members now, the records read and the ones refused."""

    group: str
    members: int
    records: int
    rejected: int
    pages: int


def redact(url: str) -> str:
    """The URL as it may be shown: scheme, host and path; the query (the token) hidden."""
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or '?'}{parts.path}"
    return shown + ("?…" if parts.query else "")


def scrubber(url: str) -> Callable[[str], str]:
    """A function that takes every secret part of ``url`` out of a text (G3)."""
    parts = urlsplit(url)
    secrets = [url, parts.query, parts.netloc if "@" in parts.netloc else ""]
    secrets += [v for _, v in parse_qsl(parts.query, keep_blank_values=True) if len(v) >= 4]
    secrets = sorted({s for s in secrets if s}, key=len, reverse=True)
    shown = redact(url)

    def scrub(text: str) -> str:
        for s in secrets:
            text = text.replace(s, shown if s == url else "***")
        return text

    return scrub


def page_url(url: str, page: int) -> str:
    """G1: ``<url>&pagina=N`` (``?pagina=N`` when the URL has no query)."""
    return f"{url}{'&' if '?' in url else '?'}pagina={page}"


class _VettedResolver(AbstractResolver):
    """Resolves with the host rules (F3): the connection goes to the address that was vetted."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        target = await asyncio.to_thread(resolve, host, port, allow_private=self.allow_private)
        return [
            {
                "hostname": host,
                "host": target.address,
                "port": port,
                "family": target.family,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        return None


def _check_url(url: str, settings: GroupSettings) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise FeedError(
            f"the feed's URL must be https://HOST/PATH?… (it is {redact(url)}); fix "
            f"`url_env`/`url_file` of [groups.{settings.name}] (G1)"
        )
    if parts.scheme == "http" and not settings.allow_private:
        raise FeedError(
            f"the feed's URL is plain http ({redact(url)}): its token would cross the network "
            f"in clear. Use https, or, for a feed on your own network, set `allow_private = "
            f"true` on [groups.{settings.name}] (F3, G3)"
        )
    problem = check_literal(parts.hostname, settings.allow_private)
    if problem:
        raise FeedError(
            problem.replace("sources may", "group feeds may").replace(
                "on this source", f"on [groups.{settings.name}]"
            )
        )


def _ssl_context(settings: GroupSettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


async def _get_page(
    session: aiohttp.ClientSession, url: str, page: int, settings: GroupSettings
) -> Any:
    """One page's JSON, after the retries; ``FeedError`` (scrubbed by the caller) if not."""
    last = ""
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(BACKOFF[min(attempt - 1, len(BACKOFF) - 1)])
        try:
            async with session.get(page_url(url, page), allow_redirects=False) as response:
                if response.status >= 500:
                    last = f"page {page} answered HTTP {response.status}"
                    continue
                if response.status != 200:
                    raise FeedError(
                        f"page {page} answered HTTP {response.status}; check the feed's URL "
                        "and its token (G1)"
                    )
                body = bytearray()
                async for chunk in response.content.iter_chunked(65536):
                    body += chunk
                    if len(body) > settings.max_page_bytes:
                        raise FeedError(
                            f"page {page} is larger than {settings.max_page_bytes:,} bytes "
                            f"(max_page_bytes of [groups.{settings.name}]); the sync stops (G2)"
                        )
        except TimeoutError:
            raise FeedError(
                f"page {page} did not answer within {settings.timeout.total_seconds():g} s "
                f"(timeout of [groups.{settings.name}]) (G2)"
            ) from None
        except HostError as exc:
            why = str(exc).replace("sources may", "group feeds may")
            why = why.replace("on the source", f"on [groups.{settings.name}]")
            raise FeedError(why) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise FeedError(
                f"the feed's TLS certificate is not trusted ({exc.certificate_error}); fix the "
                f"server's certificate or set `ca_file` on [groups.{settings.name}]"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            why = exc.os_error.strerror or type(exc.os_error).__name__
            last = f"cannot connect to the feed's host ({why})"
            continue
        except socket.gaierror as exc:
            raise FeedError(f"the feed's host name does not resolve ({exc.strerror})") from None
        except aiohttp.ClientError as exc:
            last = f"page {page} could not be read ({type(exc).__name__})"
            continue
        try:
            return json.loads(bytes(body).decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FeedError(
                f"page {page} is not JSON ({exc}); the feed must answer the JSON of G1"
            ) from None
    raise FeedError(f"{last}, {ATTEMPTS} times; the sync stops (G2)")


def _int(data: dict[str, Any], key: str, page: int) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise FeedError(
            f"page {page} has no `{key}` as a whole number (got {json.dumps(value)[:40]}); "
            "the feed must answer the JSON of G1"
        )
    return value


async def read_feed(
    url: str, settings: GroupSettings, *, progress: Progress | None = None
) -> tuple[list[FeedRecord], int, int]:
    """Read every page (G2): (records, rejected records, pages), or ``FeedError``."""
    _check_url(url, settings)
    timeout = aiohttp.ClientTimeout(total=settings.timeout.total_seconds())
    connector = aiohttp.TCPConnector(
        ssl=_ssl_context(settings), resolver=_VettedResolver(settings.allow_private)
    )
    records: list[FeedRecord] = []
    rejected = 0
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, trust_env=False, raise_for_status=False
    ) as session:
        page, pages, total, size, seen = 1, 1, 0, 0, 0
        while page <= pages:
            data = await _get_page(session, url, page, settings)
            if not isinstance(data, dict):
                raise FeedError(
                    f"page {page} is JSON but not an object; the feed must answer the JSON of G1"
                )
            number = _int(data, "pagina", page)
            if number != page:
                raise FeedError(
                    f"page {page} was asked, and the feed answered page {number} (`pagina`); "
                    "the sync stops and the group keeps its members (G2)"
                )
            page_total = _int(data, "totalRegistros", page)
            page_size = _int(data, "tamanhoPagina", page)
            if page == 1:
                total, size = page_total, page_size
                if total > settings.max_records:
                    raise FeedError(
                        f"the feed announces {total:,} records, more than max_records "
                        f"({settings.max_records:,}) of [groups.{settings.name}]; raise it if "
                        "that is right (G2)"
                    )
                if total and size < 1:
                    raise FeedError(
                        "page 1 says `tamanhoPagina` is 0 with records to read; the feed must "
                        "answer the JSON of G1"
                    )
                pages = math.ceil(total / size) if total else 1
            elif (page_total, page_size) != (total, size):
                raise FeedError(
                    f"page {page} says {page_total:,} records in pages of {page_size}, page 1 "
                    f"said {total:,} in pages of {size}: the list changed while it was read; "
                    "the next sync tries again (G2)"
                )
            rows = data.get("registros")
            if not isinstance(rows, list):
                raise FeedError(
                    f"page {page} has no `registros` list; the feed must answer the JSON of G1"
                )
            seen += len(rows)
            if seen > total:
                raise FeedError(
                    f"the pages hold more records ({seen:,} by page {page}) than "
                    f"`totalRegistros` ({total:,}): they do not add up (G2)"
                )
            for row in rows:
                checked = None
                if isinstance(row, dict) and isinstance(row.get("email"), str):
                    checked = normalise_email(row["email"])
                if checked is None or checked.value is None:
                    rejected += 1
                    continue
                nome = row.get("nome")
                records.append(
                    FeedRecord(
                        " ".join(nome.split()) if isinstance(nome, str) else None, checked.value
                    )
                )
            if progress is not None:
                progress(page, pages, seen)
            page += 1
        if seen != total:
            raise FeedError(
                f"the {pages} page(s) held {seen:,} records and `totalRegistros` says "
                f"{total:,}: they do not add up; the group keeps its members (G2)"
            )
    return records, rejected, pages


def next_sync(config: Config, settings: GroupSettings, after: datetime) -> datetime:
    """The next scheduled sync after ``after``: every interval, or the cron's next time."""
    if settings.schedule.cron:
        from croniter import croniter

        local = after.astimezone(config.tz)
        nxt: datetime = croniter(settings.schedule.cron, local).get_next(datetime)
        return nxt.astimezone(after.tzinfo)
    return after + (settings.schedule.every or timedelta(hours=1))


def _write(store: Store, name: str, records: list[FeedRecord], next_at: datetime) -> int:
    with store.groups.session() as session:
        session.stage(
            [
                (i + 1, "email:" + r.email.lower(), None, r.name, r.email, None, "{}", None, None)
                for i, r in enumerate(records)
            ]
        )
        return session.write_members(
            name, replace=True, source="http", actor="feed", next_sync_at=next_at
        )


async def sync_group(
    store: Store,
    config: Config,
    settings: GroupSettings,
    clock: Clock,
    *,
    progress: Progress | None = None,
) -> SyncResult:
    """Sync one HTTP-fed group now: all pages, then the members replaced in one transaction.
    On failure the reason is recorded on the group (its members stay) and ``FeedError``
    raised; neither the log nor the message holds the URL's token."""
    name = settings.name
    await asyncio.to_thread(store.groups.ensure, name, source="http")

    async def failed(reason: str) -> FeedError:
        """Record ``reason`` on the group (retried at its next sync); the error to raise."""
        await asyncio.to_thread(
            store.groups.record_failure,
            name,
            reason,
            next_sync_at=next_sync(config, settings, clock.now()),
            actor="feed",
        )
        return FeedError(reason)

    try:
        url = settings.url.reveal()
    except SecretError as exc:
        raise await failed(str(exc)) from None
    scrub = scrubber(url)
    try:
        records, rejected, pages = await read_feed(url, settings, progress=progress)
    except FeedError as exc:
        reason = scrub(str(exc))
        log.warning("group %s: the sync failed, its members stay: %s", name, reason)
        raise await failed(reason) from None
    try:
        members = await asyncio.to_thread(
            _write, store, name, records, next_sync(config, settings, clock.now())
        )
    except GroupError as exc:
        raise FeedError(str(exc)) from None
    log.info(
        "group %s: synced from %s: %d member(s) from %d record(s) in %d page(s), %d refused",
        name,
        redact(url),
        members,
        len(records) + rejected,
        pages,
        rejected,
    )
    return SyncResult(name, members, len(records) + rejected, rejected, pages)


async def run_group_feeds(store: Store, config: Config, clock: Clock, stop: asyncio.Event) -> None:
    """``disparo run``: sync each HTTP-fed group when it is due (``every`` or ``cron``),
    until ``stop``; a failure is recorded on the group and retried at the next time."""
    from engine.clock import wait_event

    if not config.groups:
        return
    due: dict[str, datetime] = {}
    for name in config.groups:
        group = await asyncio.to_thread(store.groups.get, name)
        due[name] = (group.next_sync_at if group and group.next_sync_at else None) or clock.now()
    while not stop.is_set():
        now = clock.now()
        for name, settings in config.groups.items():
            if due[name] > now:
                continue
            try:
                await sync_group(store, config, settings, clock)
            except FeedError:
                pass  # recorded on the group and logged
            except Exception:
                log.exception("group %s: the sync failed", name)
            due[name] = next_sync(config, settings, clock.now())
        wait = min(due.values()) - clock.now()
        await wait_event(clock, stop, max(1.0, min(wait.total_seconds(), 60.0)))

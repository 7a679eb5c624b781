"""What came of the campaigns made from files, for the result files published back to the
sources (T8, D17): the campaigns of a source's files, opens, clicks and unsubscribes in time
order, and every contact of a file that did not get the message.

Rows stream (``yield_per``: a server-side cursor on PostgreSQL), so a million-row campaign is
written out without being held whole; each reader holds one read transaction (a consistent
snapshot) while its rows are consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.campaign import FINISHED
from engine.store.base import Queries
from engine.store.schema import (
    campaigns,
    deliveries,
    events,
    files,
    links,
    rejected_rows,
    suppressions,
)

#: rows fetched at a time from a streaming query
BATCH = 2000
#: delivery states that mean the message went out (a later bounce moves it to ``bounced``)
SENT = ("sent", "delivered")


@dataclass(frozen=True)
class FileCampaignRow:
    file_id: int
    path: str
    imported_at: datetime
    campaign_id: int
    name: str
    status: str
    finished_at: datetime | None


@dataclass(frozen=True)
class Undelivered:
    """A recipient not sent to (or bounced): its delivery and what is known of why."""

    delivery_id: int
    address: str
    status: str
    error: str | None
    finished_at: datetime | None
    sent_at: datetime | None
    #: the last bounce or failure reported after sending (a DSN, a provider's status)
    reported_at: datetime | None
    #: the failure came back from the recipient's side after sending (a soft bounce)
    reported_soft: bool


class Outcomes(Queries):
    """Reads for result files; nothing here writes."""

    def _stream(self, query: Any) -> Iterator[Any]:
        with self.store.read() as c:
            yield from c.execution_options(yield_per=BATCH).execute(query)

    def file_campaigns(
        self, source: str, *, finished: bool = False, limit: int | None = None
    ) -> list[FileCampaignRow]:
        """Campaigns made from the files of ``source``, newest file first (the campaigns'
        ``file_id`` index)."""
        query = (
            sa.select(
                files.c.id,
                files.c.path,
                files.c.created_at,
                campaigns.c.id.label("campaign_id"),
                campaigns.c.name,
                campaigns.c.status,
                campaigns.c.finished_at,
            )
            .select_from(files.join(campaigns, campaigns.c.file_id == files.c.id))
            .where(files.c.source == source)
            .order_by(files.c.id.desc(), campaigns.c.id)
        )
        if finished:
            query = query.where(campaigns.c.status.in_(sorted(FINISHED)))
        if limit is not None:
            query = query.limit(limit)
        with self.store.read() as c:
            return [FileCampaignRow(*r) for r in c.execute(query)]

    def opens(self, campaign_id: int) -> Iterator[tuple[str, datetime]]:
        """Every open event, in time order: (address, at)."""
        query = (
            sa.select(events.c.address, events.c.at)
            .where(events.c.campaign_id == campaign_id, events.c.kind == "open")
            .order_by(events.c.at, events.c.id)
        )
        for address, at in self._stream(query):
            yield str(address or ""), at

    def inferred_opens(self, campaign_id: int) -> Iterator[tuple[str, datetime]]:
        """Opens known only from a click (images blocked): the recipient's ``opened_at`` with
        no open event at or before it; in time order."""
        earlier_open = (
            sa.select(events.c.id)
            .where(
                events.c.delivery_id == deliveries.c.id,
                events.c.kind == "open",
                events.c.at <= deliveries.c.opened_at,
            )
            .exists()
        )
        query = (
            sa.select(deliveries.c.address, deliveries.c.opened_at)
            .where(
                deliveries.c.campaign_id == campaign_id,
                deliveries.c.opened_at.is_not(None),
                ~earlier_open,
            )
            .order_by(deliveries.c.opened_at, deliveries.c.id)
        )
        for address, at in self._stream(query):
            yield str(address), at

    def first_opens(self, campaign_id: int) -> Iterator[tuple[str, datetime]]:
        """Each recipient's first open (its ``opened_at``, a click's when images were
        blocked), in time order."""
        query = (
            sa.select(deliveries.c.address, deliveries.c.opened_at)
            .where(deliveries.c.campaign_id == campaign_id, deliveries.c.opened_at.is_not(None))
            .order_by(deliveries.c.opened_at, deliveries.c.id)
        )
        for address, at in self._stream(query):
            yield str(address), at

    def clicks(
        self, campaign_id: int, *, first: bool = False
    ) -> Iterator[tuple[str, datetime, str]]:
        """Every click (each recipient's first, with ``first``) in time order: (address, at,
        URL). The URL is the one redirected to when the event says it (a link made per
        recipient), else the campaign's link at that position."""
        urls = {
            int(p): str(u)
            for p, u in self._stream(
                sa.select(links.c.position, links.c.url).where(links.c.campaign_id == campaign_id)
            )
        }
        query = sa.select(events.c.address, events.c.at, events.c.detail).where(
            events.c.campaign_id == campaign_id, events.c.kind == "click"
        )
        if first:
            firsts = (
                sa.select(sa.func.min(events.c.id))
                .where(events.c.campaign_id == campaign_id, events.c.kind == "click")
                .group_by(events.c.delivery_id)
            )
            query = query.where(events.c.id.in_(firsts))
        for address, at, detail in self._stream(query.order_by(events.c.at, events.c.id)):
            info = detail or {}
            url = info.get("url")
            if not isinstance(url, str):
                position = info.get("link")
                url = urls.get(position, f"link {position}") if isinstance(position, int) else ""
            yield str(address or ""), at, url

    def unsubscribes(self, campaign_id: int) -> Iterator[tuple[str, datetime]]:
        """Each recipient who unsubscribed (this campaign or all, D19), in time order."""
        query = (
            sa.select(deliveries.c.address, deliveries.c.unsubscribed_at)
            .where(
                deliveries.c.campaign_id == campaign_id,
                deliveries.c.unsubscribed_at.is_not(None),
            )
            .order_by(deliveries.c.unsubscribed_at, deliveries.c.id)
        )
        for address, at in self._stream(query):
            yield str(address), at

    def undelivered(self, campaign_id: int) -> Iterator[list[Undelivered]]:
        """The recipients not sent to, or bounced after sending, in the campaign's order, a
        chunk at a time, with the last failure reported for each (a DSN, a status)."""
        query = (
            sa.select(
                deliveries.c.id,
                deliveries.c.address,
                deliveries.c.status,
                deliveries.c.error,
                deliveries.c.finished_at,
                deliveries.c.sent_at,
            )
            .where(deliveries.c.campaign_id == campaign_id, deliveries.c.status.not_in(SENT))
            .order_by(deliveries.c.position)
        )
        chunk: list[Any] = []
        for row in self._stream(query):
            chunk.append(row)
            if len(chunk) >= BATCH:
                yield self._undelivered(chunk)
                chunk = []
        if chunk:
            yield self._undelivered(chunk)

    def _undelivered(self, rows: list[Any]) -> list[Undelivered]:
        reported: dict[int, tuple[datetime, bool]] = {}
        ids = [int(r.id) for r in rows if r.status in ("bounced", "failed")]
        with self.store.read() as c:
            for start in range(0, len(ids), 900):  # SQLite's limit of bound parameters
                for delivery_id, at, origin in c.execute(
                    sa.select(events.c.delivery_id, events.c.at, events.c.origin)
                    .where(
                        events.c.delivery_id.in_(ids[start : start + 900]),
                        events.c.kind.in_(("bounced", "failed")),
                    )
                    .order_by(events.c.id)
                ):
                    # the engine's own failure is a send's; any other origin reported it back
                    reported[int(delivery_id)] = (at, origin != "engine")
        out = []
        for r in rows:
            at, soft = reported.get(int(r.id), (None, False))
            out.append(
                Undelivered(
                    int(r.id),
                    str(r.address),
                    str(r.status),
                    r.error,
                    r.finished_at,
                    r.sent_at,
                    at,
                    soft and r.status == "failed",
                )
            )
        return out

    def suppression_origins(self, kind: str, addresses: list[str]) -> dict[str, str]:
        """Why each address is suppressed (bounce, complaint, unsubscribe, stop, manual)."""
        found: dict[str, str] = {}
        with self.store.read() as c:
            for start in range(0, len(addresses), 900):
                for address, origin in c.execute(
                    sa.select(suppressions.c.address, suppressions.c.origin).where(
                        suppressions.c.kind == kind,
                        suppressions.c.address.in_(addresses[start : start + 900]),
                    )
                ):
                    found[str(address)] = str(origin)
        return found

    def rejected_rows(self, file_id: int) -> Iterator[tuple[int, str, str, str, datetime]]:
        """The rows of a file kept as unusable, in file order: (line, address, code,
        Portuguese reason, when the file was imported)."""
        query = (
            sa.select(
                rejected_rows.c.line,
                rejected_rows.c.address,
                rejected_rows.c.code,
                rejected_rows.c.reason_pt,
                files.c.created_at,
            )
            .select_from(rejected_rows.join(files, files.c.id == rejected_rows.c.file_id))
            .where(rejected_rows.c.file_id == file_id)
            .order_by(rejected_rows.c.line)
        )
        for line, address, code, reason, at in self._stream(query):
            yield int(line), str(address), str(code), str(reason), at

    def file_of(self, campaign_id: int) -> int | None:
        """The ledger entry of the file a campaign was made from."""
        with self.store.read() as c:
            found = c.execute(
                sa.select(campaigns.c.file_id).where(campaigns.c.id == campaign_id)
            ).scalar()
        return int(found) if found is not None else None

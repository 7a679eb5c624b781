"""Per-recipient results (D17): one row per delivery with what came of it, read in the
campaign's stable order a page or a chunk at a time (keyset pagination on the unique
``(campaign_id, position)`` index), with the clicks and clicked URLs of each."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.base import Queries
from engine.store.schema import campaigns, contacts, deliveries, events, links, suppressions

#: delivery states that mean the message went out
SENT_STATES = ("sent", "delivered")
#: why a recipient was not sent when its delivery carries no error of its own (D17)
STATUS_REASONS = {
    "pending": "not sent yet (waiting for its batch, the schedule or a retry)",
    "suppressed": "the address is suppressed (D4)",
    "skipped": "a recent interaction (_x, D4)",
    "cancelled": "cancelled (the campaign or the recipient's unsubscription, D19)",
    "expired": "the campaign's deadline passed before it was sent",
    "failed": "the send failed",
    "bounced": "the message bounced",
}


@dataclass(frozen=True)
class RecipientResult:
    """One recipient of a campaign and what came of it (D17)."""

    delivery_id: int
    position: int
    batch: int
    #: the contact's external key, else its identity (as the results files say)
    code: str | None
    name: str | None
    address: str
    status: str
    provider_status: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
    opened_at: datetime | None
    clicked_at: datetime | None
    clicks: int
    urls: tuple[str, ...]
    complained_at: datetime | None
    unsubscribed: str | None  # campaign | all
    unsubscribed_at: datetime | None
    #: the delivery's last error (a retried one keeps it while pending)
    error: str | None
    #: the address is suppressed now because it unsubscribed from all campaigns (D19), in
    #: this campaign or an earlier one
    unsubscribed_everywhere: bool = False

    @property
    def reason(self) -> str | None:
        """Why it was not sent (or bounced), for every one not sent (D17): its error, else
        what its state means."""
        if self.status in SENT_STATES:
            return None
        return self.error or STATUS_REASONS.get(self.status, f"not sent ({self.status})")

    @property
    def unsubscribed_campaign(self) -> bool:
        return self.unsubscribed in ("campaign", "all")

    @property
    def unsubscribed_all(self) -> bool:
        """Unsubscribed from all future campaigns (D19): here, or in an earlier campaign
        (the suppression it left)."""
        return self.unsubscribed == "all" or self.unsubscribed_everywhere


#: one recipient for a results file (``Results.export_rows``): code, name, address, status,
#: provider status, sent, delivered, opened, clicked and complained (as the database's text
#: of the naive UTC time, or None), unsubscribed, error, the delivery id, its clicked URLs
#: in click order (None when it has no click), and whether the address unsubscribed from all
#: campaigns (D19: here or in an earlier campaign, the suppression it left)
ExportRow = tuple[
    str | None,
    str | None,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    int,
    list[str] | None,
    bool,
]

_COLUMNS = (
    deliveries.c.id,
    deliveries.c.position,
    deliveries.c.batch,
    deliveries.c.address,
    deliveries.c.status,
    deliveries.c.provider_status,
    deliveries.c.sent_at,
    deliveries.c.delivered_at,
    deliveries.c.opened_at,
    deliveries.c.clicked_at,
    deliveries.c.complained_at,
    deliveries.c.unsubscribed,
    deliveries.c.unsubscribed_at,
    deliveries.c.error,
    contacts.c.external_key,
    contacts.c.identity,
    contacts.c.name,
    suppressions.c.id.label("unsubscribed_everywhere"),
)


def _phone_key(address: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The suppression key (E.164) of a phone kept as written, in SQL: a campaign imported
    without hygiene (``_h``) keeps ``(11) 98765-4321`` while its STOP or unsubscribe left
    ``+5511987654321``. Separators go; a leading ``+`` keeps its country code; a trunk ``0``
    goes; 12–13 digits starting with 55 carry Brazil's code; the rest are national numbers of
    the default region (Brazil, as ``engine.addresses.normalise_phone`` reads them)."""
    digits: sa.ColumnElement[Any] = sa.func.trim(address)
    for separator in (" ", "-", "(", ")", ".", "+", "/"):
        digits = sa.func.replace(digits, separator, "")
    return sa.case(
        (sa.func.trim(address).like("+%"), sa.literal("+") + digits),
        (digits.like("0%"), sa.literal("+55") + sa.func.substr(digits, 2)),
        (sa.and_(sa.func.length(digits) >= 12, digits.like("55%")), sa.literal("+") + digits),
        else_=sa.literal("+55") + digits,
    )


#: a campaign's deliveries with their contact, and the unsubscribe-from-all suppression of
#: their address (D19)
_RECIPIENTS = (
    deliveries.join(campaigns, campaigns.c.id == deliveries.c.campaign_id)
    .outerjoin(contacts, contacts.c.id == deliveries.c.contact_id)
    .outerjoin(
        suppressions,
        sa.and_(
            suppressions.c.kind == campaigns.c.address_kind,
            suppressions.c.address
            == sa.case(
                (
                    campaigns.c.address_kind == "email",
                    sa.func.lower(sa.func.trim(deliveries.c.address)),
                ),
                else_=_phone_key(deliveries.c.address),
            ),
            suppressions.c.origin == "unsubscribe",
        ),
    )
)


class Results(Queries):
    """Reads of per-recipient results."""

    def _query(self, campaign_id: int, limit: int) -> sa.Select[Any]:
        return (
            sa.select(*_COLUMNS)
            .select_from(_RECIPIENTS)
            .where(deliveries.c.campaign_id == campaign_id)
            .limit(limit)
        )

    def _rows(self, c: Connection, campaign_id: int, rows: list[Any]) -> list[RecipientResult]:
        clicks = _clicks(c, campaign_id, [r.id for r in rows if r.clicked_at is not None])
        out = []
        for r in rows:
            found = clicks.get(r.id, [])
            out.append(
                RecipientResult(
                    delivery_id=r.id,
                    position=r.position,
                    batch=r.batch,
                    code=r.external_key or r.identity,
                    name=r.name,
                    address=r.address,
                    status=r.status,
                    provider_status=r.provider_status,
                    sent_at=r.sent_at,
                    delivered_at=r.delivered_at,
                    opened_at=r.opened_at,
                    clicked_at=r.clicked_at,
                    clicks=len(found),
                    urls=tuple(dict.fromkeys(found)),
                    complained_at=r.complained_at,
                    unsubscribed=r.unsubscribed,
                    unsubscribed_at=r.unsubscribed_at,
                    error=r.error,
                    unsubscribed_everywhere=r.unsubscribed_everywhere is not None,
                )
            )
        return out

    def page(
        self,
        campaign_id: int,
        *,
        after: int | None = None,
        before: int | None = None,
        limit: int = 100,
        conn: Connection | None = None,
    ) -> list[RecipientResult]:
        """One page of a campaign's recipients in their stable order (D3): those after
        position ``after`` (or before ``before``, for the previous page), ``limit`` at most."""
        query = self._query(campaign_id, limit)
        if before is not None:
            query = query.where(deliveries.c.position < before).order_by(
                deliveries.c.position.desc()
            )
        else:
            if after is not None:
                query = query.where(deliveries.c.position > after)
            query = query.order_by(deliveries.c.position)
        with self._reading(conn) as c:
            rows = sorted(c.execute(query).all(), key=lambda r: r.position)
            return self._rows(c, campaign_id, rows)

    def export_rows(self, campaign_id: int, *, chunk: int = 5000) -> Iterator[list[ExportRow]]:
        """Every recipient in the campaign's order as plain tuples for a results file,
        ``chunk`` at a time (``ExportRow``): no object per row and no type processing — the
        times come back as the database's text of the naive UTC time
        (``YYYY-MM-DD HH:MM:SS[.ffffff]``), for ``engine.publish.results`` to format."""
        columns = (
            sa.func.coalesce(sa.func.nullif(contacts.c.external_key, ""), contacts.c.identity),
            contacts.c.name,
            deliveries.c.address,
            deliveries.c.status,
            deliveries.c.provider_status,
            *(
                sa.cast(column, sa.Text)
                for column in (
                    deliveries.c.sent_at,
                    deliveries.c.delivered_at,
                    deliveries.c.opened_at,
                    deliveries.c.clicked_at,
                    deliveries.c.complained_at,
                )
            ),
            deliveries.c.unsubscribed,
            deliveries.c.error,
            deliveries.c.id,
            deliveries.c.position,
            suppressions.c.id,
        )
        after = -1
        while True:
            query = (
                sa.select(*columns)
                .select_from(_RECIPIENTS)
                .where(deliveries.c.campaign_id == campaign_id, deliveries.c.position > after)
                .order_by(deliveries.c.position)
                .limit(chunk)
            )
            with self.store.read() as c:
                found = c.execute(query).all()
                # a click stamps clicked_at: only those deliveries are looked up
                clicks = _clicks(c, campaign_id, [r[12] for r in found if r[8] is not None])
            if not found:
                return
            yield [(*r[:13], clicks.get(r[12]), r[14] is not None) for r in found]
            after = found[-1][13]
            if len(found) < chunk:
                return

    def all(self, campaign_id: int, *, chunk: int = 5000) -> Iterator[list[RecipientResult]]:
        """Every recipient in the campaign's order, ``chunk`` rows at a time: a million-row
        export reads each row once and never holds more than one chunk."""
        after = -1
        while True:
            rows = self.page(campaign_id, after=after, limit=chunk)
            if not rows:
                return
            yield rows
            after = rows[-1].position
            if len(rows) < chunk:
                return


def _clicks(c: Connection, campaign_id: int, ids: list[int]) -> dict[int, list[str]]:
    """Clicked URLs per delivery, in click order, from the click events of those deliveries
    (the ``(delivery, kind)`` index) and the campaign's link table."""
    if not ids:
        return {}
    urls = {
        int(p): str(u)
        for p, u in c.execute(
            sa.select(links.c.position, links.c.url).where(links.c.campaign_id == campaign_id)
        )
    }
    found: dict[int, list[str]] = defaultdict(list)
    for start in range(0, len(ids), 900):  # SQLite's limit of bound parameters
        for delivery_id, detail in c.execute(
            sa.select(events.c.delivery_id, events.c.detail)
            .where(events.c.delivery_id.in_(ids[start : start + 900]), events.c.kind == "click")
            .order_by(events.c.id)
        ):
            position = (detail or {}).get("link")
            url = urls.get(int(position)) if isinstance(position, int) else None
            found[int(delivery_id)].append(url or f"link {position}")
    return found

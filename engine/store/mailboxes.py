"""Bounce mailboxes (IMAP): who polls each one (a lease), when, and what came of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.base import Queries
from engine.store.schema import mailboxes


@dataclass(frozen=True)
class MailboxState:
    """The poller's record of one mailbox."""

    name: str
    last_poll_at: datetime | None
    next_poll_at: datetime | None
    status: str  # ok | error | unknown
    message: str | None
    handled: int
    unparsed: int
    lease_owner: str | None
    lease_until: datetime | None


class Mailboxes(Queries):
    def _ensure(self, c: Connection, name: str, now: datetime) -> None:
        found = c.execute(sa.select(mailboxes.c.name).where(mailboxes.c.name == name)).first()
        if found is None:
            c.execute(
                sa.insert(mailboxes).values(
                    name=name, status="unknown", handled=0, unparsed=0, updated_at=now
                )
            )

    def lease(self, name: str, owner: str, ttl: timedelta) -> bool:
        """Take (or renew) the right to poll ``name`` for ``ttl``; False when another engine
        holds it. Two engines on one store never poll the same mailbox at once."""
        now = self.store.clock.now()
        with self.store.write() as c:
            self._ensure(c, name, now)
            done = c.execute(
                sa.update(mailboxes)
                .where(
                    mailboxes.c.name == name,
                    sa.or_(
                        mailboxes.c.lease_owner.is_(None),
                        mailboxes.c.lease_owner == owner,
                        mailboxes.c.lease_until < now,
                    ),
                )
                .values(lease_owner=owner, lease_until=now + ttl)
            )
            return done.rowcount == 1

    def release(self, name: str, owner: str) -> None:
        with self.store.write() as c:
            c.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.name == name, mailboxes.c.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    def record_poll(
        self,
        name: str,
        *,
        status: str,
        message: str | None,
        polled_at: datetime,
        next_poll_at: datetime | None,
        handled: int = 0,
        unparsed: int = 0,
    ) -> None:
        """What one poll did: its outcome and how many reports it handled or had to keep."""
        now = self.store.clock.now()
        with self.store.write() as c:
            self._ensure(c, name, now)
            c.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.name == name)
                .values(
                    status=status,
                    message=message,
                    last_poll_at=polled_at,
                    next_poll_at=next_poll_at,
                    handled=mailboxes.c.handled + handled,
                    unparsed=mailboxes.c.unparsed + unparsed,
                    updated_at=now,
                )
            )

    def states(self) -> dict[str, MailboxState]:
        with self.store.read() as c:
            return {
                r.name: MailboxState(
                    r.name,
                    r.last_poll_at,
                    r.next_poll_at,
                    r.status,
                    r.message,
                    r.handled,
                    r.unparsed,
                    r.lease_owner,
                    r.lease_until,
                )
                for r in c.execute(sa.select(mailboxes).order_by(mailboxes.c.name))
            }

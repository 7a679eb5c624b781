"""Sender accounts' state: which engine sends for each (a lease), the guard's state and the
counts it judges (D10, D14–D16)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.reads import AccountState as AccountState
from engine.reads import account_state as account_state
from engine.reads import kind_counts
from engine.store.base import Queries
from engine.store.schema import accounts, audit_log, events


def states_select() -> sa.Select[Any]:
    """Every account's row (``account_state`` reads one)."""
    return sa.select(accounts)


def counts_select(account: Any, since: Any) -> sa.Select[Any]:
    """(kind, count) of an account's sends, hard bounces and complaints since ``since``
    (``kind_counts`` reads them, D14)."""
    # bounces and complaints count deliveries, not reports: one delivery bounces once
    # (an event without a delivery counts by itself)
    one = sa.func.coalesce(events.c.delivery_id, -events.c.id)
    counted = sa.case(
        (events.c.kind == "sent", sa.func.count()),
        else_=sa.func.count(sa.distinct(one)),
    )
    return (
        sa.select(events.c.kind, counted)
        .where(
            events.c.account == account,
            events.c.at >= since,
            events.c.kind.in_(("sent", "bounced", "complaint")),
        )
        .group_by(events.c.kind)
    )


class Accounts(Queries):
    """Sender accounts' rows: leases and the guard."""

    def sync(self, configured: Mapping[str, str]) -> None:
        """Make sure every configured account (name -> channel) has a state row."""
        now = self.store.clock.now()
        with self.store.write() as c:
            known = {
                r.name: r.channel for r in c.execute(sa.select(accounts.c.name, accounts.c.channel))
            }
            for name, channel in configured.items():
                if name not in known:
                    c.execute(
                        sa.insert(accounts).values(
                            name=name, channel=channel, guard_state="ok", updated_at=now
                        )
                    )
                elif known[name] != channel:
                    c.execute(
                        sa.update(accounts)
                        .where(accounts.c.name == name)
                        .values(channel=channel, updated_at=now)
                    )

    def states(self) -> dict[str, AccountState]:
        with self.store.read() as c:
            return {r.name: account_state(r._mapping) for r in c.execute(states_select())}

    def lease(self, name: str, owner: str, lease: timedelta) -> bool:
        """Take (or renew) the right to send for an account: one engine node at a time."""
        now = self.store.clock.now()
        with self.store.write() as c:
            done = c.execute(
                sa.update(accounts)
                .where(
                    accounts.c.name == name,
                    sa.or_(
                        accounts.c.lease_owner.is_(None),
                        accounts.c.lease_owner == owner,
                        accounts.c.lease_until < now,
                    ),
                )
                .values(lease_owner=owner, lease_until=now + lease)
            )
            return done.rowcount == 1

    def unlease(self, name: str, owner: str, *, tokens: float | None = None) -> None:
        """Give an account's lease back (another engine node may take it at once), with the
        tokens its bucket has now: the next holder continues that bucket (D10)."""
        values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
        if tokens is not None:
            values |= {"bucket_tokens": tokens, "bucket_at": self.store.clock.now()}
        with self.store.write() as c:
            c.execute(
                sa.update(accounts)
                .where(accounts.c.name == name, accounts.c.lease_owner == owner)
                .values(**values)
            )

    def open_breaker(
        self,
        name: str,
        *,
        reason: str,
        failures: int,
        retry_at: datetime,
        pause: timedelta,
        audit: bool,
    ) -> None:
        """The account's channel fails for a systemic reason: pause it until ``retry_at``
        (audited when it was closed, not when a probe fails again)."""
        now = self.store.clock.now()
        with self.store.write() as c:
            values: dict[str, Any] = {
                "breaker_state": "open",
                "breaker_reason": reason,
                "breaker_failures": failures,
                "breaker_retry_at": retry_at,
                "breaker_pause_s": int(pause.total_seconds()),
                "updated_at": now,
            }
            if audit:
                values["breaker_opened_at"] = now
            c.execute(sa.update(accounts).where(accounts.c.name == name).values(**values))
            if audit:
                c.execute(
                    sa.insert(audit_log).values(
                        at=now,
                        actor="breaker",
                        action="account.paused",
                        target=f"account:{name}",
                        detail={
                            "reason": reason,
                            "failures": failures,
                            "until": retry_at.isoformat(),
                        },
                    )
                )

    def probe_now(self, name: str) -> bool:
        """A paused account is probed at once (its settings changed: the fix may be in)."""
        now = self.store.clock.now()
        with self.store.write() as c:
            done = c.execute(
                sa.update(accounts)
                .where(accounts.c.name == name, accounts.c.breaker_state == "open")
                .values(breaker_retry_at=now, updated_at=now)
            ).rowcount
        return bool(done)

    def close_breaker(self, name: str, *, detail: Mapping[str, Any] | None = None) -> bool:
        """The channel works again: resume the account (audited). False if it was closed."""
        now = self.store.clock.now()
        with self.store.write() as c:
            done = c.execute(
                sa.update(accounts)
                .where(accounts.c.name == name, accounts.c.breaker_state != "closed")
                .values(
                    breaker_state="closed",
                    breaker_reason=None,
                    breaker_failures=0,
                    breaker_retry_at=None,
                    breaker_pause_s=None,
                    updated_at=now,
                )
            ).rowcount
            if done:
                c.execute(
                    sa.insert(audit_log).values(
                        at=now,
                        actor="breaker",
                        action="account.resumed",
                        target=f"account:{name}",
                        detail=dict(detail or {}),
                    )
                )
            return bool(done)

    def counts(self, account: str, since: datetime) -> tuple[int, int, int]:
        """(messages sent, deliveries hard-bounced, deliveries complained about) of an account
        since ``since`` (D14)."""
        with self.store.read() as c:
            return kind_counts(c.execute(counts_select(account, since)).all())

    def set_guard(
        self,
        name: str,
        *,
        actor: str,
        audit: str | None = None,
        detail: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
        **values: Any,
    ) -> None:
        now = self.store.clock.now()
        with self._writing(conn) as c:
            c.execute(
                sa.update(accounts).where(accounts.c.name == name).values(updated_at=now, **values)
            )
            if audit:
                c.execute(
                    sa.insert(audit_log).values(
                        at=now,
                        actor=actor,
                        action=audit,
                        target=f"account:{name}",
                        detail=dict(detail or {}),
                    )
                )

"""Engine processes in the store: each registers, heartbeats and renews the leases it holds
(deliveries, sender accounts, bounce mailboxes) in one transaction; an engine whose heartbeat
is older than its lease stopped without saying so, and another engine rescues its work."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.base import Queries
from engine.store.schema import accounts, audit_log, deliveries, engines, mailboxes


@dataclass(frozen=True)
class EngineInfo:
    """One registered engine process, with the leases it holds."""

    node: str
    host: str
    pid: int
    version: str
    mode: str
    started_at: datetime
    heartbeat_at: datetime
    lease: timedelta
    config: str | None
    detail: Mapping[str, Any]
    #: the sender accounts and bounce mailboxes it holds the lease of
    accounts: tuple[str, ...] = ()
    mailboxes: tuple[str, ...] = ()
    #: deliveries it has claimed and not confirmed yet
    in_flight: int = 0

    def alive(self, now: datetime) -> bool:
        """Running: its last heartbeat is younger than its lease."""
        return now - self.heartbeat_at < self.lease

    def rescue_at(self) -> datetime:
        """When it counts as stopped, unless it beats again."""
        return self.heartbeat_at + self.lease


@dataclass(frozen=True)
class Renewed:
    """What one heartbeat renewed; ``registered`` is False when the engine's row was gone
    (another engine took it for dead and rescued its work)."""

    registered: bool
    deliveries: int
    accounts: int
    mailboxes: int


@dataclass(frozen=True)
class Rescued:
    """The work of a stopped engine, given back."""

    node: str
    heartbeat_at: datetime
    deliveries: int
    accounts: tuple[str, ...]
    mailboxes: tuple[str, ...]


def _spent_bucket(now: datetime) -> dict[str, Any]:
    """The bucket of an account whose engine stopped without saying so (rescued): taken as
    spent now (it may have sent its whole burst just before it died), so the next holder
    refills it from now (D10). A clean stop writes each bucket as it was (``release``)."""
    return {"bucket_tokens": 0.0, "bucket_at": now}


def _info(m: Mapping[str, Any], held: Mapping[str, tuple[list[str], list[str], int]]) -> EngineInfo:
    accts, boxes, flying = held.get(m["node"], ([], [], 0))
    return EngineInfo(
        node=m["node"],
        host=m["host"],
        pid=m["pid"],
        version=m["version"],
        mode=m["mode"],
        started_at=m["started_at"],
        heartbeat_at=m["heartbeat_at"],
        lease=timedelta(seconds=m["lease_s"]),
        config=m["config"],
        detail=m["detail"] or {},
        accounts=tuple(sorted(accts)),
        mailboxes=tuple(sorted(boxes)),
        in_flight=flying,
    )


class Engines(Queries):
    """The engines table and the leases its rows own."""

    def register(
        self,
        node: str,
        *,
        host: str,
        pid: int,
        version: str,
        mode: str,
        lease: timedelta,
        config: str | None = None,
        detail: Mapping[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Record this engine as running (again, after it was taken for dead)."""
        now = self.store.clock.now()
        with self._writing(conn) as c:
            c.execute(sa.delete(engines).where(engines.c.node == node))
            c.execute(
                sa.insert(engines).values(
                    node=node,
                    host=host,
                    pid=pid,
                    version=version,
                    mode=mode,
                    started_at=now,
                    heartbeat_at=now,
                    lease_s=max(1, int(lease.total_seconds())),
                    config=config,
                    detail=dict(detail or {}),
                )
            )

    def beat(
        self,
        node: str,
        lease: timedelta,
        *,
        in_flight: Collection[int] = (),
        detail: Mapping[str, Any] | None = None,
    ) -> Renewed:
        """The heartbeat: this engine is alive, and every lease it holds runs ``lease`` from
        now: the deliveries it has in flight (``in_flight``: claimed and not confirmed yet),
        its sender accounts and bounce mailboxes. One transaction. A delivery this engine
        claimed but does not know it holds (the reply of the claim was lost with the
        database) is not renewed: its lease runs out and it is rescued."""
        now = self.store.clock.now()
        until = now + lease
        values: dict[str, Any] = {
            "heartbeat_at": now,
            "lease_s": max(1, int(lease.total_seconds())),
        }
        if detail is not None:
            values["detail"] = dict(detail)
        with self.store.write() as c:
            registered = c.execute(
                sa.update(engines).where(engines.c.node == node).values(**values)
            ).rowcount
            if not registered:
                return Renewed(False, 0, 0, 0)
            flying = 0
            ids = sorted(in_flight)
            for start in range(0, len(ids), 500):
                flying += c.execute(
                    sa.update(deliveries)
                    .where(
                        deliveries.c.id.in_(ids[start : start + 500]),
                        deliveries.c.lease_owner == node,
                        deliveries.c.status == "claimed",
                    )
                    .values(lease_until=until)
                ).rowcount
            accts = c.execute(
                sa.update(accounts).where(accounts.c.lease_owner == node).values(lease_until=until)
            ).rowcount
            boxes = c.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.lease_owner == node)
                .values(lease_until=until)
            ).rowcount
        return Renewed(True, int(flying or 0), int(accts or 0), int(boxes or 0))

    def unregister(self, node: str) -> None:
        """A clean stop: the engine's row goes (its leases were released before)."""
        with self.store.write() as c:
            c.execute(sa.delete(engines).where(engines.c.node == node))

    def listing(self, *, conn: Connection | None = None, held: bool = True) -> list[EngineInfo]:
        """Every registered engine, running or not, oldest first, with what it holds (without
        ``held``: one query of the engines table, for the heartbeat's checks of the others)."""
        with self._reading(conn) as c:
            rows = [
                dict(r._mapping)
                for r in c.execute(sa.select(engines).order_by(engines.c.started_at))
            ]
            if not rows or not held:
                return [_info(r, {}) for r in rows]
            holding: dict[str, tuple[list[str], list[str], int]] = {
                r["node"]: ([], [], 0) for r in rows
            }
            for name, owner in c.execute(
                sa.select(accounts.c.name, accounts.c.lease_owner).where(
                    accounts.c.lease_owner.in_(list(holding))
                )
            ):
                holding[owner][0].append(name)
            for name, owner in c.execute(
                sa.select(mailboxes.c.name, mailboxes.c.lease_owner).where(
                    mailboxes.c.lease_owner.in_(list(holding))
                )
            ):
                holding[owner][1].append(name)
            for owner, n in c.execute(
                sa.select(deliveries.c.lease_owner, sa.func.count())
                .where(
                    deliveries.c.lease_until.is_not(None),
                    deliveries.c.status == "claimed",
                    deliveries.c.lease_owner.in_(list(holding)),
                )
                .group_by(deliveries.c.lease_owner)
            ):
                accts, boxes, _ = holding[owner]
                holding[owner] = (accts, boxes, int(n))
        return [_info(r, holding) for r in rows]

    def running(self, now: datetime | None = None) -> list[EngineInfo]:
        """The engines whose heartbeat is fresh (``disparo status``, the UI's header)."""
        now = now or self.store.clock.now()
        return [e for e in self.listing() if e.alive(now)]

    def rescue(self, node: str, *, by: str) -> Rescued | None:
        """Give back the work of engine ``node`` if it is still stopped (its heartbeat older
        than its lease, checked in this transaction): its claimed deliveries go back to
        pending, its account and mailbox leases are freed, its row goes. None when it came
        back (or another engine rescued it first)."""
        now = self.store.clock.now()
        with self.store.write() as c:
            row = c.execute(sa.select(engines).where(engines.c.node == node)).first()
            if row is None:
                return None
            lease = timedelta(seconds=row.lease_s)
            if now - row.heartbeat_at < lease:
                return None
            n = c.execute(
                sa.update(deliveries)
                .where(
                    deliveries.c.lease_until.is_not(None),
                    deliveries.c.lease_owner == node,
                    deliveries.c.status == "claimed",
                )
                .values(status="pending", lease_owner=None, lease_until=None)
            ).rowcount
            accts = tuple(
                r.name
                for r in c.execute(sa.select(accounts.c.name).where(accounts.c.lease_owner == node))
            )
            boxes = tuple(
                r.name
                for r in c.execute(
                    sa.select(mailboxes.c.name).where(mailboxes.c.lease_owner == node)
                )
            )
            c.execute(
                sa.update(accounts)
                .where(accounts.c.lease_owner == node)
                .values(lease_owner=None, lease_until=None, **_spent_bucket(now))
            )
            c.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.lease_owner == node)
                .values(lease_owner=None, lease_until=None)
            )
            c.execute(sa.delete(engines).where(engines.c.node == node))
            c.execute(
                sa.insert(audit_log).values(
                    at=now,
                    actor=by,
                    action="engine.rescued",
                    target=f"engine:{node}",
                    detail={
                        "heartbeat_at": row.heartbeat_at.isoformat(),
                        "deliveries": int(n or 0),
                        "accounts": list(accts),
                        "mailboxes": list(boxes),
                    },
                )
            )
        return Rescued(node, row.heartbeat_at, int(n or 0), accts, boxes)

    def release(
        self, node: str, buckets: Mapping[str, float] | None = None
    ) -> tuple[int, int, int]:
        """A stopping engine gives back every lease it holds: claimed deliveries (to pending),
        sender accounts and bounce mailboxes. Returns how many of each. ``buckets``: the
        tokens each account's bucket has at the stop, which the next holder continues (D10:
        a quick restart must not send a second burst within the second of the first)."""
        now = self.store.clock.now()
        with self.store.write() as c:
            n = c.execute(
                sa.update(deliveries)
                .where(
                    deliveries.c.lease_until.is_not(None),
                    deliveries.c.lease_owner == node,
                    deliveries.c.status == "claimed",
                )
                .values(status="pending", lease_owner=None, lease_until=None)
            ).rowcount
            held = set(
                c.execute(sa.select(accounts.c.name).where(accounts.c.lease_owner == node))
                .scalars()
                .all()
            )
            kept = [{"b_name": k, "b_tokens": v} for k, v in (buckets or {}).items() if k in held]
            if kept:
                c.execute(
                    sa.update(accounts)
                    .where(accounts.c.name == sa.bindparam("b_name"))
                    .values(bucket_tokens=sa.bindparam("b_tokens"), bucket_at=now),
                    kept,
                )
            c.execute(
                sa.update(accounts)
                .where(accounts.c.lease_owner == node)
                .values(lease_owner=None, lease_until=None)
            )
            accts = len(held)
            boxes = c.execute(
                sa.update(mailboxes)
                .where(mailboxes.c.lease_owner == node)
                .values(lease_owner=None, lease_until=None)
            ).rowcount
        return int(n or 0), int(accts or 0), int(boxes or 0)

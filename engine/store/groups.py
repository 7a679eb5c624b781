"""Groups in the store (G1–G3): named sets of contacts, their members, the sync state of an
HTTP-fed group, and the campaigns composed for groups (their audience frozen at the start)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.campaign import Campaign
from engine.store.base import Queries
from engine.store.campaigns import campaign_columns
from engine.store.imports import (
    STAGING,
    CampaignWriter,
    ImportSession,
    upsert_staged_contacts,
)
from engine.store.schema import (
    api_requests,
    audit_log,
    campaign_groups,
    campaigns,
    contacts,
    group_members,
    groups,
    suppressions,
)

#: a group's members are positioned within this span: a composed campaign orders its
#: recipients group by group (the first group's members first), then by position
GROUP_SPAN = 1 << 31


class GroupError(ValueError):
    """A group operation that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Group:
    """A group with its counts (members, and of those, suppressed ones)."""

    id: int
    name: str
    source: str
    members: int
    suppressed: int
    synced_at: datetime | None
    sync_status: str | None
    sync_message: str | None
    next_sync_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Member:
    """One member of a group, in the group's order."""

    position: int
    contact_id: int
    name: str | None
    email: str | None
    phone: str | None
    suppressed: bool


def _suppressed() -> Any:
    """Is the contact's e-mail or phone suppressed (an SQL expression)?"""
    c = contacts.c
    return sa.exists().where(
        sa.or_(
            sa.and_(
                suppressions.c.kind == "email", suppressions.c.address == sa.func.lower(c.email)
            ),
            sa.and_(suppressions.c.kind == "phone", suppressions.c.address == c.phone),
        )
    )


def audience_sql(group_ids: Sequence[int], *, staged: bool = False) -> tuple[str, dict[str, Any]]:
    """The candidates of a composed campaign for ``CampaignWriter``: the staged rows (inline
    recipients) first, then each group's members in the order given, then by position."""
    params: dict[str, Any] = {}
    parts = []
    if staged:
        parts.append(f"SELECT identity, row_no AS first_row FROM {STAGING}")
    for index, gid in enumerate(group_ids):
        params[f"g{index}"] = gid
        params[f"o{index}"] = (index + 1) * GROUP_SPAN
        parts.append(
            f"SELECT c.identity, CAST(gm.position AS BIGINT) + :o{index} AS first_row "
            "FROM group_members gm JOIN contacts c ON c.id = gm.contact_id "
            f"WHERE gm.group_id = :g{index}"
        )
    if not parts:
        parts.append(f"SELECT identity, row_no AS first_row FROM {STAGING} WHERE 1 = 0")
    union = " UNION ALL ".join(parts)
    return (
        f"SELECT identity, min(first_row) AS first_row, NULL AS prospect FROM ({union}) u "
        "GROUP BY identity",
        params,
    )


class GroupSession(ImportSession):
    """Rows staged for a group (a CSV file, a feed's records, addresses given by hand) or for
    an API client's inline recipients, written in one transaction."""

    def __enter__(self) -> GroupSession:
        super().__enter__()
        return self

    def _begin(self) -> tuple[Connection, datetime]:
        assert self.conn is not None
        self._end_copy()
        conn = self.conn
        if self.dialect == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        return conn, self.store.clock.now()

    def write_members(
        self,
        name: str,
        *,
        replace: bool,
        source: str,
        actor: str,
        detail: dict[str, Any] | None = None,
        next_sync_at: datetime | None = None,
    ) -> int:
        """Upsert the staged contacts and make them members of group ``name`` (after its
        current members, or instead of them with ``replace``); returns the members now."""
        conn, now = self._begin()
        with conn.begin():
            gid = conn.execute(sa.select(groups.c.id).where(groups.c.name == name)).scalar()
            if gid is None:
                raise GroupError(f"there is no group `{name}`")
            upsert_staged_contacts(conn, self.dialect == "postgresql", now, None)
            base = 0
            if replace:
                conn.execute(sa.delete(group_members).where(group_members.c.group_id == gid))
            else:
                base = int(
                    conn.execute(
                        sa.select(sa.func.coalesce(sa.func.max(group_members.c.position), 0)).where(
                            group_members.c.group_id == gid
                        )
                    ).scalar()
                    or 0
                )
            conn.execute(
                sa.text(
                    "INSERT INTO group_members (group_id, contact_id, position, added_at) "
                    f"SELECT :g, c.id, :base + min(s.row_no), :now FROM {STAGING} s "
                    "JOIN contacts c ON c.identity = s.identity GROUP BY c.id "
                    "ON CONFLICT DO NOTHING"
                ).bindparams(sa.bindparam("now", type_=groups.c.created_at.type)),
                {"g": gid, "base": base, "now": now},
            )
            members = int(
                conn.execute(
                    sa.select(sa.func.count()).where(group_members.c.group_id == gid)
                ).scalar()
                or 0
            )
            values: dict[str, Any] = {"source": source, "updated_at": now}
            if source == "http":
                values.update(
                    synced_at=now, sync_status="ok", sync_message=None, next_sync_at=next_sync_at
                )
            conn.execute(sa.update(groups).where(groups.c.id == gid).values(**values))
            conn.execute(
                sa.insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action="group.replaced" if replace else "group.added",
                    target=f"group:{name}",
                    detail={"rows": self.rows, "members": members, **(detail or {})},
                )
            )
        self.store.checkpoint_soon()
        return members

    def write_campaign(
        self,
        spec: Campaign,
        group_ids: Sequence[int],
        *,
        actor: str,
        client: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, bool]:
        """Upsert the staged recipients and create ``spec`` for them and the groups' members
        (a draft keeps only its groups); returns (campaign id, created). With an idempotency
        key already used by ``client``, the earlier campaign's id and False."""
        conn, now = self._begin()
        with conn.begin():
            if client is not None and idempotency_key is not None:
                earlier = conn.execute(
                    sa.select(api_requests.c.campaign_id).where(
                        api_requests.c.client == client, api_requests.c.key == idempotency_key
                    )
                ).scalar()
                if earlier is not None:
                    return int(earlier), False
            if self.rows:
                upsert_staged_contacts(conn, self.dialect == "postgresql", now, None)
            campaign_id = _create(conn, self.dialect, now, spec, group_ids, actor, self.rows > 0)
            if client is not None and idempotency_key is not None:
                conn.execute(
                    sa.insert(api_requests).values(
                        client=client, key=idempotency_key, campaign_id=campaign_id, created_at=now
                    )
                )
        return campaign_id, True


def _create(
    conn: Connection,
    dialect: str,
    now: datetime,
    spec: Campaign,
    group_ids: Sequence[int],
    actor: str,
    staged: bool,
) -> int:
    """The campaign row (a draft) or the campaign with its frozen audience."""
    if spec.status == "draft":
        result = conn.execute(
            sa.insert(campaigns).values(
                {**campaign_columns(spec), "created_at": now, "updated_at": now}
            )
        )
        campaign_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        conn.execute(
            sa.insert(audit_log).values(
                at=now,
                actor=actor,
                action="campaign.created",
                target=f"campaign:{campaign_id}",
                detail={"status": "draft", "origin": spec.origin, "groups": list(group_ids)},
            )
        )
    else:
        per, params = audience_sql(group_ids, staged=staged)
        campaign_id = CampaignWriter(conn, dialect == "postgresql", now).create(
            spec, per=per, params=params, actor=actor, detail={"groups": list(group_ids)}
        )[0]
    if group_ids:
        conn.execute(
            sa.insert(campaign_groups),
            [
                {"campaign_id": campaign_id, "group_id": gid, "position": i}
                for i, gid in enumerate(group_ids)
            ],
        )
    return campaign_id


class Groups(Queries):
    """Group reads and changes."""

    def session(self) -> GroupSession:
        """Stage rows, then ``write_members`` or ``write_campaign``: use as a context manager."""
        return GroupSession(self.store)

    def _query(self) -> sa.Select[Any]:
        members = (
            sa.select(sa.func.count())
            .select_from(group_members)
            .where(group_members.c.group_id == groups.c.id)
            .scalar_subquery()
        )
        suppressed = (
            sa.select(sa.func.count())
            .select_from(group_members.join(contacts, contacts.c.id == group_members.c.contact_id))
            .where(group_members.c.group_id == groups.c.id, _suppressed())
            .scalar_subquery()
        )
        return sa.select(
            *groups.c, members.label("members"), suppressed.label("suppressed")
        ).order_by(groups.c.name)

    @staticmethod
    def _group(m: Any) -> Group:
        return Group(
            id=m["id"],
            name=m["name"],
            source=m["source"],
            members=int(m["members"] or 0),
            suppressed=int(m["suppressed"] or 0),
            synced_at=m["synced_at"],
            sync_status=m["sync_status"],
            sync_message=m["sync_message"],
            next_sync_at=m["next_sync_at"],
            created_at=m["created_at"],
            updated_at=m["updated_at"],
        )

    def all(self) -> list[Group]:
        """Every group, by name, with its counts."""
        with self.store.read() as c:
            return [self._group(r._mapping) for r in c.execute(self._query())]

    def get(self, name: str, *, conn: Connection | None = None) -> Group | None:
        with self._reading(conn) as c:
            row = c.execute(self._query().where(groups.c.name == name)).first()
        return self._group(row._mapping) if row else None

    def create(self, name: str, *, actor: str, source: str = "manual") -> Group:
        """A new, empty group; ``GroupError`` if the name is taken."""
        now = self.store.clock.now()
        with self.store.write() as c:
            if c.execute(sa.select(groups.c.id).where(groups.c.name == name)).first():
                raise GroupError(
                    f"a group named `{name}` already exists; pick another name or add to it "
                    f"with `groups add {name} ADDRESS…`"
                )
            c.execute(
                sa.insert(groups).values(name=name, source=source, created_at=now, updated_at=now)
            )
            c.execute(
                sa.insert(audit_log).values(
                    at=now, actor=actor, action="group.created", target=f"group:{name}", detail={}
                )
            )
        found = self.get(name)
        assert found is not None
        return found

    def ensure(self, name: str, *, source: str) -> None:
        """The group exists (a group declared in the configuration)."""
        now = self.store.clock.now()
        with self.store.write() as c:
            if c.execute(sa.select(groups.c.id).where(groups.c.name == name)).first() is None:
                c.execute(
                    sa.insert(groups).values(
                        name=name, source=source, created_at=now, updated_at=now
                    )
                )

    def remove(self, name: str, identities: Sequence[str], *, actor: str) -> int:
        """Take the contacts with these identities out of the group; returns how many."""
        now = self.store.clock.now()
        with self.store.write() as c:
            gid = c.execute(sa.select(groups.c.id).where(groups.c.name == name)).scalar()
            if gid is None:
                raise GroupError(f"there is no group `{name}` (see `disparo groups`)")
            ids = sa.select(contacts.c.id).where(contacts.c.identity.in_(list(identities)))
            done = c.execute(
                sa.delete(group_members).where(
                    group_members.c.group_id == gid, group_members.c.contact_id.in_(ids)
                )
            )
            n = int(done.rowcount or 0)
            c.execute(sa.update(groups).where(groups.c.id == gid).values(updated_at=now))
            c.execute(
                sa.insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action="group.removed",
                    target=f"group:{name}",
                    detail={"addresses": len(identities), "removed": n},
                )
            )
            return n

    def members(self, name: str, *, offset: int = 0, limit: int = 50) -> list[Member]:
        """A page of the group's members, in order."""
        query = (
            sa.select(
                group_members.c.position,
                contacts.c.id,
                contacts.c.name,
                contacts.c.email,
                contacts.c.phone,
                _suppressed().label("suppressed"),
            )
            .select_from(
                group_members.join(contacts, contacts.c.id == group_members.c.contact_id).join(
                    groups, groups.c.id == group_members.c.group_id
                )
            )
            .where(groups.c.name == name)
            .order_by(group_members.c.position, contacts.c.id)
            .offset(offset)
            .limit(limit)
        )
        with self.store.read() as c:
            return [Member(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in c.execute(query)]

    def record_failure(
        self, name: str, reason: str, *, next_sync_at: datetime | None, actor: str
    ) -> None:
        """A sync failed (G2): the members stay; the group shows why."""
        now = self.store.clock.now()
        with self.store.write() as c:
            c.execute(
                sa.update(groups)
                .where(groups.c.name == name)
                .values(
                    sync_status="error",
                    sync_message=reason,
                    next_sync_at=next_sync_at,
                    updated_at=now,
                )
            )
            c.execute(
                sa.insert(audit_log).values(
                    at=now,
                    actor=actor,
                    action="group.sync-failed",
                    target=f"group:{name}",
                    detail={"reason": reason},
                )
            )

    def ids(self, names: Sequence[str]) -> list[int]:
        """The ids of the named groups, in the order given; ``GroupError`` names the unknown."""
        with self.store.read() as c:
            found = {
                str(row[0]): int(row[1])
                for row in c.execute(
                    sa.select(groups.c.name, groups.c.id).where(groups.c.name.in_(names))
                )
            }
        missing = [n for n in names if n not in found]
        if missing:
            raise GroupError(
                f"no group named {', '.join(f'`{n}`' for n in missing)} (see `disparo groups`; "
                "create one with `disparo groups create NAME`)"
            )
        return [int(found[n]) for n in names]

    def first_contact(self, names: Sequence[str]) -> dict[str, Any] | None:
        """The first member of the first of these groups that has one (for a preview): name,
        email, phone, external key and fields."""
        for name in names:
            query = (
                sa.select(
                    contacts.c.name,
                    contacts.c.email,
                    contacts.c.phone,
                    contacts.c.external_key,
                    contacts.c.fields,
                )
                .select_from(
                    group_members.join(contacts, contacts.c.id == group_members.c.contact_id).join(
                        groups, groups.c.id == group_members.c.group_id
                    )
                )
                .where(groups.c.name == name)
                .order_by(group_members.c.position)
                .limit(1)
            )
            with self.store.read() as c:
                row = c.execute(query).first()
            if row is not None:
                return dict(row._mapping)
        return None

    def idempotent(self, client: str, key: str) -> int | None:
        """The campaign an API client made with this Idempotency-Key, if any."""
        with self.store.read() as c:
            found = c.execute(
                sa.select(api_requests.c.campaign_id).where(
                    api_requests.c.client == client, api_requests.c.key == key
                )
            ).scalar()
        return int(found) if found is not None else None

    def of_campaign(self, campaign_id: int) -> list[str]:
        """The names of a composed campaign's groups, in its order."""
        query = (
            sa.select(groups.c.name)
            .select_from(campaign_groups.join(groups, groups.c.id == campaign_groups.c.group_id))
            .where(campaign_groups.c.campaign_id == campaign_id)
            .order_by(campaign_groups.c.position)
        )
        with self.store.read() as c:
            return [str(n) for n in c.execute(query).scalars()]

    def start(self, campaign_id: int, *, actor: str, start_at: datetime | None = None) -> int:
        """Start a draft: its audience is frozen now from its groups' members minus
        suppressions; returns the recipients. ``GroupError`` when it is not a draft."""
        from dataclasses import replace

        now = self.store.clock.now()
        conn = self.store.engine.connect()
        try:
            if conn.dialect.name == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                spec = self.store.campaigns.get(campaign_id, conn=conn)
                if spec is None:
                    raise GroupError(
                        f"there is no campaign {campaign_id} (see `disparo campaigns`)"
                    )
                if spec.status != "draft":
                    raise GroupError(
                        f"campaign {campaign_id} is {spec.status}, not a draft: only a draft "
                        "(`campaign new --draft`) can be started"
                    )
                gids = [
                    int(g)
                    for g in conn.execute(
                        sa.select(campaign_groups.c.group_id)
                        .where(campaign_groups.c.campaign_id == campaign_id)
                        .order_by(campaign_groups.c.position)
                    ).scalars()
                ]
                start = start_at or max(spec.start_at, now)
                spec = replace(spec, status="scheduled", start_at=start)
                per, params = audience_sql(gids)
                result = CampaignWriter(conn, conn.dialect.name == "postgresql", now).create(
                    spec,
                    per=per,
                    params=params,
                    actor=actor,
                    detail={"groups": gids, "started": True},
                    campaign_id=campaign_id,
                )
        finally:
            conn.close()
        return result[1]

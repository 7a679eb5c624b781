"""The store's read-only queries of ``disparo campaigns`` run without SQLAlchemy (issue 16,
goal 7): a command that only looks at the store would spend a third of its start-up importing
SQLAlchemy to run one SELECT.

The statements stay SQLAlchemy's (``engine.store.campaigns`` and the other query modules are
their one implementation): ``engine.store.compiled_reads`` compiles them, per dialect, into
``engine.reads_sql`` (plain SQL text, how its parameters bind, the columns and how each one is
read back), and a test fails when that generated module differs from what the statements
compile to today. Here they run on a plain ``sqlite3`` or ``psycopg`` connection made from the
same ``engine.database_url``, and only on a store whose schema is at this code's head (read
from ``alembic_version`` on that connection): anything else (no database yet, migrations
pending, a URL this module does not parse, a connection refused) answers None, and the
command takes the store's own path, which migrates, explains or reports as it always did.

Also here, free of SQLAlchemy too: the one mapping of a campaign row to a ``Campaign``
(``campaign_from``) and the head revision read from the migration files (``quick_head``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from engine.campaign import COUNTERS, Campaign, Content
from engine.schedule import Pacing

MIGRATIONS = Path(__file__).parent / "store" / "migrations"

_REVISION = re.compile(
    r"""^(down_revision|revision)\s*(?::[^=]*)?=\s*['"]?([\w.]+|None)['"]?\s*$""", re.M
)


@cache
def quick_head() -> str | None:
    """The head revision read from the migration files' ``revision`` / ``down_revision``
    lines, without Alembic (which costs ~0.2 s to import and to scan them): None when the
    files are not one plain chain, and then ``head_revision`` decides."""
    revisions: dict[str, str | None] = {}
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        found = {m.group(1): m.group(2) for m in _REVISION.finditer(text)}
        if "revision" not in found:
            continue
        if "down_revision" not in found:
            return None
        down = found["down_revision"]
        revisions[found["revision"]] = None if down == "None" else down
    heads = set(revisions) - {d for d in revisions.values() if d is not None}
    return heads.pop() if len(heads) == 1 else None


def _pacing(m: Mapping[Any, Any]) -> Pacing | None:
    kind, value, seconds = m["pacing_kind"], m["pacing_value"], m["pacing_interval_s"]
    if kind not in ("percent", "size") or not seconds:
        return None
    return Pacing(kind, int(value or (100 if kind == "percent" else 1)), timedelta(seconds=seconds))


def campaign_from(m: Mapping[Any, Any]) -> Campaign:
    """A campaign row (``ROW_COLUMNS`` or ``FULL_COLUMNS`` of ``engine.store.campaigns``) as
    a ``Campaign`` (the only place it is read); ``content`` is filled when the row carries it."""
    content = Content()
    if "body" in m:
        content = Content(
            subject=m["subject"],
            body=m["body"],
            template=m["template"],
            whatsapp_number=m["whatsapp_number"],
            sender=m["sender"],
            from_name=m["from_name"],
            reply_to=m["reply_to"],
            settings=m["settings"] or {},
        )
    return Campaign(
        id=m["id"],
        name=m["name"],
        channel=m["channel"],
        account=m["account"],
        wallet=m["wallet"],
        origin=m["origin"],
        address_kind=m["address_kind"],
        status=m["status"],
        status_reason=m["status_reason"],
        priority=m["priority"],
        created_at=m["created_at"],
        start_at=m["start_at"],
        deadline=m["deadline"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        pacing=_pacing(m),
        exclude_recent_hours=m["exclude_recent_hours"],
        recipients=m["recipients"],
        audience=m["audience"],
        batches=m["batches"],
        released_batches=m["released_batches"],
        paused_seconds=m["paused_seconds"],
        paused_since=m["paused_since"],
        counters={name: int(m[name] or 0) for name in COUNTERS},
        content=content,
        mailing_id=m["mailing_id"],
    )


# -- reading a column back as SQLAlchemy's types do ------------------------------------------


def _utc(value: Any) -> datetime | None:
    # UTCDateTime: naive UTC in the database (SQLite: ISO text), aware UTC out
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


def _json(value: Any) -> Any:
    # JSON (SQLite: text) or JSONB (psycopg loads it)
    return json.loads(value) if isinstance(value, str | bytes) else value


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


#: how a column kind of ``engine.reads_sql`` is read back (absent: as the driver gives it)
READERS: dict[str, Any] = {"utc": _utc, "json": _json, "bool": _bool}

SQLITE_BUSY_TIMEOUT_S = 30.0


class QuickReader:
    """A plain DB-API connection to a store at head, running ``engine.reads_sql``'s queries."""

    def __init__(self, connection: Any, dialect: str) -> None:
        self.connection = connection
        #: ``sqlite`` or ``postgresql``: which of each query's compiled forms runs
        self.dialect = dialect

    @classmethod
    def open(cls, url: str, password: str | None = None) -> QuickReader | None:
        """A reader of the store at ``url`` (``engine.database_url``; ``password`` from its
        secret reference), or None when this path cannot serve it (a URL it does not parse,
        no database file, a connection that fails, a schema not at head): the caller then
        opens the store as usual, which migrates or explains."""
        try:
            reader = cls._connect(url, password)
        except Exception:  # the store's own path reports it in its words
            return None
        if reader is None:
            return None
        try:
            at_head = reader._at_head()
        except Exception:  # no alembic_version: never migrated
            at_head = False
        if not at_head:
            reader.close()
            return None
        return reader

    @classmethod
    def _connect(cls, url: str, password: str | None) -> QuickReader | None:
        scheme, sep, rest = url.partition("://")
        if not sep:
            return None
        if scheme in ("sqlite", "sqlite+pysqlite"):
            # as SQLAlchemy reads it: sqlite:///relative.db, sqlite:////absolute.db
            if "?" in rest or not rest.startswith("/"):
                return None
            database = rest[1:]
            if database in ("", ":memory:") or not Path(database).is_file():
                return None
            import sqlite3

            conn = sqlite3.connect(database, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
            conn.execute("PRAGMA foreign_keys=ON")
            return cls(conn, "sqlite")
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            parts = urlsplit(url)
            params: dict[str, Any] = dict(parse_qsl(parts.query))
            if parts.username:
                params["user"] = unquote(parts.username)
            if parts.password:
                params["password"] = unquote(parts.password)
            if password is not None:
                params["password"] = password
            if parts.hostname:
                params["host"] = unquote(parts.hostname)
            if parts.port:
                params["port"] = parts.port
            if parts.path.strip("/"):
                params["dbname"] = unquote(parts.path.strip("/"))
            import psycopg

            return cls(psycopg.connect(**params, autocommit=True), "postgresql")
        return None

    def _at_head(self) -> bool:
        head = quick_head()
        if head is None:
            return False
        cursor = self.connection.cursor()
        try:
            cursor.execute("SELECT version_num FROM alembic_version")
            found = [r[0] for r in cursor.fetchall()]
        finally:
            cursor.close()
        return found == [head]

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()

    def rows(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of the compiled query ``name`` with ``params``, each a dict of its
        columns' labels, read back as SQLAlchemy would (aware UTC times, JSON documents)."""
        from engine.reads_sql import COLUMNS, QUERIES

        sql, order, fixed = QUERIES[name][self.dialect]
        values = {**fixed, **params}
        bound: Any = values if order is None else tuple(values[p] for p in order)
        columns = COLUMNS[name]
        readers = [(label, READERS.get(kind)) for label, kind in columns]
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, bound)
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        return [
            {label: read(v) if read else v for (label, read), v in zip(readers, row, strict=True)}
            for row in fetched
        ]

    def recent_campaigns(self, limit: int, *, status: str | None = None) -> list[Campaign]:
        """``store.campaigns.recent(limit, status=status)``: newest first."""
        if status:
            found = self.rows("recent_campaigns_by_status", limit=limit, status=status)
        else:
            found = self.rows("recent_campaigns", limit=limit)
        return [campaign_from(m) for m in found]

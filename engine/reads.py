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
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from engine.campaign import COUNTERS, Campaign, Content
from engine.rates import Limits, Rates
from engine.schedule import DEFAULT_RATE, Pacing, batch_sizes

if TYPE_CHECKING:
    from engine.config import Config

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


@dataclass(frozen=True)
class AccountState:
    name: str
    channel: str
    guard_state: str
    paused_at: datetime | None
    paused_until: datetime | None
    pause_reason: str | None
    override_by: str | None
    override_reason: str | None
    override_at: datetime | None
    checked_at: datetime | None
    sent_24h: int
    bounces_24h: int
    complaints_24h: int
    lease_owner: str | None
    lease_until: datetime | None
    #: the circuit breaker (closed | open), why it opened, until when it waits to probe
    breaker_state: str = "closed"
    breaker_reason: str | None = None
    breaker_failures: int = 0
    breaker_opened_at: datetime | None = None
    breaker_retry_at: datetime | None = None
    breaker_pause_s: int | None = None
    #: the token bucket as the last holder left it: tokens at ``bucket_at`` (None: no holder
    #: left it yet, a full bucket)
    bucket_tokens: float | None = None
    bucket_at: datetime | None = None

    @property
    def breaker_open(self) -> bool:
        """The account's channel is failing: nothing is sent but a probe at ``retry_at``."""
        return self.breaker_state == "open"

    def rates(self, limits: Limits) -> Rates:
        """The counts of the guard's last check against ``limits`` (D14)."""
        return Rates(self.sent_24h, self.bounces_24h, self.complaints_24h, limits)


def account_state(m: Mapping[Any, Any]) -> AccountState:
    """An ``accounts`` row as an ``AccountState``."""
    return AccountState(**{k: m[k] for k in AccountState.__dataclass_fields__})


@dataclass(frozen=True)
class ErrorCount:
    """How often one reason occurred (``outcome``: retry | failed | bounced)."""

    outcome: str
    reason: str
    scope: str  # account | delivery
    count: int
    first_at: datetime
    last_at: datetime
    campaign_id: int | None = None
    account: str | None = None


def error_count(m: Mapping[Any, Any]) -> ErrorCount:
    """A row of ``delivery_errors`` counts (summed) as an ``ErrorCount``."""
    return ErrorCount(
        outcome=m["outcome"],
        reason=m["reason"],
        scope=m["scope"],
        count=int(m["count"]),
        first_at=m["first_at"],
        last_at=m["last_at"],
        campaign_id=m.get("campaign_id"),
        account=m.get("account"),
    )


def errors_by_account(rows: Iterable[Mapping[Any, Any]], limit: int) -> dict[str, list[ErrorCount]]:
    """``for_accounts_select``'s rows (by account, most frequent first) as each account's
    ``limit`` most frequent reasons."""
    found: dict[str, list[ErrorCount]] = {}
    for r in rows:
        listed = found.setdefault(r["account"], [])
        if len(listed) < limit:
            listed.append(error_count(r))
    return found


def in_flight_by_account(rows: Iterable[tuple[Any, Any]]) -> Counter[str]:
    """``in_flight_select``'s rows (account, deliveries claimed) as a counter."""
    return Counter({str(a): int(n) for a, n in rows if a})


def kind_counts(rows: Iterable[tuple[Any, Any]]) -> tuple[int, int, int]:
    """``counts_select``'s rows (kind, count) as (sent, bounced, complaints) (D14)."""
    found = dict(rows)
    return found.get("sent", 0), found.get("bounced", 0), found.get("complaint", 0)


_EMAIL = re.compile(r"<?[^\s<>@,;]+@[^\s<>@,;]+>?")
_PHONE = re.compile(r"<?(?<![\w.])\+?\d[\d ()-]{7,}\d>?")
_SPACE = re.compile(r"\s+")
REASON_LENGTH = 300


def reason_key(reason: str | None) -> str:
    """The reason as counted: addresses and phone numbers become ``<address>`` and
    ``<number>`` (a 550 for ana@x and one for bia@y are the same reason), one line, at most
    300 characters."""
    text = _SPACE.sub(" ", reason or "unknown").strip() or "unknown"
    text = _PHONE.sub("<number>", _EMAIL.sub("<address>", text))
    return text[: REASON_LENGTH - 1] + "…" if len(text) > REASON_LENGTH else text


@dataclass(frozen=True)
class Waiting:
    """Deliveries not sent yet because of one reason (their last error), and when the first
    of them is tried again."""

    reason: str
    count: int
    next_at: datetime | None


def waiting_from(rows: Iterable[tuple[Any, Any, Any]], limit: int) -> list[Waiting]:
    """``waiting_select``'s rows merged by reason as counted (``reason_key``), most first,
    each with its earliest next attempt."""
    merged: dict[str, tuple[int, datetime | None]] = {}
    for error, n, next_at in rows:
        key = reason_key(error)
        count, first = merged.get(key, (0, None))
        if next_at is not None and not isinstance(next_at, datetime):
            next_at = None
        soonest = min((t for t in (first, next_at) if t is not None), default=None)
        merged[key] = (count + int(n), soonest)
    ordered = sorted(merged.items(), key=lambda kv: -kv[1][0])[:limit]
    return [Waiting(reason, n, at) for reason, (n, at) in ordered]


@dataclass(frozen=True)
class Trouble:
    """Why a campaign is not done: its errors by reason, the reasons of what waits for a
    retry and when the next one is, and its account's state (breaker, guard); what
    ``engine.sending.status.campaign_trouble`` (as ``CampaignTrouble``) and
    ``QuickReader.trouble`` return."""

    errors: tuple[ErrorCount, ...]
    waiting: tuple[Waiting, ...]
    next_retry_at: datetime | None
    #: why its account sends nothing now (its breaker, the guard), and until when
    account_paused: str | None
    account_until: datetime | None

    @property
    def error_total(self) -> int:
        return sum(e.count for e in self.errors)


def trouble_from(
    errors: Iterable[ErrorCount], waiting: Iterable[Waiting], account: AccountState | None
) -> Trouble:
    """A campaign's trouble from its error counts, its deliveries waiting for a retry by
    reason and its account's state (None: no account, or not known to the store): the one
    implementation behind the store's path and the quick reader's."""
    waits = tuple(waiting)
    next_at = min((w.next_at for w in waits if w.next_at is not None), default=None)
    paused = until = None
    if account is not None and account.breaker_open:
        paused, until = account.breaker_reason, account.breaker_retry_at
    elif account is not None and account.guard_state == "paused" and not account.override_by:
        paused, until = f"paused by the guard: {account.pause_reason}", account.paused_until
    return Trouble(tuple(errors), waits, next_at, paused, until)


def account_rate(config: Config, campaign: Campaign) -> float:
    """The rate its sender account sends at (D10), else the default (D9)."""
    account = config.accounts.get(campaign.account or "")
    return account.rate if account is not None else DEFAULT_RATE


#: partly sent batches are counted up to this many deliveries (the rest is derived)
BATCH_COUNT_CAP = 5_000


def open_by_batch(
    c: Campaign,
    flags: Callable[[int], Iterable[tuple[int, bool, bool]]],
    count: Callable[[int, bool, int | None], int],
    *,
    cap: int = BATCH_COUNT_CAP,
) -> dict[int, int]:
    """Open (pending or claimed) deliveries of each batch of the campaign, cheaply, from
    ``flags(n)`` (for batches 1..n: (batch, has open, has settled), two index seeks each) and
    ``count(batch, open_, cap)`` (open or settled deliveries of a batch, at most ``cap``).

    A batch with none open is done, one with nothing settled is whole. Only partly sent
    batches are counted, up to ``cap``; the one too big to count (the batch being sent) is
    what the campaign's counters leave.
    """
    sizes = batch_sizes(c.audience, c.pacing)
    if len(sizes) != c.batches:  # a campaign of another shape: keep the stored count
        sizes = (sizes + [0] * c.batches)[: c.batches]
    if not sizes or c.finished:
        return dict.fromkeys(range(1, len(sizes) + 1), 0)
    opened: dict[int, int] = {}
    unknown: list[int] = []
    for (index, has_open, has_settled), size in zip(flags(len(sizes)), sizes, strict=True):
        if not has_open:
            opened[index] = 0
        elif not has_settled:
            opened[index] = size
        else:
            unknown.append(index)
    big: list[int] = []
    for k in unknown:
        n = count(k, True, cap)
        if n < cap:
            opened[k] = n
            continue
        settled = count(k, False, cap)
        if settled < cap:
            opened[k] = max(0, sizes[k - 1] - settled)
        else:
            big.append(k)
    for k in big[:-1]:  # rare: several batches half sent, each with thousands left
        opened[k] = count(k, True, None)
    if big:
        k = big[-1]
        rest = c.remaining - sum(opened.values())
        opened[k] = min(sizes[k - 1], max(0, rest))
    return opened


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


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to the store; use an aware one (UTC)")
    return value.astimezone(UTC).replace(tzinfo=None)


def _sqlite_utc(value: datetime | None) -> str | None:
    # as SQLAlchemy's SQLite DATETIME stores it (times compare as text there)
    naive = _naive_utc(value)
    return None if naive is None else naive.strftime("%Y-%m-%d %H:%M:%S.%f")


#: how a parameter kind of ``engine.reads_sql`` is bound, per dialect (``UTCDateTime``)
BINDERS: dict[str, dict[str, Any]] = {"utc": {"sqlite": _sqlite_utc, "postgresql": _naive_utc}}

SQLITE_BUSY_TIMEOUT_S = 30.0


class QuickReader:
    """A plain DB-API connection to a store at head, running ``engine.reads_sql``'s queries."""

    def __init__(
        self, connection: Any, dialect: str, psycopg_params: dict[str, Any] | None = None
    ) -> None:
        #: a DB-API connection (sqlite3, psycopg) or an ``engine.libpq.Connection``
        self.connection = connection
        #: ``sqlite`` or ``postgresql``: which of each query's compiled forms runs
        self.dialect = dialect
        #: with a libpq connection: how to connect with psycopg, for a query whose values
        #: that connection does not read (``engine.libpq.Unsupported``)
        self._psycopg_params = psycopg_params
        self._psycopg: Any = None

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
            try:  # libpq itself: importing psycopg would cost more than the command
                from engine.libpq import Connection

                return cls(Connection(params), "postgresql", params)
            except OSError:  # no libpq to load: psycopg's
                pass
            import psycopg

            return cls(psycopg.connect(**params, autocommit=True), "postgresql")
        return None

    def _fetch(self, sql: str, bound: Any = ()) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` with ``bound``, on whichever connection this reader has."""
        if self._psycopg_params is not None:
            from engine.libpq import Unsupported

            if self._psycopg is None:
                try:
                    return self.connection.query(sql, bound)  # type: ignore[no-any-return]
                except Unsupported:  # a value psycopg reads (or binds) its own way
                    import psycopg

                    self._psycopg = psycopg.connect(**self._psycopg_params, autocommit=True)
            return [tuple(r) for r in self._psycopg.execute(sql, bound).fetchall()]
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, bound)
            return [tuple(r) for r in cursor.fetchall()]
        finally:
            cursor.close()

    def _at_head(self) -> bool:
        head = quick_head()
        if head is None:
            return False
        found = [r[0] for r in self._fetch("SELECT version_num FROM alembic_version")]
        return found == [head]

    def close(self) -> None:
        """Close the connection (and psycopg's, when a query needed it)."""
        self.connection.close()
        if self._psycopg is not None:
            self._psycopg.close()

    def values(self, name: str, **params: Any) -> list[tuple[Any, ...]]:
        """The rows of the compiled query ``name`` with ``params`` (aware times bound as the
        store binds them), each column read back as SQLAlchemy would (aware UTC times, JSON
        documents)."""
        from engine.reads_sql import COLUMNS, QUERIES

        sql, order, fixed, kinds = QUERIES[name][self.dialect]
        values = {**fixed, **params}
        for param, kind in kinds.items():
            values[param] = BINDERS[kind][self.dialect](values[param])
        bound: Any = values if order is None else tuple(values[p] for p in order)
        readers = [READERS.get(kind) for _, kind in COLUMNS[name]]
        fetched = self._fetch(sql, bound)
        if not any(readers):
            return fetched
        return [
            tuple(read(v) if read else v for read, v in zip(readers, row, strict=True))
            for row in fetched
        ]

    def rows(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """``values`` as dicts of the columns' labels (every column of such a query has one)."""
        from engine.reads_sql import COLUMNS

        labels = [str(label) for label, _ in COLUMNS[name]]
        return [dict(zip(labels, row, strict=True)) for row in self.values(name, **params)]

    def recent_campaigns(self, limit: int, *, status: str | None = None) -> list[Campaign]:
        """``store.campaigns.recent(limit, status=status)``: newest first."""
        if status:
            found = self.rows("recent_campaigns_by_status", limit=limit, status=status)
        else:
            found = self.rows("recent_campaigns", limit=limit)
        return [campaign_from(m) for m in found]

    def account_states(self) -> dict[str, AccountState]:
        """``store.accounts.states()``."""
        return {m["name"]: account_state(m) for m in self.rows("account_states")}

    def in_flight(self) -> Counter[str]:
        """``store.campaigns.in_flight()``: deliveries claimed right now, per account."""
        return in_flight_by_account(self.values("in_flight"))

    def account_counts(self, account: str, since: datetime) -> tuple[int, int, int]:
        """``store.accounts.counts(account, since)`` (D14)."""
        return kind_counts(self.values("account_counts", account=account, since=since))

    def campaign(self, campaign_id: int) -> Campaign | None:
        """``store.campaigns.get(campaign_id)``: one campaign with its content."""
        found = self.rows("campaign", campaign_id=campaign_id)
        return campaign_from(found[0]) if found else None

    def open_by_batch(self, c: Campaign, *, cap: int = BATCH_COUNT_CAP) -> dict[int, int]:
        """``store.views.open_by_batch(c)``: open deliveries of each batch, cheaply."""

        def flags(n: int) -> list[tuple[int, bool, bool]]:
            found = self.values("batch_flags", campaign_id=c.id, batches=n) if n > 0 else []
            return [(int(k), bool(o), bool(s)) for k, o, s in found]

        def count(batch: int, open_: bool, cap_: int | None) -> int:
            name = f"count_{'open' if open_ else 'settled'}_in_batch"
            if cap_ is None:
                found = self.values(name, campaign_id=c.id, batch=batch)
            else:
                found = self.values(f"{name}_capped", campaign_id=c.id, batch=batch, cap=cap_)
            return int(found[0][0] or 0) if found else 0

        return open_by_batch(c, flags, count, cap=cap)

    def campaign_errors(self, campaign_id: int, *, limit: int) -> list[ErrorCount]:
        """``store.errors.for_campaign(campaign_id, limit=limit)``."""
        found = self.rows("campaign_errors", campaign_id=campaign_id, limit=limit)
        return [error_count(m) for m in found]

    def waiting(self, campaign_id: int, *, limit: int) -> list[Waiting]:
        """``store.errors.waiting(campaign_id, limit=limit)``."""
        return waiting_from(self.values("waiting", campaign_id=campaign_id), limit)

    def trouble(self, c: Campaign, *, limit: int = 5) -> Trouble:
        """What ``engine.sending.status.campaign_trouble(store, c)`` says, from the same
        queries (a test holds the two equal)."""
        errors = self.campaign_errors(c.id, limit=50)
        waiting = self.waiting(c.id, limit=limit)
        state = self.account_states().get(c.account) if c.account else None
        return trouble_from(errors, waiting, state)

    def account_errors(self, *, since: datetime, limit: int) -> dict[str, list[ErrorCount]]:
        """``store.errors.for_accounts(since=since, limit=limit)``."""
        return errors_by_account(self.rows("account_errors_since", since=since), limit)

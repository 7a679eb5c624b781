"""One file's import (F12): rows staged in a temporary table, then one transaction that writes
the ledger, wallet, contacts, tags, memberships, mailing, campaign and deliveries, set-based.

Staging touches only a temporary table (on SQLite it takes no lock on the database), so the
slow part, parsing and hygiene, never blocks the dispatcher's writes; the commit phase is
short and all-or-nothing. Rows go in with the driver's own bulk path (``executemany`` on
SQLite, ``COPY`` on PostgreSQL): Core ``insert()`` with dicts is ~2.5x slower (NOTES.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from operator import is_not, itemgetter
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.addresses import normalise_email, normalise_phone, suppression_key
from engine.campaign import Campaign
from engine.rows import SQLITE_STAGING, StagingFile
from engine.rows import STAGING as STAGING  # defined there: light for other processes
from engine.rows import StagedRow as StagedRow
from engine.schedule import batch_sizes
from engine.store.base import Queries
from engine.store.campaigns import campaign_columns
from engine.store.db import SQLITE_CACHE_KIB, SQLITE_SORT_CACHE_KIB
from engine.store.schema import (
    UTCDateTime,
    audit_log,
    campaigns,
    files,
    mailings,
    rejected_rows,
    wallets,
)

AUDIENCE = "import_audience"
COLUMNS = (
    "row_no",
    "identity",
    "external_key",
    "name",
    "email",
    "phone",
    "fields",
    "message",
    "prospect",
)


class KeptRow(NamedTuple):
    """A rejected row kept in the store (``rejected_rows``) for the file's result files."""

    line: int
    address: str
    code: str
    rule: str
    reason: str
    reason_pt: str


class DuplicateFile(Exception):
    """The same content under the same name was already imported (F10), maybe by another node."""


class DuplicateSequence(Exception):
    """The source already has a mailing with this date and sequence (N6)."""


class EmptyAudience(Exception):
    """The campaign would have no recipient and the format says that is an error (N20)."""


@dataclass(frozen=True)
class FileFacts:
    source: str
    path: str
    size: int
    mtime: datetime | None
    sha256: str
    dedupe_key: str


@dataclass(frozen=True)
class MailingFacts:
    name: str
    file_date: Any
    sequence: int
    description: str
    params: Mapping[str, Any]


@dataclass(frozen=True)
class CommitFacts:
    file: FileFacts
    wallet: str
    tag: str
    replace_tags: bool
    remove_other_wallets: bool
    mailing: MailingFacts | None
    campaign: Campaign | None
    rows_total: int
    rows_rejected: int
    actor: str
    #: send only to prospect rows (N27, ``whatsapp-prospect``)
    prospects_only: bool = False
    #: a campaign left with no recipient is an error (N20), not an empty campaign
    empty_is_error: bool = False
    #: the wallet becomes exactly this file's contacts (a list sync in replace mode, S1)
    replace_list: bool = False
    #: the staged rows' ``prospect`` is an opt-out flag: why, for the suppressions (S1)
    opt_out_reason: str | None = None


@dataclass(frozen=True)
class CommitResult:
    file_id: int
    mailing_id: int | None
    campaign_id: int | None
    contacts: int
    new_contacts: int
    merged: int
    recipients: int
    pending: int
    suppressed: int
    skipped: int
    duplicate_addresses: int
    batches: int
    #: members who left the wallet (replace mode)
    removed: int = 0
    #: addresses suppressed by the file's opt-out column (new suppressions)
    opted_out: int = 0


class ImportSession:
    """A connection holding one import's staging table. Use as a context manager."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.conn: Connection | None = None
        self.rows = 0
        self.has_messages = False
        #: PostgreSQL: the staging COPY, open from the first chunk to the commit (_end_copy)
        self._copy: Any = None
        self._copy_open = ExitStack()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> ImportSession:
        self.conn = self.store.engine.connect()
        dialect = self.conn.dialect.name
        self.dialect = dialect
        driver = self._driver()
        if dialect == "sqlite":
            # this import's commit does not copy its log into the database: the store does it
            # in the background afterwards (Store.checkpoint_soon)
            driver.execute("PRAGMA wal_autocheckpoint=0")
            driver.execute(f"DROP TABLE IF EXISTS temp.{STAGING}")
            driver.execute(f"CREATE TEMP TABLE {STAGING} ({SQLITE_STAGING})")
        else:
            with driver.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGING}")
                cur.execute(
                    # no primary key: row numbers are unique by construction, and an index
                    # written per staged row costs more than the sorts that would use it
                    f"CREATE TEMP TABLE {STAGING} (row_no integer NOT NULL, "
                    "identity text NOT NULL,"
                    " external_key text, name text, email text, phone text, fields jsonb,"
                    " message text, prospect boolean)"
                )
            driver.commit()
        return self

    def __exit__(self, *exc: object) -> None:
        conn, self.conn = self.conn, None
        if conn is None:
            return
        try:
            if self._copy is not None:
                self._copy = None
                with suppress(Exception):  # the error being raised is the one to report
                    self._copy_open.close()
            if conn.in_transaction():
                conn.rollback()
            driver = conn.connection.driver_connection
            if self.dialect == "sqlite":
                assert driver is not None
                driver.execute(f"DROP TABLE IF EXISTS temp.{STAGING}")
                driver.execute("PRAGMA wal_autocheckpoint=1000")  # the pooled default
            else:
                assert driver is not None
                driver.rollback()
                with driver.cursor() as cur:
                    cur.execute(f"DROP TABLE IF EXISTS pg_temp.{STAGING}")
                driver.commit()
        finally:
            conn.close()

    def _driver(self) -> Any:
        assert self.conn is not None
        driver = self.conn.connection.driver_connection
        assert driver is not None
        return driver

    # -- staging -----------------------------------------------------------------------------

    def stage(self, rows: Sequence[StagedRow]) -> None:
        """Add parsed rows (in file order) to the staging table."""
        if not rows:
            return
        driver = self._driver()
        if not self.has_messages:
            messages = map(itemgetter(7), rows)
            self.has_messages = any(map(is_not, messages, repeat(None)))
        if self.dialect == "sqlite":
            driver.execute("BEGIN")  # only the temporary database is written: no lock taken
            driver.executemany(f"INSERT INTO temp.{STAGING} VALUES (?,?,?,?,?,?,?,?,?)", rows)
            driver.execute("COMMIT")
        else:
            copy = self._copy if self._copy is not None else self._start_copy()
            for r in rows:
                copy.write_row(r)
        self.rows += len(rows)

    def _start_copy(self) -> Any:
        """PostgreSQL: one ``COPY`` for all the chunks, so the server stores a chunk while
        this process parses the next one (a ``COPY`` and a commit per chunk waited for the
        server each time: ~10 % of a 100,000-row import)."""
        cur = self._copy_open.enter_context(self._driver().cursor())
        # only a temporary table is written (gone after a crash anyway): its commit need not
        # wait for the disk; the import's own commit does
        cur.execute("SET LOCAL synchronous_commit = off")
        self._copy = self._copy_open.enter_context(
            cur.copy(f"COPY {STAGING} ({', '.join(COLUMNS)}) FROM STDIN")
        )
        return self._copy

    def _end_copy(self) -> None:
        """PostgreSQL: the staging ``COPY`` ends and its rows are committed (before anything
        else runs on the connection)."""
        if self._copy is None:
            return
        self._copy = None
        self._copy_open.close()
        self._driver().commit()

    def adopt(self, part: StagingFile) -> None:
        """SQLite: add the rows another process staged in ``part`` (closed), which follow
        this session's in the file, to the staging table (one statement, in row order)."""
        assert self.dialect == "sqlite"
        driver = self._driver()
        driver.execute("ATTACH DATABASE ? AS import_part", (str(part.path),))
        try:
            driver.execute("BEGIN")
            driver.execute(
                f"INSERT INTO temp.{STAGING} SELECT * FROM import_part.{STAGING} ORDER BY row_no"
            )
            driver.execute("COMMIT")
        finally:
            driver.execute("DETACH DATABASE import_part")
        self.rows += part.rows
        self.has_messages = self.has_messages or part.has_messages

    def known_phones(self, phones: Sequence[str]) -> set[str]:
        """Which of ``phones`` the contact base already knows (N27: the others are prospects)."""
        if not phones:
            return set()
        self._end_copy()
        driver = self._driver()
        marks = ",".join("?" if self.dialect == "sqlite" else "%s" for _ in phones)
        query = f"SELECT phone FROM contacts WHERE phone IN ({marks})"
        if self.dialect == "sqlite":
            return {row[0] for row in driver.execute(query, list(phones))}
        with driver.cursor() as cur:
            cur.execute(query, list(phones))
            found = {row[0] for row in cur.fetchall()}
        driver.commit()
        return found

    # -- the transaction ---------------------------------------------------------------------

    def commit(self, facts: CommitFacts, kept: Sequence[KeptRow] = ()) -> CommitResult:
        """Write everything in one transaction; raise ``DuplicateFile``, ``DuplicateSequence``
        or ``EmptyAudience`` (nothing written) when the import must not happen. ``kept``: the
        rejected rows the format asked to keep (``ImportSpec.keep_rejected``)."""
        assert self.conn is not None
        conn = self.conn
        self._end_copy()
        driver = self._driver()
        if self.dialect == "sqlite":
            if facts.campaign is not None:  # recipients are grouped by identity
                driver.execute(
                    f"CREATE INDEX temp.{STAGING}_identity ON {STAGING} (identity, row_no)"
                )
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        else:
            # no index: the merges are hash joins; only repeated identities with messages
            # need one (_Commit._campaign). The planner needs the row count and how distinct
            # the identities are, not the other columns' histograms: a small sample of those
            # two columns costs ~40 ms at 100,000 rows, the full ANALYZE ~400 ms (jsonb)
            with driver.cursor() as cur:
                cur.execute("SET LOCAL default_statistics_target = 10")
                cur.execute(f"ANALYZE {STAGING} (identity, row_no)")
            driver.commit()
        now = self.store.clock.now()
        with self._trusted_references(), conn.begin():
            if self.dialect != "sqlite":  # the deliveries' window sorts stay in memory
                conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
            result = _Commit(
                conn, self.dialect, facts, now, self.has_messages, self.store, self.rows
            ).run(kept)
        self.store.checkpoint_soon()
        return result

    @contextmanager
    def _trusted_references(self) -> Iterator[None]:
        """SQLite: no foreign key checked row by row during the import's transaction (the
        counterpart of ``skip_reference_checks`` on PostgreSQL; ~10 % of the commit). Every
        reference it writes points to a row it inserted or read itself under the write lock
        (``BEGIN IMMEDIATE``: SQLite has one writer, so nobody deletes them before the
        commit), and the rows it deletes (memberships, tags) have no referring rows."""
        if self.dialect != "sqlite":
            yield
            return
        driver = self._driver()
        driver.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, else a no-op
        try:
            yield
        finally:
            driver.execute("PRAGMA foreign_keys=ON")


def upsert_staged_contacts(
    conn: Connection, pg: bool, now: datetime, import_id: int | None, rows: int | None = None
) -> tuple[int, int] | None:
    """Insert or update the contacts of the staged rows (N25: a later row of an identity
    updates the earlier one; fields merge). ``import_id`` marks them as this import's (None:
    a group's or an API client's rows, which no ledger entry records); ``rows``: how many
    rows are staged, when the caller knows. Returns, on PostgreSQL, how many of them the base
    already had and how many contacts they are, one per identity (``_pg_upsert``); None on
    SQLite."""
    params = {"now": now, "imp": import_id}
    common = (
        "external_key = COALESCE(excluded.external_key, contacts.external_key), "
        "name = COALESCE(excluded.name, contacts.name), "
        "email = COALESCE(excluded.email, contacts.email), "
        "phone = COALESCE(excluded.phone, contacts.phone), "
        "updated_at = excluded.updated_at, "
    )
    if not pg:
        # rows go in file order: a later row of the same identity updates the earlier one
        # (N25), keeping the first row's number for the recipients' order (D3)
        sql = (
            "INSERT INTO contacts (identity, external_key, name, email, phone, fields, "
            "created_at, updated_at, import_id, import_row) "
            # identity order: the unique index is written sequentially (cache friendly);
            # row order within an identity keeps the merge semantics
            f"SELECT identity, external_key, name, email, phone, fields, :now, :now, :imp, "
            f"row_no FROM {STAGING} WHERE true ORDER BY row_no "
            "ON CONFLICT (identity) DO UPDATE SET "
            + common
            + "fields = json_patch(contacts.fields, excluded.fields), "
            "import_row = CASE WHEN contacts.import_id = excluded.import_id "
            "THEN contacts.import_row ELSE excluded.import_row END, "
            "import_id = excluded.import_id"
        )
    else:
        return _pg_upsert(conn, params, rows)
    conn.execute(sa.text(sql).bindparams(sa.bindparam("now", type_=UTCDateTime())), params)
    return None


#: the identities of the staged rows that appear more than once, and how often (PostgreSQL)
REPEATED = "import_repeated"


class _Raced(Exception):
    """Another transaction wrote one of the staged identities between two statements."""


def _pg_source(conn: Connection, rows: int | None = None) -> tuple[str, int]:
    """PostgreSQL refuses to touch a row twice in one statement: a ``SELECT`` of the staged
    contacts with one row per identity (``identity``, the columns, ``import_row``), and how many
    identities. Most files have no repeated identity: counting the distinct ones tells, and
    the rows are taken as they are (no grouping, no JSON merge). A repeated identity (N25)
    gets one merged row: each column's last non-null value, the fields merged in file order,
    its first row's number (D3). ``rows``: how many rows are staged, when the caller knows."""
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{REPEATED}")
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {REPEATED} (identity text NOT NULL, n bigint NOT NULL) ON COMMIT DROP"
    )
    staged = f"(SELECT count(*) FROM {STAGING})" if rows is None else str(int(rows))
    # do the rows repeat an identity? Counting the distinct ones (a sort of bytes) costs ~40 %
    # less than grouping them in a hash table, which is only built when some do
    total, distinct = conn.exec_driver_sql(
        f'SELECT {staged}, count(DISTINCT identity COLLATE "C") FROM {STAGING}'
    ).one()
    single = (
        "SELECT identity, external_key, name, email, phone, fields, row_no AS import_row "
        f"FROM {STAGING} "
    )
    if total == distinct:
        return single, int(total)
    conn.exec_driver_sql(
        f"INSERT INTO {REPEATED} SELECT identity, count(*) "
        f"FROM {STAGING} GROUP BY identity HAVING count(*) > 1"
    )
    repeated, merged = conn.exec_driver_sql(
        f"SELECT count(*), coalesce(sum(n), 0) FROM {REPEATED}"
    ).one()
    rows = int(total)

    def last(col: str) -> str:
        return f"(array_agg({col} ORDER BY row_no DESC) FILTER (WHERE {col} IS NOT NULL))[1]"

    conn.exec_driver_sql(f"ANALYZE {REPEATED}")
    return (
        single + f"s WHERE NOT EXISTS (SELECT FROM {REPEATED} r WHERE r.identity = s.identity) "
        f"UNION ALL SELECT identity, {last('external_key')}, {last('name')}, {last('email')}, "
        f"{last('phone')}, jsonb_merge_agg(fields ORDER BY row_no), min(row_no) "
        f"FROM {STAGING} s "
        f"WHERE EXISTS (SELECT FROM {REPEATED} r WHERE r.identity = s.identity) "
        "GROUP BY identity"
    ), int(rows) - int(merged) + int(repeated)


def _pg_upsert(
    conn: Connection, params: Mapping[str, Any], rows: int | None = None
) -> tuple[int, int]:
    """The staged contacts into ``contacts`` on PostgreSQL; returns how many existed and how
    many there are (one per staged identity). The existing ones are updated, then the new
    ones inserted: a plain insert costs ~30 % less
    than ``ON CONFLICT``'s speculative one, and an empty base needs no update at all. Another
    node importing one of the identities between the two statements makes the insert fail or
    miss it (the counts tell): then both are undone and one ``INSERT … ON CONFLICT`` does it."""
    source, identities = _pg_source(conn, rows)
    insert = (
        "INSERT INTO contacts (identity, external_key, name, email, phone, fields, "
        "created_at, updated_at, import_id, import_row) "
        "SELECT identity, external_key, name, email, phone, fields, :now, :now, :imp, "
        f"import_row FROM ({source}) u "
    )
    merge = (
        "external_key = COALESCE({new}.external_key, contacts.external_key), "
        "name = COALESCE({new}.name, contacts.name), "
        "email = COALESCE({new}.email, contacts.email), "
        "phone = COALESCE({new}.phone, contacts.phone), "
        "fields = contacts.fields || {new}.fields, "
        "updated_at = :now, import_id = :imp, import_row = {new}.import_row"
    )

    def run(sql: str) -> Any:
        text = sa.text(sql).bindparams(
            sa.bindparam("now", type_=UTCDateTime()), sa.bindparam("imp", type_=sa.BigInteger())
        )
        return conn.execute(text, params)

    try:
        with conn.begin_nested():
            updated = 0
            if conn.exec_driver_sql("SELECT EXISTS (SELECT FROM contacts)").scalar():
                updated = run(
                    f"UPDATE contacts SET {merge.format(new='u')} FROM ({source}) u "
                    "WHERE contacts.identity = u.identity"
                ).rowcount
            inserted = run(
                insert + "WHERE NOT EXISTS (SELECT FROM contacts c WHERE c.identity = u.identity)"
            ).rowcount
            if updated + inserted != identities:
                raise _Raced
        return int(updated), identities
    except (sa.exc.IntegrityError, _Raced):
        pass
    # an inserted row has no xmax; an updated one has this transaction's lock in it
    found = run(
        f"WITH up AS ({insert}ON CONFLICT (identity) DO UPDATE SET "
        f"{merge.format(new='excluded')} RETURNING xmax = 0 AS new) "
        "SELECT count(*) FILTER (WHERE NOT new) FROM up"
    )
    return int(found.scalar_one()), identities


def skip_reference_checks(conn: Connection) -> bool:
    """PostgreSQL: stop checking foreign keys row by row (``session_replication_role =
    replica``, for this transaction) when the role may, and say whether it did. Only for a bulk
    ``INSERT … SELECT`` whose every reference the caller's transaction has itself inserted or
    row-locked (the import's contacts are upserted, its wallet is locked ``FOR KEY SHARE``, its
    campaign is new): the join that built the rows is the one set-based check, and nobody can
    delete what they point to before the commit. A foreign key's per-row check is an SPI query
    and a tuple lock (~10 µs, 3–5 a recipient). Call ``check_references`` right after."""
    allowed = conn.info.get("disparo_replica_role")
    if allowed is None:
        superuser, version = conn.exec_driver_sql(
            "SELECT current_setting('is_superuser') = 'on', "
            "current_setting('server_version_num')::int"
        ).one()
        allowed = bool(superuser) or (
            version >= 150000  # GRANT SET ON PARAMETER session_replication_role TO …
            and bool(
                conn.exec_driver_sql(
                    "SELECT has_parameter_privilege('session_replication_role', 'SET')"
                ).scalar()
            )
        )
        conn.info["disparo_replica_role"] = allowed
    if allowed:
        conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
    return allowed


def check_references(conn: Connection) -> None:
    """Foreign keys are checked again for the rest of the transaction (after
    ``skip_reference_checks``)."""
    conn.exec_driver_sql("SET LOCAL session_replication_role = origin")


def run_sql(conn: Connection, sql: str, **params: Any) -> Any:
    """Run text SQL; ``now`` and ``since`` bind as UTC datetimes on both databases."""
    text = sa.text(sql)
    typed = [sa.bindparam(n, type_=UTCDateTime()) for n in ("now", "since") if n in params]
    if typed:
        text = text.bindparams(*typed)
    return conn.execute(text, params)


class _Commit:
    """The statements of one import's transaction."""

    def __init__(
        self,
        conn: Connection,
        dialect: str,
        facts: CommitFacts,
        now: datetime,
        messages: bool,
        store: Any,
        rows: int,
    ) -> None:
        self.c = conn
        self.pg = dialect == "postgresql"
        self.f = facts
        self.now = now
        self.messages = messages
        self.store = store
        #: the staged rows (the session counted them)
        self.rows = rows
        self.wallet_new = False
        #: how many of the file's contacts the base already had (PostgreSQL, the upsert's)
        self.existed: int | None = None
        #: how many contacts the file holds, one per identity (PostgreSQL, the upsert's)
        self.identities: int | None = None

    def sql(self, sql: str, **params: Any) -> Any:
        """Run text SQL in this transaction (``run_sql``)."""
        return run_sql(self.c, sql, **params)

    def scalar(self, sql: str, **params: Any) -> Any:
        return self.sql(sql, **params).scalar()

    def run(self, kept: Sequence[KeptRow] = ()) -> CommitResult:
        f = self.f
        file_id = self._ledger()
        if kept:
            self.c.execute(
                sa.insert(rejected_rows),
                [{"file_id": file_id, **row._asdict()} for row in kept],
            )
        wallet_id = self._wallet()
        mailing_id = self._mailing(file_id, wallet_id) if f.mailing else None
        rows = self.rows
        if self.pg:  # the upsert counted them: no count(*) over the whole contact base
            self._upsert_contacts(file_id)
            assert self.existed is not None and self.identities is not None
            identities, existing = self.identities, self.existed
        else:
            before = self.scalar("SELECT count(*) FROM contacts")
            self._upsert_contacts(file_id)
            identities = self.scalar(
                "SELECT count(*) FROM contacts WHERE import_id = :imp", imp=file_id
            )
            existing = identities - (self.scalar("SELECT count(*) FROM contacts") - before)
        self._membership(file_id, wallet_id)
        removed = self._replace_list(file_id, wallet_id) if f.replace_list else 0
        opted_out = self._opt_outs(file_id) if f.opt_out_reason else 0
        campaign = None
        if f.campaign is not None:
            campaign = self._campaign(file_id, wallet_id, mailing_id)
        rows_imported = rows
        self.c.execute(
            sa.update(files)
            .where(files.c.id == file_id)
            .values(
                rows_total=f.rows_total,
                rows_imported=rows_imported,
                rows_rejected=f.rows_rejected,
                wallet_id=wallet_id,
            )
        )
        if mailing_id is not None:
            self.c.execute(
                sa.update(mailings)
                .where(mailings.c.id == mailing_id)
                .values(
                    rows_total=f.rows_total,
                    rows_imported=rows_imported,
                    rows_merged=rows - identities,
                    rows_rejected=f.rows_rejected,
                )
            )
        detail = {"file": f.file.path, "contacts": identities, "wallet": f.wallet}
        if campaign is not None:
            detail["campaign"] = campaign[0]
        if f.replace_list:
            detail["removed"] = removed
        if f.opt_out_reason:
            detail["opted_out"] = opted_out
        self.c.execute(
            sa.insert(audit_log).values(
                at=self.now,
                actor=f.actor,
                action="file.imported",
                target=f"file:{file_id}",
                detail=detail,
            )
        )
        cid, recipients, pending, suppressed, skipped, dups, batches = campaign or (
            None,
            0,
            0,
            0,
            0,
            0,
            0,
        )
        return CommitResult(
            file_id=file_id,
            mailing_id=mailing_id,
            campaign_id=cid,
            contacts=identities,
            new_contacts=identities - existing,
            merged=rows - identities,
            recipients=recipients,
            pending=pending,
            suppressed=suppressed,
            skipped=skipped,
            duplicate_addresses=dups,
            batches=batches,
            removed=removed,
            opted_out=opted_out,
        )

    def _ledger(self) -> int:
        ff = self.f.file
        try:
            with self.c.begin_nested():
                result = self.c.execute(
                    sa.insert(files).values(
                        source=ff.source,
                        path=ff.path,
                        dedupe_key=ff.dedupe_key,
                        size=ff.size,
                        mtime=ff.mtime,
                        sha256=ff.sha256,
                        outcome="imported",
                        remote_done=False,
                        created_at=self.now,
                    )
                )
        except sa.exc.IntegrityError:
            raise DuplicateFile(ff.path) from None
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def _wallet(self) -> int:
        code = self.f.wallet
        query = sa.select(wallets.c.id).where(wallets.c.code == code)
        if self.pg:  # what its foreign keys would take: nobody deletes it before we commit
            query = query.with_for_update(read=True, key_share=True)
        found = self.c.execute(query).scalar()
        self.wallet_new = found is None
        if found is None:
            found = self.c.execute(
                sa.insert(wallets).values(code=code, created_at=self.now)
            ).inserted_primary_key[0]  # type: ignore[index]
        return int(found)

    def _mailing(self, file_id: int, wallet_id: int) -> int:
        m = self.f.mailing
        assert m is not None
        taken = self.c.execute(
            sa.select(mailings.c.id).where(
                mailings.c.source == self.f.file.source,
                mailings.c.file_date == m.file_date,
                mailings.c.sequence == m.sequence,
            )
        ).first()
        if taken is not None:
            raise DuplicateSequence(m.name)
        try:
            with self.c.begin_nested():
                result = self.c.execute(
                    sa.insert(mailings).values(
                        file_id=file_id,
                        source=self.f.file.source,
                        name=m.name,
                        file_date=m.file_date,
                        sequence=m.sequence,
                        wallet_id=wallet_id,
                        description=m.description,
                        params=dict(m.params),
                        created_at=self.now,
                    )
                )
        except sa.exc.IntegrityError:
            raise DuplicateSequence(m.name) from None  # another node, just now
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    def _upsert_contacts(self, import_id: int) -> None:
        counted = upsert_staged_contacts(self.c, self.pg, self.now, import_id, self.rows)
        if counted is not None:  # PostgreSQL
            self.existed, self.identities = counted

    def _membership(self, import_id: int, wallet_id: int) -> None:
        f = self.f
        mine = "SELECT id FROM contacts WHERE import_id = :imp"
        # PostgreSQL: a new wallet has no member, and a file of new contacts has no tag yet:
        # nothing can conflict, so no ON CONFLICT work
        fresh = self.pg and self.existed == 0
        on_conflict = (
            ""
            if self.pg and (self.wallet_new or fresh)
            # a member a list sync had taken out is back (its membership history goes on)
            else "ON CONFLICT (wallet_id, contact_id) DO UPDATE SET removed_at = NULL "
            "WHERE wallet_members.removed_at IS NOT NULL"
        )
        trusted = self.pg and skip_reference_checks(self.c)
        self.sql(
            "INSERT INTO wallet_members (wallet_id, contact_id, added_at) "
            "SELECT :w, id, :now FROM contacts WHERE import_id = :imp " + on_conflict,
            imp=import_id,
            w=wallet_id,
            now=self.now,
        )
        if trusted:
            check_references(self.c)
        if f.remove_other_wallets and not fresh:  # new contacts are in no other wallet
            self.sql(
                f"DELETE FROM wallet_members WHERE wallet_id <> :w AND contact_id IN ({mine})",
                imp=import_id,
                w=wallet_id,
            )
        if f.replace_tags and not fresh:
            self.sql(f"DELETE FROM contact_tags WHERE contact_id IN ({mine})", imp=import_id)
        trusted = self.pg and skip_reference_checks(self.c)
        self.sql(
            "INSERT INTO contact_tags (contact_id, tag) "
            "SELECT id, :tag FROM contacts WHERE import_id = :imp"
            + ("" if fresh else " ON CONFLICT DO NOTHING"),
            imp=import_id,
            tag=f.tag,
        )
        if trusted:
            check_references(self.c)

    def _replace_list(self, import_id: int, wallet_id: int) -> int:
        """S1, replace mode: the wallet's members this file does not hold leave it. The rows
        stay (``removed_at``): contacts, deliveries and events keep their history, and what
        happened while they were members is still the list's."""
        done = self.sql(
            "UPDATE wallet_members SET removed_at = :now "
            "WHERE wallet_id = :w AND removed_at IS NULL AND NOT EXISTS "
            "(SELECT 1 FROM contacts c WHERE c.id = wallet_members.contact_id "
            "AND c.import_id = :imp)",
            w=wallet_id,
            imp=import_id,
            now=self.now,
        )
        return int(done.rowcount or 0)

    def _opt_outs(self, import_id: int) -> int:
        """S1: the contacts whose row says they opted out: their addresses are suppressed, an
        opt-out each (reported back by the list's unsubscribed export, S2)."""
        flagged = "s.prospect" if self.pg else "s.prospect = 1"
        rows = self.sql(
            "SELECT DISTINCT c.id, c.email, c.phone FROM contacts c "
            f"JOIN {STAGING} s ON s.identity = c.identity "
            f"WHERE c.import_id = :imp AND {flagged}",
            imp=import_id,
        ).all()
        addresses: list[tuple[str, str, int | None]] = []
        for contact_id, email, phone in rows:
            if email:
                checked = normalise_email(email)
                addresses.append(
                    ("email", suppression_key("email", checked.value or email), contact_id)
                )
            if phone:
                addresses.append(("phone", normalise_phone(phone).value or phone, contact_id))
        return int(
            self.store.suppressions.add_many(
                addresses,
                origin="unsubscribe",
                actor=self.f.actor,
                reason=self.f.opt_out_reason,
                conn=self.c,
            )
        )

    def _campaign(
        self, file_id: int, wallet_id: int, mailing_id: int | None
    ) -> tuple[int, int, int, int, int, int, int]:
        spec = self.f.campaign
        assert spec is not None
        if self.messages:
            message = (
                f"(SELECT s.message FROM {STAGING} s WHERE s.identity = per.identity "
                "AND s.message IS NOT NULL ORDER BY s.row_no DESC LIMIT 1)"
            )
        else:
            message = "NULL"
        prospect = "max(prospect)" if not self.pg else "bool_or(prospect)"
        per = (
            f"SELECT identity, min(row_no) AS first_row, {prospect} AS prospect "
            f"FROM {STAGING} GROUP BY identity"
        )
        mine = None
        if self.pg and not self.messages and not self.f.prospects_only:
            # every candidate is a contact of this import, its first row in import_row (the
            # upsert's): found by import_id, no join of the staged rows to the contact base
            mine = file_id
        elif self.pg:
            if not self.scalar(f"SELECT EXISTS (SELECT FROM {REPEATED})"):
                # one row per identity: the rows are the recipients, each with its message
                per = f"SELECT identity, row_no AS first_row, prospect, message FROM {STAGING}"
                message = "per.message" if self.messages else "NULL"
            elif self.messages:  # each repeated identity's last message
                self.sql(f"CREATE INDEX ON {STAGING} (identity, row_no)")
        return CampaignWriter(self.c, self.pg, self.now).create(
            spec,
            per=per,
            import_id=mine,
            locked_contacts=True,
            message=message,
            prospects_only=self.f.prospects_only,
            empty_is_error=self.f.empty_is_error,
            actor=self.f.actor,
            wallet_id=wallet_id,
            mailing_id=mailing_id,
            file_id=file_id,
            detail={"file": self.f.file.path},
        )


class CampaignWriter:
    """A campaign and its deliveries, written in the caller's transaction from a set of
    candidate contacts: the one path of every origin (a file's rows, an operator's groups, an
    API client's recipients), so ordering (D3), suppressions and ``_x`` (D4), de-duplication
    and batches (D5) are the same for all."""

    def __init__(self, conn: Connection, pg: bool, now: datetime) -> None:
        self.c = conn
        self.pg = pg
        self.now = now

    def sql(self, sql: str, **params: Any) -> Any:
        """Run text SQL in this transaction (``run_sql``)."""
        return run_sql(self.c, sql, **params)

    def _materialise_audience(
        self,
        address: str,
        per: str,
        message: str,
        prospects_only: bool,
        since: datetime | None,
        params: Mapping[str, Any],
        import_id: int | None = None,
    ) -> None:
        """``import_audience``: one row per candidate recipient, computed once: the contacts of
        ``per`` (``identity``, ``first_row``, ``prospect``), first row first, with ``dup`` > 1
        for a repeated address (D3) and their state: suppressed (D4), skipped by ``_x`` (D4)
        or pending. With ``import_id`` the candidates are that import's contacts instead, each
        at its first row (``import_row``), without message or prospect flag."""
        column = "email" if address == "email" else "phone"
        normal = "lower(x.address)" if column == "email" else "x.address"
        only = (
            ("AND per.prospect = 1" if not self.pg else "AND per.prospect")
            if prospects_only
            else ""
        )
        audience = (
            "SELECT x.id, x.address, x.first_row, x.message, x.dup, sup.origin, "
            "CASE WHEN sup.id IS NOT NULL THEN 'suppressed' "
            "WHEN x.last_interaction_at >= :since THEN 'skipped' "
            "ELSE 'pending' END AS state "
            f"FROM x LEFT JOIN suppressions sup ON sup.kind = '{column}' "
            f"AND sup.address = {normal}"
        )
        if self.pg:
            # the deliveries' position (D3) and each pending one's rank (its batch, D5) in
            # the same pass, one sort by first row: the deliveries are then written without
            # a sort or a window, in this table's order (the B-trees' order too). ROWS
            # counts rows, so equal first rows (a group's) still get distinct positions.
            audience = (
                "SELECT a.*, "
                "count(*) FILTER (WHERE a.dup = 1) OVER w - 1 AS position, "
                "count(*) FILTER (WHERE a.dup = 1 AND a.state = 'pending') OVER w - 1 AS rank "
                f"FROM ({audience}) a "
                "WINDOW w AS (ORDER BY a.first_row ROWS UNBOUNDED PRECEDING) "
                "ORDER BY a.first_row"
            )
        if import_id is None:
            candidates = f"WITH per AS ({per}), "
            first_row = "per.first_row"
            where = "FROM per JOIN contacts c ON c.identity = per.identity WHERE"
        else:
            candidates, first_row, message, only = "WITH ", "c.import_row", "NULL", ""
            where = "FROM contacts c WHERE c.import_id = :audience_import AND"
        self.sql(f"DROP TABLE IF EXISTS {AUDIENCE}")
        with self._hash_joins(import_id is not None):
            self.sql(
                f"CREATE TEMP TABLE {AUDIENCE} AS {candidates}"
                f"x AS (SELECT c.id, c.{column} AS address, {first_row} AS first_row, "
                f"{message} AS message, c.last_interaction_at, "
                f"ROW_NUMBER() OVER (PARTITION BY c.{column} ORDER BY {first_row}) AS dup "
                f"{where} c.{column} IS NOT NULL AND c.{column} <> '' {only}) " + audience,
                since=since,
                audience_import=import_id,
                **params,
            )

    @contextmanager
    def _hash_joins(self, only_hash: bool) -> Iterator[None]:
        """PostgreSQL, an import's audience: the planner takes the import's contacts for a
        few rows (their ``import_id`` is new to the table's statistics) and would join each of
        them to every suppression in a nested loop (hundreds of thousands × the list); hash
        joins only, for this statement."""
        if not only_hash:
            yield
            return
        before = self.c.exec_driver_sql(
            "SELECT current_setting('enable_nestloop'), current_setting('enable_mergejoin')"
        ).one()
        self.c.exec_driver_sql(
            "SELECT set_config('enable_nestloop', 'off', true), "
            "set_config('enable_mergejoin', 'off', true)"
        )
        yield
        self.sql(
            "SELECT set_config('enable_nestloop', :n, true), "
            "set_config('enable_mergejoin', :m, true)",
            n=before[0],
            m=before[1],
        )

    def create(
        self,
        spec: Campaign,
        *,
        per: str,
        params: Mapping[str, Any] | None = None,
        message: str = "NULL",
        prospects_only: bool = False,
        empty_is_error: bool = False,
        actor: str,
        wallet_id: int | None = None,
        mailing_id: int | None = None,
        file_id: int | None = None,
        detail: Mapping[str, Any] | None = None,
        campaign_id: int | None = None,
        locked_contacts: bool = False,
        import_id: int | None = None,
    ) -> tuple[int, int, int, int, int, int, int]:
        """Write the campaign (or, with ``campaign_id``, fill that existing one: a draft being
        started) and its deliveries; returns (id, recipients, pending, suppressed, skipped,
        duplicate addresses, batches). Raises ``EmptyAudience`` when ``empty_is_error`` and
        nobody is left. ``locked_contacts``: every candidate contact was upserted by this
        transaction (an import), so PostgreSQL need not check the deliveries' foreign keys
        row by row (``skip_reference_checks``). ``import_id``: the candidates are that
        import's contacts, each at its first row, without message or prospect flag (``per``
        is not used)."""
        with self._bounded_sorts():
            return self._create(
                spec,
                per=per,
                params=params,
                message=message,
                prospects_only=prospects_only,
                empty_is_error=empty_is_error,
                actor=actor,
                wallet_id=wallet_id,
                mailing_id=mailing_id,
                file_id=file_id,
                detail=detail,
                campaign_id=campaign_id,
                locked_contacts=locked_contacts,
                import_id=import_id,
            )

    @contextmanager
    def _bounded_sorts(self) -> Iterator[None]:
        """On SQLite, a smaller page cache while the audience is sorted: each sorter may hold
        as much memory as the page cache, and the audience and deliveries statements run
        three of them, so a million-recipient campaign's import grew to ~270 MB; bounded, it
        stays flat whatever the audience (issue 16, goal 4). Pages spilled meanwhile are in
        the log and the OS cache."""
        if self.pg:
            yield
            return
        restore = f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}"
        self.c.exec_driver_sql(f"PRAGMA cache_size=-{SQLITE_SORT_CACHE_KIB}")
        try:
            yield
        except BaseException:
            with suppress(sa.exc.DBAPIError):  # the first error is the one to report
                self.c.exec_driver_sql(restore)
            raise
        self.c.exec_driver_sql(restore)

    def _create(
        self,
        spec: Campaign,
        *,
        per: str,
        params: Mapping[str, Any] | None,
        message: str,
        prospects_only: bool,
        empty_is_error: bool,
        actor: str,
        wallet_id: int | None,
        mailing_id: int | None,
        file_id: int | None,
        detail: Mapping[str, Any] | None,
        campaign_id: int | None,
        locked_contacts: bool,
        import_id: int | None,
    ) -> tuple[int, int, int, int, int, int, int]:
        since = None
        if spec.exclude_recent_hours is not None:
            since = self.now - timedelta(hours=spec.exclude_recent_hours)
        self._materialise_audience(
            spec.address_kind, per, message, prospects_only, since, params or {}, import_id
        )
        counts: dict[str, int] = {}
        dups = 0
        for row in self.sql(
            f"SELECT state, dup > 1, count(*) FROM {AUDIENCE} GROUP BY state, dup > 1"
        ):
            state, dup, n = row
            if dup:
                dups += n
            else:
                counts[state] = n
        recipients = sum(counts.values())
        if recipients == 0 and empty_is_error:
            raise EmptyAudience(spec.name)
        pending = counts.get("pending", 0)
        sizes = batch_sizes(pending, spec.pacing)
        size = sizes[0] if sizes else 1
        status = spec.status
        values = {
            "recipients": recipients,
            "audience": pending,
            "batches": len(sizes),
            "released_batches": 0,
            "updated_at": self.now,
            "suppressed": counts.get("suppressed", 0),
            "skipped": counts.get("skipped", 0),
        }
        if campaign_id is None:
            result = self.c.execute(
                sa.insert(campaigns).values(
                    {
                        **campaign_columns(spec),
                        "mailing_id": mailing_id,
                        "file_id": file_id,
                        "wallet_id": wallet_id,
                        "created_at": self.now,
                        **values,
                    }
                )
            )
            campaign_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        else:
            self.c.execute(
                sa.update(campaigns)
                .where(campaigns.c.id == campaign_id)
                .values(status=status, start_at=spec.start_at, **values)
            )
        build = "json_object" if not self.pg else "jsonb_build_object"
        pending_flag = "(state = 'pending')"
        trusted = self.pg and locked_contacts and skip_reference_checks(self.c)
        if self.pg:  # the audience holds them, in order (_materialise_audience)
            position, rank, order = "position", "rank", ""
        else:
            position = "ROW_NUMBER() OVER (ORDER BY first_row) - 1"
            rank = f"ROW_NUMBER() OVER (PARTITION BY {pending_flag} ORDER BY first_row) - 1"
            order = " ORDER BY first_row"
        self.sql(
            "INSERT INTO deliveries (campaign_id, contact_id, position, batch, address, "
            "payload, status, attempts, finished_at, error) "
            f"SELECT :cid, id, {position}, "
            f"CASE WHEN {pending_flag} THEN ({rank}) / :size + 1 ELSE 0 END, "
            f"address, CASE WHEN message IS NULL THEN NULL ELSE {build}('message', message) END, "
            "state, 0, CASE WHEN state = 'pending' THEN NULL ELSE :now END, "
            f"CASE WHEN state = 'suppressed' THEN {_SUPPRESSED_SQL} "
            "WHEN state = 'skipped' THEN :skipped ELSE NULL END "
            f"FROM {AUDIENCE} WHERE dup = 1{order}",
            cid=campaign_id,
            size=size,
            now=self.now,
            skipped=f"interaction in the last {spec.exclude_recent_hours} h (_x, D4)",
        )
        if trusted:
            check_references(self.c)
        self.sql(f"DROP TABLE {AUDIENCE}")
        self.c.execute(
            sa.insert(audit_log).values(
                at=self.now,
                actor=actor,
                action="campaign.created",
                target=f"campaign:{campaign_id}",
                detail={
                    "status": status,
                    "recipients": recipients,
                    "origin": spec.origin,
                    "reason": spec.status_reason,
                    **(detail or {}),
                },
            )
        )
        return (
            campaign_id,
            recipients,
            pending,
            counts.get("suppressed", 0),
            counts.get("skipped", 0),
            dups,
            len(sizes),
        )


#: why a recipient suppressed at import is not sent (D17), by the suppression's origin
SUPPRESSED_REASONS = {
    "bounce": "the address is suppressed: an earlier hard bounce (D4)",
    "complaint": "the address is suppressed: an earlier spam complaint (D4)",
    "unsubscribe": "the address is suppressed: unsubscribed from all campaigns (D4, D19)",
    "stop": "the address is suppressed: the recipient replied STOP (D4)",
    "manual": "the address is suppressed by an operator (D4)",
}
_SUPPRESSED_SQL = (
    "CASE origin "
    + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in SUPPRESSED_REASONS.items())
    + " ELSE 'the address is suppressed (D4)' END"
)


class Imports(Queries):
    """Entry point: ``with store.imports.session() as s: s.stage(...); s.commit(...)``."""

    def session(self) -> ImportSession:
        return ImportSession(self.store)

    def sequence_taken(self, source: str, file_date: Any, sequence: int) -> bool:
        """N6: does the source already have a mailing with this date and sequence?"""
        with self.store.read() as c:
            return (
                c.execute(
                    sa.select(mailings.c.id).where(
                        mailings.c.source == source,
                        mailings.c.file_date == file_date,
                        mailings.c.sequence == sequence,
                    )
                ).first()
                is not None
            )

    def contacts_count(self) -> int:
        with self.store.read() as c:
            return int(c.execute(sa.text("SELECT count(*) FROM contacts")).scalar() or 0)


__all__ = [
    "CampaignWriter",
    "CommitFacts",
    "CommitResult",
    "DuplicateFile",
    "DuplicateSequence",
    "EmptyAudience",
    "ImportSession",
    "Imports",
    "KeptRow",
    "StagingFile",
    "upsert_staged_contacts",
]

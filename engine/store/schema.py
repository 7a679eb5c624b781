"""The schema (SQLAlchemy 2 Core): one set of tables for SQLite and PostgreSQL.

Times are stored as naive UTC and come back timezone-aware (``UTCDateTime``). The Alembic
migrations in ``migrations/versions`` build exactly these tables; a test compares them.
The partial indexes say their condition for SQLite only (``sqlite_where``): the migrations
build them partial on PostgreSQL too, and naming ``postgresql_where`` here would import the
PostgreSQL dialect into every command on a SQLite store (issue 16, goal 7).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from engine.campaign import COUNTERS


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = DateTime(timezone=False)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware one (UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


#: 64-bit ids on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64-bit (the rowid)
Id = BigInteger().with_variant(Integer(), "sqlite")


class JsonDocument(TypeDecorator[Any]):
    """JSON, stored as JSONB on PostgreSQL. The PostgreSQL dialect is imported only when the
    database is PostgreSQL: a command on a SQLite store starts without it (issue 16, goal 7)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


Json = JsonDocument()

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _created() -> Column[Any]:
    return Column("created_at", UTCDateTime(), nullable=False)


wallets = Table(
    "wallets",
    metadata,
    Column("id", Id, primary_key=True),
    Column("code", String(100), nullable=False, unique=True),
    _created(),
)

contacts = Table(
    "contacts",
    metadata,
    Column("id", Id, primary_key=True),
    # the external key when the file has one (cpf, cnpj, id…), else the normalised address
    Column("identity", String(400), nullable=False, unique=True),
    Column("external_key", String(200)),
    Column("name", String(300)),
    # no index on email: nothing looks contacts up by e-mail (bounces, clicks and
    # unsubscribes arrive per delivery), and each index costs ~1 µs a row on big imports
    Column("email", String(320)),
    Column("phone", String(40), index=True),
    Column("fields", Json, nullable=False, default=dict),
    # any interaction (a send, an inbound reply, a click): what `_x` looks at (D4)
    Column("last_interaction_at", UTCDateTime()),
    # the last import (files.id) that touched the contact, and its first row there: lets one
    # import work on "its" contacts with set-based SQL (membership, tags, recipients)
    Column("import_id", Id, index=True),
    Column("import_row", Integer),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
)
Index(
    "ix_contacts_last_interaction_at",
    contacts.c.last_interaction_at,
    sqlite_where=contacts.c.last_interaction_at.is_not(None),
)

contact_tags = Table(
    "contact_tags",
    metadata,
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("tag", String(300), nullable=False),
    PrimaryKeyConstraint("contact_id", "tag"),
    Index(None, "tag"),
    # the primary key is the table: one b-tree less to update per row on SQLite
    sqlite_with_rowid=False,
)

wallet_members = Table(
    "wallet_members",
    metadata,
    Column("wallet_id", Id, ForeignKey("wallets.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    Column("added_at", UTCDateTime(), nullable=False),
    # when a list sync in `replace` mode took the contact out of the list (0010): the row
    # stays, so what happened while it was a member is still the list's (S1, S2); a later
    # import that brings the contact back clears it
    Column("removed_at", UTCDateTime()),
    PrimaryKeyConstraint("wallet_id", "contact_id"),
    Index(None, "contact_id"),
    sqlite_with_rowid=False,
)

suppressions = Table(
    "suppressions",
    metadata,
    Column("id", Id, primary_key=True),
    Column("kind", String(10), nullable=False),  # email | phone
    Column("address", String(320), nullable=False),
    # bounce | complaint | unsubscribe | stop | manual
    Column("origin", String(20), nullable=False),
    Column("reason", Text),
    Column("campaign_id", Id),
    Column("created_by", String(200), nullable=False),
    _created(),
    # when the person opted out (an unsubscribe, a complaint, a STOP, an operator's or a list
    # file's opt-out; not a bounce): each opt-out is also an `optout` event, once (0010)
    Column("opted_out_at", UTCDateTime()),
    UniqueConstraint("kind", "address"),
    Index(None, "origin", "created_at"),
)

# What a source's listings showed, per remote path: drives stability (F8) and the UI.
remote_files = Table(
    "remote_files",
    metadata,
    Column("source", String(100), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime", UTCDateTime()),
    Column("stable_listings", Integer, nullable=False, default=1),
    # when the listings first showed the file as it is now (its size and time): the minimum
    # age (F8) counts from here, on the engine's clock (0008)
    Column("stable_since", UTCDateTime()),
    # new | unstable | waiting | imported | rejected | duplicate | not-mailing | refused
    # | error
    Column("status", String(20), nullable=False),
    Column("code", String(60)),
    Column("message", Text),
    Column("file_id", Id, ForeignKey("files.id", ondelete="SET NULL")),
    Column("first_seen_at", UTCDateTime(), nullable=False),
    Column("last_seen_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("source", "path"),
)
# the Sources screen: a source's files, newest first
Index("ix_remote_files_source_last_seen_at", remote_files.c.source, remote_files.c.last_seen_at)

# The ledger (F10): one row per file content handled; the unique key makes "once" hold
# across crashes, restarts and engine nodes.
files = Table(
    "files",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source", String(100), nullable=False),
    Column("path", String(1000), nullable=False),
    # what makes two files "the same" for the format: path + sha256 for mailings (F10),
    # the send's name for triplets (T3). Set on imported files only, so a rejected file can be
    # sent again once fixed, while an imported one is never imported twice.
    Column("dedupe_key", String(1200)),
    Column("size", BigInteger, nullable=False),
    Column("mtime", UTCDateTime()),
    Column("sha256", String(64), nullable=False),
    Column("outcome", String(20), nullable=False),  # imported | rejected
    Column("code", String(60)),
    Column("message", Text),
    Column("rows_total", Integer, nullable=False, default=0),
    Column("rows_imported", Integer, nullable=False, default=0),
    Column("rows_rejected", Integer, nullable=False, default=0),
    Column("remote_done", Boolean, nullable=False, default=False),
    # the wallet (list) an imported file fed (0010; `disparo lists` shows each list's last)
    Column("wallet_id", Id),
    _created(),
    UniqueConstraint("source", "dedupe_key"),
    Index(None, "sha256"),
)

# Rows an imported file could not use, kept when its format asks (0009): a triplet's
# RETORNADO lists every contact of MAIL that did not get the message, invalid addresses too
rejected_rows = Table(
    "rejected_rows",
    metadata,
    Column("file_id", Id, ForeignKey("files.id", ondelete="CASCADE"), nullable=False),
    Column("line", Integer, nullable=False),
    Column("address", String(320), nullable=False),
    Column("code", String(60), nullable=False),
    Column("rule", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("reason_pt", Text, nullable=False),
    PrimaryKeyConstraint("file_id", "line"),
)

mailings = Table(
    "mailings",
    metadata,
    Column("id", Id, primary_key=True),
    Column("file_id", Id, ForeignKey("files.id"), nullable=False),
    Column("source", String(100), nullable=False),
    Column("name", String(1000), nullable=False),
    Column("file_date", Date, nullable=False),
    Column("sequence", Integer, nullable=False),
    Column("wallet_id", Id, ForeignKey("wallets.id"), nullable=False),
    Column("description", String(1000), nullable=False),
    Column("params", Json, nullable=False, default=dict),
    Column("rows_total", Integer, nullable=False, default=0),
    Column("rows_imported", Integer, nullable=False, default=0),
    Column("rows_merged", Integer, nullable=False, default=0),
    Column("rows_rejected", Integer, nullable=False, default=0),
    _created(),
    # N6: one mailing per source, date and sequence
    UniqueConstraint("source", "file_date", "sequence"),
)

campaigns = Table(
    "campaigns",
    metadata,
    Column("id", Id, primary_key=True),
    Column("mailing_id", Id, ForeignKey("mailings.id")),
    # the ledger entry (files.id) of the file that made the campaign, if a file did (0009):
    # what a source's result files are published about
    Column("file_id", Id, ForeignKey("files.id"), index=True),
    Column("name", String(1000), nullable=False),
    Column("wallet_id", Id, ForeignKey("wallets.id")),
    Column("channel", String(40), nullable=False),
    Column("account", String(100)),  # the sender account ([accounts.NAME])
    # file | operator | api:<client>
    Column("origin", String(100), nullable=False, default="file", server_default="file"),
    # the contact address the channel sends to: email | phone
    Column("address_kind", String(10), nullable=False, default="email", server_default="email"),
    # scheduled | sending | paused | held | completed | cancelled | expired (D1)
    Column("status", String(20), nullable=False),
    Column("status_reason", Text),
    Column("priority", Integer, nullable=False, default=0),
    Column("start_at", UTCDateTime(), nullable=False),
    Column("deadline", UTCDateTime()),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("pacing_kind", String(10)),  # percent | size | NULL (D5–D7)
    Column("pacing_value", Integer),
    Column("pacing_interval_s", Integer),
    Column("exclude_recent_hours", Integer),
    Column("recipients", Integer, nullable=False, default=0),
    # the recipients cut into batches at creation (the rest was suppressed or skipped, D5)
    Column("audience", Integer, nullable=False, default=0, server_default="0"),
    Column("batches", Integer, nullable=False, default=0),
    Column("released_batches", Integer, nullable=False, default=0),
    # time spent paused or held since the start: the pacing schedule shifts by it, so a
    # resumed campaign does not release every missed batch at once
    Column("paused_seconds", Integer, nullable=False, default=0),
    Column("paused_since", UTCDateTime()),
    # per-campaign totals (D18), kept in the transactions that change deliveries, so the UI
    # never counts a million rows to show them
    *(Column(name, Integer, nullable=False, default=0, server_default="0") for name in COUNTERS),
    # what to send: subject/body for e-mail, text for SMS, template for WhatsApp
    Column("sender", String(320)),
    Column("from_name", String(300)),
    Column("reply_to", String(320)),
    Column("subject", String(1000)),
    Column("body", Text),
    Column("template", String(500)),
    Column("whatsapp_number", String(40)),
    Column("settings", Json, nullable=False, default=dict),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
    Index(None, "status", "account", "priority"),
    Index(None, "created_at"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", Id, primary_key=True),
    Column("campaign_id", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="SET NULL")),
    Column("position", Integer, nullable=False),  # the stable order (D3)
    Column("batch", Integer, nullable=False),
    Column("address", String(320), nullable=False),
    # per-recipient content from the file (an SMS text column, N28), when there is one
    Column("payload", Json),
    # pending | claimed | sent | delivered | failed | bounced | suppressed | skipped |
    # expired | cancelled
    Column("status", String(12), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(100)),
    Column("lease_until", UTCDateTime()),
    Column("next_attempt_at", UTCDateTime()),
    Column("first_attempt_at", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("provider_id", String(200)),
    Column("message_id", String(300)),
    Column("error", Text),
    # what came back after sending (D17): the provider's last status (Twilio's queued → sent
    # → delivered / undelivered / failed → read, never regressing), the first open and
    # click, and an unsubscribe with its scope (campaign | all, D19)
    Column("provider_status", String(20)),
    Column("delivered_at", UTCDateTime()),
    Column("opened_at", UTCDateTime()),
    Column("clicked_at", UTCDateTime()),
    Column("complained_at", UTCDateTime()),
    Column("unsubscribed", String(10)),
    Column("unsubscribed_at", UTCDateTime()),
    UniqueConstraint("campaign_id", "position"),
    Index(None, "campaign_id", "status", "batch", "position"),
)
# Partial indexes: most deliveries have no lease and no provider id; indexing only those
# that do keeps a million-row campaign's insert cheap.
Index(
    "ix_deliveries_lease_until",
    deliveries.c.lease_until,
    sqlite_where=deliveries.c.lease_until.is_not(None),
)
# deliveries waiting for a retry (why a campaign is not done yet, and when it tries again)
Index(
    "ix_deliveries_retry",
    deliveries.c.campaign_id,
    deliveries.c.next_attempt_at,
    sqlite_where=deliveries.c.next_attempt_at.is_not(None),
)
Index(
    "ix_deliveries_provider_id",
    deliveries.c.provider_id,
    sqlite_where=deliveries.c.provider_id.is_not(None),
)

links = Table(
    "links",
    metadata,
    Column("id", Id, primary_key=True),
    Column("campaign_id", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("url", Text, nullable=False),
    UniqueConstraint("campaign_id", "position"),
)

events = Table(
    "events",
    metadata,
    Column("id", Id, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    # sent | delivered | failed | bounced | complaint | open | click | unsubscribe | reply |
    # stop | start | status | deferred | expired | suppressed | skipped | retry
    Column("kind", String(20), nullable=False),
    Column("campaign_id", Id),
    Column("delivery_id", Id),
    Column("contact_id", Id),
    Column("account", String(100)),
    Column("address", String(320)),
    # engine | tracking | twilio | mailbox | ses | operator
    Column("origin", String(20), nullable=False),
    Column("detail", Json, nullable=False, default=dict),
    # a provider's idempotency token or message id: the same report is applied once
    Column("dedupe_key", String(300), unique=True),
    # PostgreSQL: the id of the transaction that wrote the row (its default there is
    # pg_current_xact_id(), 0010; NULL on SQLite, where the id itself is commit-ordered).
    # Incremental exports (S3) read ranges of it below the oldest transaction still running,
    # so a row committed after a later id was exported is never skipped (engine/store/lists.py)
    Column("txid", BigInteger),
    Index(None, "campaign_id", "kind", "at"),
    Index(None, "delivery_id", "kind"),
    Index(None, "account", "kind", "at"),
    Index(None, "address", "at"),
)

#: the columns the engine writes for an event at the driver (store/claims, store/feedback);
#: ``id`` and ``txid`` come from their defaults, ``dedupe_key`` only with a provider's report
EVENT_COLUMNS = (
    "at",
    "kind",
    "campaign_id",
    "delivery_id",
    "contact_id",
    "account",
    "address",
    "origin",
    "detail",
)
Index(
    "ix_events_txid",
    events.c.txid,
    sqlite_where=events.c.txid.is_not(None),
)

# Per sender account: the guard's state (D14–D16).
accounts = Table(
    "accounts",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("channel", String(40), nullable=False),
    Column("guard_state", String(12), nullable=False, default="ok"),  # ok | paused
    Column("paused_at", UTCDateTime()),
    Column("paused_until", UTCDateTime()),
    Column("pause_reason", Text),
    Column("override_by", String(200)),
    Column("override_reason", Text),
    Column("override_at", UTCDateTime()),
    Column("checked_at", UTCDateTime()),
    Column("sent_24h", Integer, nullable=False, default=0),
    Column("bounces_24h", Integer, nullable=False, default=0),
    Column("complaints_24h", Integer, nullable=False, default=0),
    # which engine node sends for the account (one at a time, so its rate limit holds
    # across nodes), until when
    Column("lease_owner", String(100)),
    Column("lease_until", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    # the circuit breaker: the account's channel fails for a systemic reason (the relay is
    # down, the credentials are refused…): closed | open; while open nothing is sent, and at
    # ``breaker_retry_at`` one delivery probes the channel (half-open)
    Column("breaker_state", String(12), nullable=False, default="closed", server_default="closed"),
    Column("breaker_reason", Text),
    Column("breaker_failures", Integer, nullable=False, default=0, server_default="0"),
    Column("breaker_opened_at", UTCDateTime()),
    Column("breaker_retry_at", UTCDateTime()),
    # the pause before the next probe (it doubles after each failed probe)
    Column("breaker_pause_s", Integer),
    # the token bucket (D10) as the account's last holder left it: its tokens at
    # ``bucket_at``; the next holder continues it (a hand-over between engine nodes keeps
    # rate + burst in every second). A stopped engine's accounts get 0 tokens at the stop.
    Column("bucket_tokens", Float),
    Column("bucket_at", UTCDateTime()),
)

# Engine processes sharing the store: one row per running engine, with its heartbeat. A row
# whose heartbeat is older than the engine's lease belongs to an engine that stopped without
# saying so (kill -9, a lost host): another engine rescues its leases and deletes the row.
engines = Table(
    "engines",
    metadata,
    Column("node", String(100), primary_key=True),  # host:pid:suffix, the owner of its leases
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("version", String(40), nullable=False),
    Column("mode", String(20), nullable=False),  # run | until-idle | tui
    Column("started_at", UTCDateTime(), nullable=False),
    Column("heartbeat_at", UTCDateTime(), nullable=False),
    Column("lease_s", Integer, nullable=False),
    Column("config", String(1000)),
    Column("detail", Json, nullable=False, default=dict),
)

# Errors by reason (retries, failures, bounces), per campaign and account: kept in the
# transaction that confirms the outcomes, so counting them never scans deliveries or events
delivery_errors = Table(
    "delivery_errors",
    metadata,
    Column("campaign_id", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("account", String(100), nullable=False),
    Column("outcome", String(12), nullable=False),  # retry | failed | bounced
    # the reason with what varies per recipient taken out (addresses, numbers)
    Column("reason", String(300), nullable=False),
    # account: the channel or provider failed (systemic); delivery: this recipient's
    Column("scope", String(10), nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_at", UTCDateTime(), nullable=False),
    Column("last_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("campaign_id", "account", "outcome", "reason"),
    Index(None, "account", "last_at"),
)

# Groups (G1–G3): named sets of contacts, fed by hand, by a CSV file or by an HTTP endpoint;
# an operator's campaign is sent to the members of its groups (frozen at its start)
groups = Table(
    "groups",
    metadata,
    Column("id", Id, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    # manual | file | http: how its members last came
    Column("source", String(20), nullable=False, default="manual"),
    Column("synced_at", UTCDateTime()),
    # the last sync of an HTTP-fed group: ok | error (with why), or NULL before the first
    Column("sync_status", String(12)),
    Column("sync_message", Text),
    Column("next_sync_at", UTCDateTime()),
    _created(),
    Column("updated_at", UTCDateTime(), nullable=False),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
    Column("contact_id", Id, ForeignKey("contacts.id", ondelete="CASCADE"), nullable=False),
    # the order members came in (a file's row order, a feed's record order): a composed
    # campaign's recipients follow it (D3)
    Column("position", Integer, nullable=False),
    Column("added_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("group_id", "contact_id"),
    Index(None, "contact_id"),
)

# The groups a composed campaign is sent to, in the order given (its audience is frozen from
# them when it starts)
campaign_groups = Table(
    "campaign_groups",
    metadata,
    Column("campaign_id", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    Column("group_id", Id, ForeignKey("groups.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    PrimaryKeyConstraint("campaign_id", "group_id"),
)

# Idempotency keys of the send API: a retried POST returns the campaign it made
api_requests = Table(
    "api_requests",
    metadata,
    Column("client", String(100), nullable=False),
    Column("key", String(200), nullable=False),
    Column("campaign_id", Id, ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    _created(),
    PrimaryKeyConstraint("client", "key"),
)

# Commands written by the UI (or the CLI) and applied by the engine.
commands = Table(
    "commands",
    metadata,
    Column("id", Id, primary_key=True),
    _created(),
    Column("actor", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    # pause | resume | cancel | priority | override | clear-override | suppress | unsuppress
    Column("action", String(30), nullable=False),
    Column("target", String(400), nullable=False),
    Column("args", Json, nullable=False, default=dict),
    Column("status", String(12), nullable=False, default="pending"),  # pending|applied|rejected
    Column("applied_at", UTCDateTime()),
    Column("result", Text),
    Index(None, "status", "id"),
)

# The engines' recent log records (INFO and above, the last ``engine_log.KEEP``), for a UI
# attached to a separate engine; written by each engine's ``StoreLogHandler``, secrets masked
engine_log = Table(
    "engine_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("node", String(100), nullable=False),
    Column("level", String(10), nullable=False),
    Column("logger", String(100), nullable=False),
    Column("message", Text, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(60), nullable=False),
    Column("target", String(400), nullable=False),
    Column("detail", Json, nullable=False, default=dict),
    Index(None, "target", "at"),
    Index(None, "at"),
)

# Per source: the collector's last and next poll, for the UI (F6, F7).
source_state = Table(
    "source_state",
    metadata,
    Column("source", String(100), primary_key=True),
    Column("last_poll_at", UTCDateTime()),
    Column("next_poll_at", UTCDateTime()),
    Column("status", String(12), nullable=False, default="unknown"),  # ok | error | unknown
    Column("message", Text),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# The publication ledger: each file written back to a source, once. A row is planned
# (`pending`, with its path and detail fixed) before the first upload and becomes `published`
# once the file is on the source: a failed upload is tried again with the same detail, and a
# crash between the upload and the record publishes the same file again under the same name
publications = Table(
    "publications",
    metadata,
    Column("id", Id, primary_key=True),
    Column("source", String(100), nullable=False),
    Column("publisher", String(100), nullable=False),
    Column("key", String(500), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("detail", Json, nullable=False, default=dict),
    # pending | published (0010)
    Column("status", String(12), nullable=False, server_default="published"),
    # the sequence an incremental publication continues (an export's kind), planned one after
    # the other: the next one only once the one before it is published (0010)
    Column("chain", String(100)),
    Column("planned_at", UTCDateTime()),
    # set once published
    Column("size", BigInteger),
    Column("sha256", String(64)),
    Column("published_at", UTCDateTime()),
    UniqueConstraint("source", "publisher", "key"),
    Index(None, "source", "publisher", "chain"),
)

# Per bounce mailbox (IMAP): the poller's state, what it handled and what it could not read
mailboxes = Table(
    "mailboxes",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("last_poll_at", UTCDateTime()),
    Column("next_poll_at", UTCDateTime()),
    Column("status", String(12), nullable=False, default="unknown"),  # ok | error | unknown
    Column("message", Text),
    Column("handled", Integer, nullable=False, default=0),
    Column("unparsed", Integer, nullable=False, default=0),
    Column("lease_owner", String(100)),  # one engine polls a mailbox at a time
    Column("lease_until", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
)

__all__ = [
    "UTCDateTime",
    "accounts",
    "api_requests",
    "audit_log",
    "campaign_groups",
    "campaigns",
    "commands",
    "contact_tags",
    "contacts",
    "deliveries",
    "delivery_errors",
    "engines",
    "events",
    "files",
    "group_members",
    "groups",
    "links",
    "mailboxes",
    "mailings",
    "metadata",
    "rejected_rows",
    "remote_files",
    "source_state",
    "suppressions",
    "wallet_members",
    "wallets",
]

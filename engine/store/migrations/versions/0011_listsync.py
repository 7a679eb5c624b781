"""list sync: opt-outs as events, a commit-ordered event sequence on PostgreSQL, membership
history, planned publications (S1–S3)

- ``events.txid``: on PostgreSQL the id of the transaction that wrote the row (default
  ``pg_current_xact_id()``); incremental exports read ranges of it below the oldest
  transaction still running. Rows written before this revision have none: the first range of
  every export includes them.
- ``suppressions.opted_out_at``, and one ``optout`` event per suppression of an opt-out origin
  already there (its first export reports them).
- ``wallet_members.removed_at``: a list sync in ``replace`` mode keeps the membership's
  history; ``files.wallet_id``: the list a file fed.
- ``publications.status`` (pending | published), ``chain``, ``planned_at``; size, hash and
  publication time are set once published.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OPT_OUT_ORIGINS = ("unsubscribe", "complaint", "stop", "manual")


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"

    op.add_column("events", sa.Column("txid", sa.BigInteger(), nullable=True))
    if pg:
        op.execute(
            "ALTER TABLE events ALTER COLUMN txid SET DEFAULT (pg_current_xact_id()::text::bigint)"
        )
    op.create_index(
        "ix_events_txid",
        "events",
        ["txid"],
        sqlite_where=sa.text("txid IS NOT NULL"),
        postgresql_where=sa.text("txid IS NOT NULL"),
    )

    op.add_column("suppressions", sa.Column("opted_out_at", sa.DateTime(), nullable=True))
    op.add_column("wallet_members", sa.Column("removed_at", sa.DateTime(), nullable=True))
    op.add_column("files", sa.Column("wallet_id", Id, nullable=True))

    with op.batch_alter_table("publications") as batch:
        batch.add_column(
            sa.Column("status", sa.String(12), nullable=False, server_default="published")
        )
        batch.add_column(sa.Column("chain", sa.String(100), nullable=True))
        batch.add_column(sa.Column("planned_at", sa.DateTime(), nullable=True))
        batch.alter_column("size", existing_type=sa.BigInteger(), nullable=True)
        batch.alter_column("sha256", existing_type=sa.String(64), nullable=True)
        batch.alter_column("published_at", existing_type=sa.DateTime(), nullable=True)
        batch.create_index(
            "ix_publications_source_publisher_chain", ["source", "publisher", "chain"]
        )
    op.execute("UPDATE publications SET planned_at = published_at")

    # the opt-outs already recorded become events, so the first unsubscribed export has them
    suppressions = sa.table(
        "suppressions",
        sa.column("id", Id),
        sa.column("kind", sa.String()),
        sa.column("address", sa.String()),
        sa.column("origin", sa.String()),
        sa.column("reason", sa.Text()),
        sa.column("campaign_id", Id),
        sa.column("created_by", sa.String()),
        sa.column("created_at", sa.DateTime()),
        sa.column("opted_out_at", sa.DateTime()),
    )
    events = sa.table(
        "events",
        sa.column("at", sa.DateTime()),
        sa.column("kind", sa.String()),
        sa.column("campaign_id", Id),
        sa.column("address", sa.String()),
        sa.column("origin", sa.String()),
        sa.column("detail", sa.JSON()),
    )
    rows = bind.execute(
        sa.select(suppressions)
        .where(suppressions.c.origin.in_(OPT_OUT_ORIGINS))
        .order_by(suppressions.c.id)
    ).all()
    if rows:
        bind.execute(
            sa.insert(events),
            [
                {
                    "at": r.created_at,
                    "kind": "optout",
                    "campaign_id": r.campaign_id,
                    "address": r.address,
                    "origin": "operator" if r.origin == "manual" else "engine",
                    "detail": {
                        "origin": r.origin,
                        "address_kind": r.kind,
                        "reason": r.reason,
                        "by": r.created_by,
                    },
                }
                for r in rows
            ],
        )
        op.execute(
            "UPDATE suppressions SET opted_out_at = created_at WHERE origin IN "
            "('unsubscribe', 'complaint', 'stop', 'manual')"
        )


def downgrade() -> None:
    op.execute("DELETE FROM events WHERE kind = 'optout'")
    op.execute("DELETE FROM publications WHERE status <> 'published'")
    with op.batch_alter_table("publications") as batch:
        batch.drop_index("ix_publications_source_publisher_chain")
        batch.alter_column("size", existing_type=sa.BigInteger(), nullable=False)
        batch.alter_column("sha256", existing_type=sa.String(64), nullable=False)
        batch.alter_column("published_at", existing_type=sa.DateTime(), nullable=False)
        batch.drop_column("planned_at")
        batch.drop_column("chain")
        batch.drop_column("status")
    with op.batch_alter_table("files") as batch:
        batch.drop_column("wallet_id")
    with op.batch_alter_table("wallet_members") as batch:
        batch.drop_column("removed_at")
    with op.batch_alter_table("suppressions") as batch:
        batch.drop_column("opted_out_at")
    op.drop_index("ix_events_txid", "events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("txid")

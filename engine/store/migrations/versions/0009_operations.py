"""operations: engines register with a heartbeat, each account has a circuit breaker, and
errors are counted by reason per campaign and account

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(
            sa.Column("breaker_state", sa.String(12), nullable=False, server_default="closed")
        )
        batch.add_column(sa.Column("breaker_reason", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("breaker_failures", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("breaker_opened_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("breaker_retry_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("breaker_pause_s", sa.Integer(), nullable=True))
    op.create_table(
        "engines",
        sa.Column("node", sa.String(100), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(40), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("lease_s", sa.Integer(), nullable=False),
        sa.Column("config", sa.String(1000), nullable=True),
        sa.Column("detail", Json, nullable=False),
        sa.PrimaryKeyConstraint("node", name=op.f("pk_engines")),
    )
    op.create_table(
        "delivery_errors",
        sa.Column("campaign_id", Id, nullable=False),
        sa.Column("account", sa.String(100), nullable=False),
        sa.Column("outcome", sa.String(12), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("scope", sa.String(10), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(), nullable=False),
        sa.Column("last_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_delivery_errors_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "campaign_id", "account", "outcome", "reason", name=op.f("pk_delivery_errors")
        ),
    )
    op.create_index(
        "ix_delivery_errors_account_last_at", "delivery_errors", ["account", "last_at"]
    )
    op.create_index(
        "ix_deliveries_retry",
        "deliveries",
        ["campaign_id", "next_attempt_at"],
        sqlite_where=sa.text("next_attempt_at IS NOT NULL"),
        postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_retry", table_name="deliveries")
    op.drop_index("ix_delivery_errors_account_last_at", table_name="delivery_errors")
    op.drop_table("delivery_errors")
    op.drop_table("engines")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("breaker_pause_s")
        batch.drop_column("breaker_retry_at")
        batch.drop_column("breaker_opened_at")
        batch.drop_column("breaker_failures")
        batch.drop_column("breaker_reason")
        batch.drop_column("breaker_state")

"""dispatch: campaign totals, pause bookkeeping, account leases

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

COUNTERS = (
    "sent", "delivered", "failed", "bounced", "suppressed", "skipped", "expired", "cancelled",
    "opened", "clicked", "clicks", "unsubscribed", "complaints",
)


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("paused_seconds", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("paused_since", sa.DateTime(), nullable=True))
        for name in COUNTERS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(100), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
    with op.batch_alter_table("campaigns") as batch:
        for name in reversed(COUNTERS):
            batch.drop_column(name)
        batch.drop_column("paused_since")
        batch.drop_column("paused_seconds")

"""feedback: what comes back after sending (provider status, opens, clicks, complaints,
unsubscribes), bounce mailboxes

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COLUMNS = (
    ("provider_status", sa.String(20)),
    ("delivered_at", sa.DateTime()),
    ("opened_at", sa.DateTime()),
    ("clicked_at", sa.DateTime()),
    ("complained_at", sa.DateTime()),
    ("unsubscribed", sa.String(10)),
    ("unsubscribed_at", sa.DateTime()),
)


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        "mailboxes",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("last_poll_at", sa.DateTime()),
        sa.Column("next_poll_at", sa.DateTime()),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("handled", sa.Integer(), nullable=False),
        sa.Column("unparsed", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_until", sa.DateTime()),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_mailboxes"),
    )


def downgrade() -> None:
    op.drop_table("mailboxes")
    with op.batch_alter_table("deliveries") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)

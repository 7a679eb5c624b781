"""bucket hand-over: a sender account's token bucket as its last holder left it (D10)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("bucket_tokens", sa.Float(), nullable=True))
        batch.add_column(sa.Column("bucket_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("bucket_at")
        batch.drop_column("bucket_tokens")

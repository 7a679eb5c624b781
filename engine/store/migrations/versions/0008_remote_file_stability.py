"""remote file stability: when a listed file last changed, for the minimum age (F8)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("remote_files") as batch:
        batch.add_column(sa.Column("stable_since", sa.DateTime(), nullable=True))
    # what a file did before the upgrade is unknown: its age counts from its last listing
    op.execute("UPDATE remote_files SET stable_since = last_seen_at")


def downgrade() -> None:
    with op.batch_alter_table("remote_files") as batch:
        batch.drop_column("stable_since")

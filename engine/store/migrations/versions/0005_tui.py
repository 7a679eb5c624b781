"""tui: an index for the Sources screen (a source's files, newest first)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_remote_files_source_last_seen_at", "remote_files", ["source", "last_seen_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_remote_files_source_last_seen_at", table_name="remote_files")

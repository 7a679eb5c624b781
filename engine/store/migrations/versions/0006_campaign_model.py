"""campaign model: a campaign's origin, the address kind it sends to, and its audience (the
recipients cut into batches at creation)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(
            sa.Column("origin", sa.String(100), nullable=False, server_default="file")
        )
        batch.add_column(
            sa.Column("address_kind", sa.String(10), nullable=False, server_default="email")
        )
        batch.add_column(sa.Column("audience", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE campaigns SET address_kind = 'phone' WHERE channel <> 'email'")
    # the batches were cut from the recipients not suppressed or skipped at creation (batch 0)
    op.execute(
        "UPDATE campaigns SET audience = recipients - (SELECT count(*) FROM deliveries d "
        "WHERE d.campaign_id = campaigns.id AND d.batch = 0 "
        "AND d.status IN ('suppressed', 'skipped'))"
    )


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("audience")
        batch.drop_column("address_kind")
        batch.drop_column("origin")

"""file campaigns: the ledger entry (file) a campaign was made from, and the rows of an imported
file kept for its result files (a triplet's RETORNADO lists the contacts it could not use)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("file_id", ID, nullable=True))
        batch.create_foreign_key(op.f("fk_campaigns_file_id_files"), "files", ["file_id"], ["id"])
        batch.create_index(op.f("ix_campaigns_file_id"), ["file_id"], unique=False)
    # the campaigns of mailing files made before: their mailing names the file
    op.execute(
        "UPDATE campaigns SET file_id = (SELECT m.file_id FROM mailings m "
        "WHERE m.id = campaigns.mailing_id) WHERE mailing_id IS NOT NULL"
    )
    op.create_table(
        "rejected_rows",
        sa.Column("file_id", ID, nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("code", sa.String(60), nullable=False),
        sa.Column("rule", sa.String(20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reason_pt", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_rejected_rows_file_id_files"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("file_id", "line", name=op.f("pk_rejected_rows")),
    )


def downgrade() -> None:
    op.drop_table("rejected_rows")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_index(op.f("ix_campaigns_file_id"))
        batch.drop_constraint(op.f("fk_campaigns_file_id_files"), type_="foreignkey")
        batch.drop_column("file_id")

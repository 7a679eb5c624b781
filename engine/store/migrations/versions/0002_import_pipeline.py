"""import pipeline: contacts touched by an import, re-sendable rejected files, jsonb merge

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("import_id", Id, nullable=True))
        batch.add_column(sa.Column("import_row", sa.Integer(), nullable=True))
        batch.create_index("ix_contacts_import_id", ["import_id"])
        batch.drop_index("ix_contacts_email")
    if op.get_bind().dialect.name == "sqlite":
        # the primary key is the table: one b-tree less to update per row
        for table in ("contact_tags", "wallet_members"):
            with op.batch_alter_table(
                table, recreate="always", table_kwargs={"sqlite_with_rowid": False}
            ):
                pass
    with op.batch_alter_table("files") as batch:
        batch.alter_column("dedupe_key", existing_type=sa.String(1200), nullable=True)
    # partial indexes: only the rows that have a value are indexed
    op.create_index(
        "ix_contacts_last_interaction_at", "contacts", ["last_interaction_at"],
        sqlite_where=sa.text("last_interaction_at IS NOT NULL"),
        postgresql_where=sa.text("last_interaction_at IS NOT NULL"),
    )
    op.drop_index("ix_deliveries_status_lease_until", "deliveries")
    op.drop_index("ix_deliveries_provider_id", "deliveries")
    op.create_index(
        "ix_deliveries_lease_until", "deliveries", ["lease_until"],
        sqlite_where=sa.text("lease_until IS NOT NULL"),
        postgresql_where=sa.text("lease_until IS NOT NULL"),
    )
    op.create_index(
        "ix_deliveries_provider_id", "deliveries", ["provider_id"],
        sqlite_where=sa.text("provider_id IS NOT NULL"),
        postgresql_where=sa.text("provider_id IS NOT NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # merges the JSON fields of a contact's rows in file order (later keys win)
        op.execute(
            "CREATE AGGREGATE jsonb_merge_agg(jsonb) "
            "(SFUNC = jsonb_concat, STYPE = jsonb, INITCOND = '{}')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP AGGREGATE IF EXISTS jsonb_merge_agg(jsonb)")
    op.drop_index("ix_deliveries_provider_id", "deliveries")
    op.drop_index("ix_deliveries_lease_until", "deliveries")
    op.create_index("ix_deliveries_provider_id", "deliveries", ["provider_id"])
    op.create_index("ix_deliveries_status_lease_until", "deliveries", ["status", "lease_until"])
    op.drop_index("ix_contacts_last_interaction_at", "contacts")
    with op.batch_alter_table("files") as batch:
        batch.alter_column("dedupe_key", existing_type=sa.String(1200), nullable=False)
    with op.batch_alter_table("contacts") as batch:
        batch.create_index("ix_contacts_email", ["email"])
        batch.drop_index("ix_contacts_import_id")
        batch.drop_column("import_row")
        batch.drop_column("import_id")

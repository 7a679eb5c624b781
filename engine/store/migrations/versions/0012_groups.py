"""groups: named sets of contacts (by hand, by file, by an HTTP feed, G1–G3), and the send
API's idempotency keys

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "groups",
        sa.Column("id", Id, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("synced_at", sa.DateTime(), nullable=True),
        sa.Column("sync_status", sa.String(12), nullable=True),
        sa.Column("sync_message", sa.Text(), nullable=True),
        sa.Column("next_sync_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("name", name=op.f("uq_groups_name")),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", Id, nullable=False),
        sa.Column("contact_id", Id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_group_members_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_group_members_contact_id_contacts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "contact_id", name=op.f("pk_group_members")),
    )
    op.create_index("ix_group_members_contact_id", "group_members", ["contact_id"])
    op.create_table(
        "campaign_groups",
        sa.Column("campaign_id", Id, nullable=False),
        sa.Column("group_id", Id, nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_groups_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_campaign_groups_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "group_id", name=op.f("pk_campaign_groups")),
    )
    op.create_table(
        "api_requests",
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("campaign_id", Id, nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_api_requests_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("client", "key", name=op.f("pk_api_requests")),
    )


def downgrade() -> None:
    op.drop_table("api_requests")
    op.drop_table("campaign_groups")
    op.drop_index("ix_group_members_contact_id", table_name="group_members")
    op.drop_table("group_members")
    op.drop_table("groups")

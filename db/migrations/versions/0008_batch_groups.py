"""batch path: groups of model requests sent as one unit, and the requests waiting in them

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batch_groups",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("model_ref", sa.String(length=170), nullable=False),
        sa.Column("backend", sa.String(length=30), nullable=False),
        sa.Column("handle", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_groups")),
    )
    op.create_index(op.f("ix_batch_groups_status"), "batch_groups", ["status"])
    op.create_table(
        "batch_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=120), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("stage", sa.String(length=20), nullable=False),
        sa.Column("model_ref", sa.String(length=170), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("group_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_batch_requests_campaign_id_campaigns"),
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["batch_groups.id"],
            name=op.f("fk_batch_requests_group_id_batch_groups"),
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"], ["leads.id"], name=op.f("fk_batch_requests_lead_id_leads")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batch_requests")),
        sa.UniqueConstraint("request_id", name=op.f("uq_batch_requests_request_id")),
    )
    op.create_index(op.f("ix_batch_requests_group_id"), "batch_requests", ["group_id"])
    op.create_index(op.f("ix_batch_requests_lead_id"), "batch_requests", ["lead_id"])
    op.create_index("ix_batch_requests_pending", "batch_requests", ["stage", "model_ref", "status"])


def downgrade() -> None:
    op.drop_table("batch_requests")
    op.drop_index(op.f("ix_batch_groups_status"), table_name="batch_groups")
    op.drop_table("batch_groups")

"""outcomes: replies and meetings imported from the sending tool

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("replied", sa.Boolean(), nullable=False),
        sa.Column("meeting", sa.Boolean(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["lead_id"], ["leads.id"], name=op.f("fk_outcomes_lead_id_leads")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outcomes")),
        sa.UniqueConstraint("lead_id", "run_id", name=op.f("uq_outcomes_lead_id_run_id")),
    )
    op.create_index(op.f("ix_outcomes_lead_id"), "outcomes", ["lead_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_outcomes_lead_id"), table_name="outcomes")
    op.drop_table("outcomes")

"""campaign send-by time for the deadline planner (issue 14): campaigns.send_by, send_within_s

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("send_by", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("send_within_s", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("send_within_s")
        batch.drop_column("send_by")

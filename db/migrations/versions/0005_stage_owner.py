"""stage lease owner: which worker and task hold a running stage (crash recovery, issue 12)

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stage_results", sa.Column("owner", sa.String(length=200), nullable=True))


def downgrade() -> None:
    op.drop_column("stage_results", "owner")

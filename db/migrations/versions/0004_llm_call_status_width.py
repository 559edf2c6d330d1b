"""llm_calls.status holds ``invalid_output`` (answered and billed, outside the stage contract).

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The views over llm_calls as 0001 created them: PostgreSQL cannot change the type of a column
# a view reads, and SQLite's batch mode rebuilds the table, so they are dropped and re-created.
VIEWS = {
    "campaign_cost_summary": """
        SELECT c.id AS campaign_id, c.name AS campaign, COUNT(l.id) AS calls,
               COALESCE(SUM(l.cost_usd), 0) AS cost_usd,
               COALESCE(SUM(l.prompt_tokens), 0) AS prompt_tokens,
               COALESCE(SUM(l.completion_tokens), 0) AS completion_tokens
        FROM campaigns c LEFT JOIN llm_calls l ON l.campaign_id = c.id
        GROUP BY c.id, c.name""",
    "lead_cost_summary": """
        SELECT ld.id AS lead_id, ld.company, ld.tier, ld.estimated_value_usd,
               COUNT(l.id) AS calls, COALESCE(SUM(l.cost_usd), 0) AS cost_usd
        FROM leads ld LEFT JOIN llm_calls l ON l.lead_id = ld.id
        GROUP BY ld.id, ld.company, ld.tier, ld.estimated_value_usd""",
    "stage_cost_summary": """
        SELECT stage, provider, model, COUNT(*) AS calls,
               SUM(CASE WHEN status = 'ok' THEN 0 ELSE 1 END) AS failed_calls,
               SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens,
               SUM(cost_usd) AS cost_usd, AVG(latency_ms) AS avg_latency_ms
        FROM llm_calls GROUP BY stage, provider, model""",
}


def _resize(old: int, new: int) -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {name}")
    with op.batch_alter_table("llm_calls") as batch:
        batch.alter_column(
            "status", existing_type=sa.String(length=old), type_=sa.String(length=new)
        )
    for name, sql in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def upgrade() -> None:
    _resize(10, 20)


def downgrade() -> None:
    op.execute("UPDATE llm_calls SET status = 'error' WHERE status = 'invalid_output'")
    _resize(20, 10)

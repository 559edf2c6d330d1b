"""Stage SQL (issue 10's data-access rule): claims, results and lead fields of the six stages.

Every function works inside the caller's transaction (``deps.session_scope()``); the rules (who
holds a lease, what a stage decided) stay in ``_common.py`` and the stage modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from db.enums import StageStatus
from db.models import Campaign, Lead, LLMCall, StageResult
from pipeline.liveness import PARKED_PREFIX

_NO_SYNC = {"synchronize_session": False}


def lead_with_strategy(session: Session, lead_id: int) -> tuple[Lead, str] | None:
    """The lead and its campaign's routing strategy, in one query."""
    row = session.execute(
        select(Lead, Campaign.strategy)
        .join(Campaign, Campaign.id == Lead.campaign_id)
        .where(Lead.id == lead_id)
    ).first()
    return (row[0], str(row[1])) if row is not None else None


def lock_stage_rows(session: Session, lead_id: int, run_id: str) -> Sequence[StageResult]:
    """Every stage row of (lead, run), locked: two deliveries taking over one lease serialise."""
    return session.scalars(
        select(StageResult)
        .where(StageResult.lead_id == lead_id, StageResult.run_id == run_id)
        .with_for_update()
    ).all()


def add_stage_row(
    session: Session, *, lead_id: int, stage: str, run_id: str, owner: str | None
) -> StageResult:
    """A new running stage row (the first claim of this stage in this run)."""
    row = StageResult(lead_id=lead_id, stage=stage, run_id=run_id, owner=owner)
    session.add(row)
    return row


def lead_spent(session: Session, lead_id: int, run_id: str) -> Decimal:
    """What this lead's run has cost so far, from the ledger."""
    spent = session.scalar(
        select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(
            LLMCall.lead_id == lead_id, LLMCall.run_id == run_id
        )
    )
    return Decimal(spent or 0)


def finish_stage(
    session: Session,
    *,
    lead_id: int,
    run_id: str,
    stage: str,
    status: StageStatus,
    output: dict[str, Any],
    finished_at: Any,
    lead_updates: dict[str, Any],
) -> None:
    """Store a stage's result and the lead fields it decided: two UPDATEs, no reads.

    A parked note on the lead is cleared (the outage it waited out is over).
    """
    session.execute(
        update(StageResult)
        .where(
            StageResult.lead_id == lead_id,
            StageResult.run_id == run_id,
            StageResult.stage == stage,
        )
        .values(status=status, output=output, error=None, finished_at=finished_at, owner=None)
        .execution_options(**_NO_SYNC)
    )
    parked = Lead.error.contains(PARKED_PREFIX, autoescape=True)
    session.execute(
        update(Lead)
        .where(Lead.id == lead_id)
        .values(error=case((parked, None), else_=Lead.error), **lead_updates)
        .execution_options(**_NO_SYNC)
    )


def stage_row(
    session: Session, *, lead_id: int, run_id: str, stage: str, running_owner: Any = None
) -> StageResult | None:
    """One stage row of (lead, run); ``running_owner``: only a running row matching it."""
    query = select(StageResult).where(
        StageResult.lead_id == lead_id,
        StageResult.run_id == run_id,
        StageResult.stage == stage,
    )
    if running_owner is not None:
        query = query.where(StageResult.status == StageStatus.RUNNING, running_owner)
    return session.scalars(query).first()


def get_lead(session: Session, lead_id: int) -> Lead | None:
    return session.get(Lead, lead_id)

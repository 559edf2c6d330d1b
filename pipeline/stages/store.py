"""Stage SQL (issue 10's data-access rule): claims, results and lead fields of the six stages.

Every function works inside the caller's transaction (``deps.session_scope()``); the rules (who
holds a lease, what a stage decided) stay in ``_common.py`` and the stage modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, select, update
from sqlalchemy.orm import Session

from db.enums import CallStatus, StageStatus
from db.models import Campaign, Lead, LLMCall, StageResult
from pipeline.liveness import PARKED_PREFIX

# The hot statements are built once, so SQLAlchemy computes each one's cache key once instead
# of per execution (for the join below that was ~7 % of a worker's CPU, issue 15).
_LEAD = (
    select(Lead, Campaign.strategy)
    .join(Campaign, Campaign.id == Lead.campaign_id)
    .where(Lead.id == bindparam("lead_id"))
)
_STAGE_ROWS = (
    select(StageResult)
    .where(StageResult.lead_id == bindparam("lead_id"), StageResult.run_id == bindparam("run_id"))
    .with_for_update()
)
_SPENT = select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(
    LLMCall.lead_id == bindparam("lead_id"), LLMCall.run_id == bindparam("run_id")
)
_results = cast(Table, StageResult.__table__)
_FINISH = (
    update(_results)
    .where(
        _results.c.lead_id == bindparam("b_lead_id"),
        _results.c.run_id == bindparam("b_run_id"),
        _results.c.stage == bindparam("b_stage"),
    )
    .values(
        status=bindparam("b_status", type_=_results.c.status.type),
        output=bindparam("b_output", type_=_results.c.output.type),
        error=None,
        finished_at=bindparam("b_finished_at", type_=_results.c.finished_at.type),
        owner=None,
    )
)
_leads = cast(Table, Lead.__table__)
_PARKED = _leads.c.error.contains(PARKED_PREFIX, autoescape=True)


def lead_with_strategy(session: Session, lead_id: int) -> tuple[Lead, str] | None:
    """The lead and its campaign's routing strategy, in one query."""
    row = session.execute(_LEAD, {"lead_id": lead_id}).first()
    return (row[0], str(row[1])) if row is not None else None


def lock_stage_rows(session: Session, lead_id: int, run_id: str) -> Sequence[StageResult]:
    """Every stage row of (lead, run), locked: two deliveries taking over one lease serialise."""
    return session.scalars(_STAGE_ROWS, {"lead_id": lead_id, "run_id": run_id}).all()


def add_stage_row(
    session: Session, *, lead_id: int, stage: str, run_id: str, owner: str | None
) -> StageResult:
    """A new running stage row (the first claim of this stage in this run)."""
    row = StageResult(lead_id=lead_id, stage=stage, run_id=run_id, owner=owner)
    session.add(row)
    return row


def lead_spent(session: Session, lead_id: int, run_id: str) -> Decimal:
    """What this lead's run has cost so far, from the ledger."""
    spent = session.scalar(_SPENT, {"lead_id": lead_id, "run_id": run_id})
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
        _FINISH,
        {
            "b_lead_id": lead_id,
            "b_run_id": run_id,
            "b_stage": stage,
            "b_status": status,
            "b_output": output,
            "b_finished_at": finished_at,
        },
    )
    session.execute(
        update(_leads)
        .where(_leads.c.id == lead_id)
        .values(error=case((_PARKED, None), else_=_leads.c.error), **lead_updates)
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


def set_call_quality(session: Session, journal_key: str, score: Decimal) -> None:
    """The judge's score on the paid call(s) under ``journal_key`` (the model-mix report)."""
    session.execute(
        update(LLMCall)
        .where(LLMCall.journal_key == journal_key, LLMCall.status == CallStatus.OK)
        .values(quality_score=score)
    )

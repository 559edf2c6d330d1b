"""Which failed or parked leads ``leadpipe retry`` sends back, and from which stage.

A lead is *failed* after a permanent error and *parked* while an outage lasts (its task keeps
retrying, and its ``error`` says ``parked: ...``). Retrying re-opens the lead and resumes it at
its first unfinished stage; the run id stays the same, so every model answer already paid for in
that run is replayed from the journal instead of being paid again.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from db.enums import STAGE_ORDER, LeadStatus, Stage
from db.models import Batch, Campaign, Lead, StageResult
from pipeline.campaigns.sweep import DONE, Stalled
from pipeline.liveness import PARKED_PREFIX


def find_retryable(
    session: Session,
    *,
    batch_id: str | None = None,
    campaign: str | None = None,
    stage: Stage | None = None,
) -> list[Stalled]:
    """Failed and parked leads (optionally of one batch, campaign or unfinished stage)."""
    query = (
        select(Lead.id, Lead.run_id, Batch.priority)
        .join(Batch, Batch.id == Lead.batch_id)
        .where(
            or_(
                Lead.status == LeadStatus.FAILED,
                Lead.status.in_((LeadStatus.QUEUED, LeadStatus.RUNNING))
                & Lead.error.contains(PARKED_PREFIX),
            )
        )
        .order_by(Lead.id)
    )
    if batch_id is not None:
        query = query.where(Lead.batch_id == batch_id)
    if campaign is not None:
        query = query.join(Campaign, Campaign.id == Lead.campaign_id).where(
            Campaign.name == campaign
        )
    found = []
    for lead_id, run_id, priority in session.execute(query).all():
        done = set(
            session.scalars(
                select(StageResult.stage).where(
                    StageResult.lead_id == lead_id,
                    StageResult.run_id == run_id,
                    StageResult.status.in_(DONE),
                )
            )
        )
        resume_at = next((s for s in STAGE_ORDER if s.value not in done), None)
        if resume_at is not None and (stage is None or resume_at == stage):
            found.append(Stalled(lead_id, run_id, priority, resume_at))
    return found


def reopen(session: Session, lead_ids: list[int]) -> None:
    """Put leads back to ``running`` with no error, before their chains are sent."""
    for lead in session.scalars(select(Lead).where(Lead.id.in_(lead_ids))):
        lead.status = LeadStatus.RUNNING
        lead.error = None

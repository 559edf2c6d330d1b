"""Which failed or parked leads ``leadpipe retry`` sends back, and from which stage.

A lead is *failed* after a permanent error and *parked* while an outage lasts (its task keeps
retrying, and its ``error`` says ``parked: ...``). Retrying re-opens the lead and resumes it at
its first unfinished stage; the run id stays the same, so every model answer already paid for in
that run is replayed from the journal instead of being paid again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.enums import STAGE_ORDER, LeadStatus, Stage
from pipeline.campaigns import store
from pipeline.campaigns.sweep import DONE, Stalled


def find_retryable(
    session: Session,
    *,
    batch_id: str | None = None,
    campaign: str | None = None,
    stage: Stage | None = None,
) -> list[Stalled]:
    """Failed and parked leads (optionally of one batch, campaign or unfinished stage)."""
    found = []
    for lead_id, run_id, priority in store.stopped_leads(
        session, batch_id=batch_id, campaign=campaign
    ):
        done = store.finished_stages(session, lead_id, run_id, statuses=DONE)
        resume_at = next((s for s in STAGE_ORDER if s.value not in done), None)
        if resume_at is not None and (stage is None or resume_at == stage):
            found.append(Stalled(lead_id, run_id, priority, resume_at))
    return found


def reopen(session: Session, lead_ids: list[int]) -> None:
    """Put leads back to ``running`` with no error, before their chains are sent."""
    for lead in store.leads_by_id(session, lead_ids):
        lead.status = LeadStatus.RUNNING
        lead.error = None

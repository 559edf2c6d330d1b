"""Finding leads whose chain was lost, so they can be dispatched again.

A chain can vanish without a crash of ours: Redis restarted without persistence, a process died
between committing a batch and sending its chains, a message was purged by hand. Such a lead sits
``queued`` or ``running`` with no stage activity. The sweep finds those older than a threshold
(set above the broker's visibility timeout, so a normal redelivery always comes first) and
returns the stage each should resume at; stages are idempotent and leased, so a chain sent to a
lead that was only slow does no harm.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import STAGE_ORDER, LeadStatus, Stage, StageStatus
from db.models import Batch, Lead, QueueState, StageResult

DONE = (StageStatus.DONE, StageStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class Stalled:
    """A lead to re-dispatch: where to resume and with which priority."""

    lead_id: int
    run_id: str
    priority: int
    resume_at: Stage


def find_stalled(session: Session, *, older_than: dt.datetime, limit: int = 1000) -> list[Stalled]:
    """Unfinished leads with no stage activity since ``older_than``.

    Leads whose next stage sits on a paused queue are left alone: they are waiting on purpose.
    """
    last = (
        select(
            StageResult.lead_id,
            StageResult.run_id,
            func.max(func.coalesce(StageResult.finished_at, StageResult.started_at)).label("at"),
        )
        .group_by(StageResult.lead_id, StageResult.run_id)
        .subquery()
    )
    rows = session.execute(
        select(Lead.id, Lead.run_id, Batch.priority)
        .join(Batch, Batch.id == Lead.batch_id)
        .outerjoin(last, (last.c.lead_id == Lead.id) & (last.c.run_id == Lead.run_id))
        .where(
            Lead.status.in_((LeadStatus.QUEUED, LeadStatus.RUNNING)),
            Batch.dispatched_at.is_not(None),  # an undispatched batch is the outbox's to finish
            # idle since its last stage, or since its dispatch (a batch finished by the outbox
            # late must not look stalled the moment it is sent)
            func.coalesce(last.c.at, Batch.dispatched_at) < older_than,
        )
        .order_by(Lead.id)
        .limit(limit)
    ).all()
    paused = set(session.scalars(select(QueueState.queue).where(QueueState.paused)))
    found = []
    for lead_id, run_id, priority in rows:
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
        if resume_at is not None and resume_at.value not in paused:
            found.append(Stalled(lead_id, run_id, priority, resume_at))
    return found


def find_undispatched(session: Session, *, older_than: dt.datetime) -> list[str]:
    """Batches stored but never marked dispatched since before ``older_than`` (the outbox).

    ``enqueue`` commits a batch, then sends its chains and marks it; a broker outage or a crash
    in between leaves it here until a re-run of ``enqueue`` or the periodic sweep finishes it.
    """
    return list(
        session.scalars(
            select(Batch.id)
            .where(Batch.dispatched_at.is_(None), Batch.created_at < older_than)
            .order_by(Batch.created_at)
        )
    )

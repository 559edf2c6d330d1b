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

from sqlalchemy.orm import Session

from db.enums import STAGE_ORDER, Stage, StageStatus
from pipeline.budget import store as budget_db
from pipeline.campaigns import store

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
    rows = store.idle_leads(session, older_than=older_than, limit=limit)
    paused = budget_db.paused_queue_names(session)
    found = []
    for lead_id, run_id, priority in rows:
        done = store.finished_stages(session, lead_id, run_id, statuses=DONE)
        resume_at = next((s for s in STAGE_ORDER if s.value not in done), None)
        if resume_at is not None and resume_at.value not in paused:
            found.append(Stalled(lead_id, run_id, priority, resume_at))
    return found


def find_undispatched(session: Session, *, older_than: dt.datetime) -> list[str]:
    """Batches stored but never marked dispatched since before ``older_than`` (the outbox).

    ``enqueue`` commits a batch, then sends its chains and marks it; a broker outage or a crash
    in between leaves it here until a re-run of ``enqueue`` or the periodic sweep finishes it.
    """
    return store.undispatched_batches(session, older_than=older_than)

"""Composition: one chain per lead, carrying the campaign priority (no logic beyond ordering),
and the outbox step that sends a stored batch's chains exactly once."""

from __future__ import annotations

from collections.abc import Iterable

from celery import chain
from celery.canvas import Signature
from sqlalchemy.orm import Session, sessionmaker

from db.enums import STAGE_ORDER, Stage
from pipeline.campaigns.batches import NewBatch, claim_dispatch
from workers.bulk import ChainSender
from workers.tasks import (
    analyze_lead,
    classify_lead,
    demo_lead,
    judge_lead,
    personalize_lead,
    score_lead,
)

STAGE_TASKS = (classify_lead, score_lead, analyze_lead, demo_lead, personalize_lead, judge_lead)


def lead_chain(
    lead_id: int, run_id: str, priority: int, start: Stage = Stage.CLASSIFY
) -> Signature[None]:
    """classify -> score -> analyze -> demo -> personalize -> judge, from ``start`` on."""
    tasks = STAGE_TASKS[STAGE_ORDER.index(start) :]
    return chain(
        *(task.si(lead_id=lead_id, run_id=run_id).set(priority=priority) for task in tasks)
    )


def dispatch(leads: Iterable[tuple[int, int]], run_id: str) -> None:
    """Send one chain per ``(lead_id, priority)``: built in bulk, pipelined (``workers/bulk.py``).

    A broker error raises, so the caller's outbox mark rolls back; the chains of an earlier
    pipeline may then be sent again, which the stage claims make harmless.
    """
    ChainSender(STAGE_TASKS, run_id).send(leads)


def dispatch_batch(factory: sessionmaker[Session], batch_id: str) -> NewBatch | None:
    """Send a stored batch's chains and mark it dispatched, in one transaction; None if done before.

    The mark commits only after every chain reached the broker; a broker error rolls it back and
    propagates, leaving the batch pending for a re-run of ``enqueue`` or ``ops.dispatch_pending``.
    """
    with factory() as session, session.begin():
        claimed = claim_dispatch(session, batch_id)
        if claimed is not None:
            dispatch(claimed.leads, claimed.run_id)
    return claimed

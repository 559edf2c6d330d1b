"""Composition: one chain per lead, carrying the campaign priority (no logic beyond ordering),
and the outbox step that sends a stored batch's chains exactly once."""

from __future__ import annotations

from collections.abc import Iterable

from celery import chain
from celery.canvas import Signature
from sqlalchemy.orm import Session, sessionmaker

from db.enums import STAGE_ORDER, Stage
from pipeline.campaigns.batches import NewBatch, claim_dispatch
from workers.app import app
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


PUBLISH_BATCH = 1000
"""Redis commands buffered per pipeline round trip when a batch's chains are sent."""


def dispatch(leads: Iterable[tuple[int, int]], run_id: str) -> None:
    """Send one chain per ``(lead_id, priority)``, pipelined: one producer, few round trips.

    Each chain goes out as Celery's own chain message would (its first task, the others in
    the message's ``chain``), through kombu's ``Producer.batch``: the Redis commands of up to
    ``PUBLISH_BATCH`` messages (and their task-sent events) go in one pipeline. A broker error
    raises (``BatchPublishError`` once a flush fails), so the caller's outbox mark rolls back;
    chains of an earlier flush may then be sent again, which the stage claims make harmless.
    """
    with app.producer_or_acquire() as producer, producer.batch(max_size=PUBLISH_BATCH):
        for lead_id, priority in leads:
            first, *rest = (
                task.si(lead_id=lead_id, run_id=run_id).set(priority=priority)
                for task in STAGE_TASKS
            )
            first.apply_async(producer=producer, chain=rest[::-1])


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

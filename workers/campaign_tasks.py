"""``campaigns.run``: the task beat sends for a scheduled campaign (a thin adapter, R1)."""

from __future__ import annotations

import structlog

from pipeline.campaigns.schedules import run_campaign
from workers.app import app
from workers.canvas import dispatch_batch
from workers.lifecycle import process_deps
from workers.queues import Queue

log = structlog.get_logger(__name__)


@app.task(name="campaigns.run", queue=Queue.OPS, acks_late=True)
def run_scheduled_campaign(*, name: str) -> None:
    factory = process_deps().session_factory
    run = run_campaign(factory, name=name)
    for batch in run.batches:
        dispatch_batch(factory, batch.batch_id)
    log.info(
        "campaign_ran", campaign=name, ran=run.ran, reason=run.reason, batches=len(run.batches)
    )

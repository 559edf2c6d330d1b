"""The ``batch`` queue: the collector that sends grouped requests, and its recovery tick.

``batch.collect`` groups and sends the pending requests of one stage and model
(``pipeline.batch.collector.collect``) and sends each answered (or sent-back) lead's chain again
from that stage. ``batch.recover`` (beat) schedules a collect for every stage and model with
waiting requests or an unfinished group, so a group whose collector died is taken over.
``batch.provider_poll`` (beat) checks every submitted provider batch: collects the finished
ones and flips those whose deadline is near, or that are late, to the sync path
(``pipeline.batch.provider.tick``).
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task

from db.enums import Stage
from pipeline.batch import store
from pipeline.batch.awaiting import AwaitingGroups
from pipeline.batch.collector import collect
from pipeline.batch.provider import Tick, tick
from pipeline.liveness import worker_id
from workers.app import app
from workers.base import backoff_s, is_transient
from workers.canvas import lead_chain
from workers.lifecycle import process_deps
from workers.queues import Queue

log = structlog.get_logger(__name__)


@app.task(
    bind=True,
    name="batch.collect",
    queue=Queue.BATCH,
    ignore_result=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,
)
def collect_batch(self: Task[Any, Any], *, stage: str, model_ref: str) -> None:
    deps = process_deps()
    owner = f"{worker_id()}/{self.request.id}"
    try:
        resumed: list[store.Resume] = []

        def resume_now(ready: list[store.Resume]) -> None:
            resume(ready)  # each group's leads go on at once, not after the last group
            resumed.extend(ready)

        done = collect(deps, stage, model_ref, owner=owner, on_resume=resume_now)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("batch_collect_retry", error=f"{type(exc).__name__}: {exc}")
        raise self.retry(countdown=backoff_s(self.request.retries or 0, 60)) from exc
    resume(done.resumes)  # empty: on_resume sent each group's leads already
    if done.again_s is not None:
        collect_batch.apply_async(
            kwargs={"stage": stage, "model_ref": model_ref}, countdown=done.again_s
        )
    log.info(
        "batch_collected",
        stage=stage,
        model=model_ref,
        groups=done.groups,
        answered=done.answered,
        to_sync=done.to_sync,
        recovered=done.recovered,
        resumed=len(resumed),
    )


def resume(resumes: list[store.Resume]) -> None:
    """Each lead's chain again from the stage that waited (it replays or calls sync)."""
    for r in resumes:
        lead_chain(r.lead_id, r.run_id, r.priority, start=Stage(r.stage)).apply_async()


@app.task(name="batch.recover", queue=Queue.BATCH, ignore_result=True)
def recover_batches() -> None:
    """Beat: a collect for every stage and model with waiting requests or an open group."""
    deps = process_deps()
    if deps.batch is None:
        return
    with deps.session_scope() as session:
        keys = store.waiting_keys(session)
    for stage, ref in keys:
        collect_batch.apply_async(kwargs={"stage": stage, "model_ref": ref})


@app.task(name="batch.provider_poll", queue=Queue.BATCH, ignore_result=True)
def poll_provider_batches() -> None:
    """Beat: collect finished provider batches, flip late ones (deadline near) to sync."""
    poll_provider_batches_now()


def poll_provider_batches_now() -> Tick:
    """One poll of every open provider batch; the leads it answered or flipped continue."""
    deps = process_deps()
    if not deps.batch_apis:
        return Tick()
    groups = AwaitingGroups(deps)
    done = tick(groups, deps.batch_apis, deps.batch_plan, store.now())
    resume(groups.resumes)
    if done.delivered or done.flipped or done.errors:
        log.info(
            "provider_batches_polled",
            waiting=len(done.waiting),
            delivered=len(done.delivered),
            flipped=len(done.flipped),
            answers=done.answers,
            to_sync=done.to_sync,
            errors=done.errors,
        )
    return done

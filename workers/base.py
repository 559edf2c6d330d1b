"""The shared task base class: nothing escapes the task boundary (R3, issue 12).

Every delivery ends in exactly one of: done, retried later (a new message, then this one acked),
requeued (this message put back), or failed (a permanent error, recorded). Database and Redis
errors are transient wherever they happen, including in the cleanup of a failure path, so a
PostgreSQL or Redis restart never wedges a worker thread and never fails a lead. A transient error
is retried with capped exponential backoff for as long as it lasts; from the seventh try on the
lead is *parked* (reason on its stage row) and retried every ``retry_backoff_max_s``.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import structlog
from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from kombu.exceptions import OperationalError as BrokerUnreachable

from db.enums import Stage
from pipeline.batch.collector import AwaitingBatch, claim_tick
from pipeline.budget.guard import BudgetRefused
from pipeline.liveness import OWNER, RUNNING, worker_id
from pipeline.liveness import is_transient as _infra_transient
from pipeline.settings import get_settings
from pipeline.stages._common import mark_failed, mark_parked, release
from workers.identity import refuse_foreign
from workers.lifecycle import process_deps
from workers.queues import Queue

log = structlog.get_logger(__name__)
PARK_AFTER_RETRIES = 6


def is_transient(exc: BaseException) -> bool:
    """Database and Redis blips, and the broker being unreachable when a task publishes."""
    return isinstance(exc, BrokerUnreachable) or _infra_transient(exc)


def backoff_s(retries: int, cap_s: int, base_s: float = 5.0) -> float:
    """Full-jitter exponential backoff: 5 s, 10 s, 20 s ... capped at ``cap_s``."""
    return float(random.uniform(0.5, 1.0) * min(cap_s, base_s * 2**retries))


class PipelineTask(Task):  # type: ignore[type-arg]
    acks_late = True
    reject_on_worker_lost = True
    max_retries = None  # transient errors never exhaust: the lead is parked instead

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        refuse_foreign(self.request, self.name)  # issue 13: another database's lead never runs
        # One owner per execution: two copies of one message (same task id) never share a lease.
        owner = f"{worker_id()}/{self.request.id}/{uuid.uuid4().hex[:8]}"
        token = OWNER.set(owner)
        RUNNING.add(owner)
        try:
            return super().__call__(*args, **kwargs)
        except (Retry, Ignore, Reject):
            raise
        except AwaitingBatch as exc:  # the chain pauses; the collector sends it on (issue 14)
            self._cleanup(kwargs)
            self._await_batch(exc)
            raise Ignore() from exc
        except BudgetRefused as exc:  # park: same message later, retries untouched
            self._cleanup(kwargs)
            self._send_later(exc.retry_after_s, retries=self.request.retries)
            log.warning("lead_parked", reason=str(exc))
            raise Ignore() from exc
        except Exception as exc:
            if not is_transient(exc):
                self._fail(kwargs, exc)
                raise
            self._cleanup(kwargs)
            self._retry_later(kwargs, exc)
            raise Ignore() from exc
        finally:
            RUNNING.discard(owner)
            OWNER.reset(token)

    def _await_batch(self, exc: AwaitingBatch) -> None:
        """Schedule the collector (``workers/batch_tasks.py``), one per window and model; if the
        broker is away, the beat's ``batch.recover`` schedules it."""
        deps = process_deps()
        window = deps.batch.window_s if deps.batch is not None else exc.countdown_s
        try:
            if claim_tick(deps.redis, exc.stage, exc.model_ref, window, full=exc.full):
                self.app.send_task(
                    "batch.collect",
                    kwargs={"stage": exc.stage, "model_ref": exc.model_ref},
                    queue=Queue.BATCH.value,
                    countdown=0 if exc.full else exc.countdown_s,
                )
        except Exception as send_exc:
            log.warning("batch_collect_not_scheduled", error=type(send_exc).__name__)
        log.info("lead_awaits_batch", stage=exc.stage, model=exc.model_ref)

    def _stage(self) -> Stage:
        return Stage(self.name.removeprefix("leads."))

    def _cleanup(self, kwargs: dict[str, Any]) -> None:
        """Free our own lease; a failure here must not stop the retry (the lease is ours)."""
        try:
            release(
                process_deps(),
                lead_id=kwargs["lead_id"],
                run_id=kwargs["run_id"],
                stage=self._stage(),
            )
        except Exception as exc:  # the DB is away: the heartbeat-owned lease frees itself
            log.warning("lease_release_failed", error=f"{type(exc).__name__}: {exc}")

    def _retry_later(self, kwargs: dict[str, Any], exc: Exception) -> None:
        retries = self.request.retries
        cap = get_settings().retry_backoff_max_s
        countdown = backoff_s(retries, cap)
        if retries >= PARK_AFTER_RETRIES:
            countdown = backoff_s(PARK_AFTER_RETRIES, cap)
            self._note_parked(kwargs, exc)
        log.warning("task_retry", error=f"{type(exc).__name__}: {exc}", countdown=round(countdown))
        self._send_later(countdown, retries=retries + 1)

    def _note_parked(self, kwargs: dict[str, Any], exc: Exception) -> None:
        try:
            mark_parked(
                process_deps(),
                lead_id=kwargs["lead_id"],
                run_id=kwargs["run_id"],
                stage=self._stage(),
                reason=f"{type(exc).__name__}: {exc}",
            )
        except Exception as note_exc:
            log.warning("park_note_failed", error=f"{type(note_exc).__name__}: {note_exc}")

    def _send_later(self, countdown: float, *, retries: int) -> None:
        """Publish the same call again; if the broker is away, put this message back instead."""
        try:
            self.signature_from_request(countdown=countdown, retries=retries).apply_async()
        except Exception as exc:
            # Requeue this very message (or, if Redis is down for that too, leave it unacked
            # for the recovery loop, which restores messages no live worker holds).
            raise Reject(exc, requeue=True) from exc

    def _fail(self, kwargs: dict[str, Any], exc: Exception) -> None:
        """Record a permanent failure; if the DB is away for that, retry instead of losing it."""
        try:
            mark_failed(
                process_deps(),
                lead_id=kwargs["lead_id"],
                run_id=kwargs["run_id"],
                stage=self._stage(),
                error=f"{type(exc).__name__}: {exc}",
            )
        except Exception as record_exc:
            if not is_transient(record_exc):
                raise
            self._send_later(backoff_s(self.request.retries, 60), retries=self.request.retries)
            raise Ignore() from record_exc

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            task=self.name,
            task_id=task_id,
            stage=self.name.removeprefix("leads."),
            attempt=self.request.retries,
            **kwargs,
        )

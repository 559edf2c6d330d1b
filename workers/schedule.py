"""``BEAT_SCHEDULE``: the periodic ops tasks (a plain dict; the campaign scheduler merges it)."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # The ledger is the source of truth: repair Redis drift and leaked reservations.
    "budget-reconcile": {
        "task": "ops.budget_reconcile",
        "schedule": 300.0,
        "options": {"queue": "ops"},
    },
    # Every minute: a queue paused by the budget resumes once its period has rolled over.
    "budget-rollover": {
        "task": "ops.budget_rollover",
        "schedule": crontab(minute="*"),
        "options": {"queue": "ops"},
    },
    # Every minute: a batch stored while the broker was down (``enqueue`` failed after its
    # commit) has its chains sent and is marked dispatched, exactly once (the outbox).
    "dispatch-pending": {
        "task": "ops.dispatch_pending",
        "schedule": 60.0,
        "options": {"queue": "ops"},
    },
    # Leads whose chain was lost (broker restarted without persistence, a worker crash) are
    # sent again from their next unfinished stage.
    "sweep-stalled": {
        "task": "ops.sweep_stalled",
        "schedule": 600.0,
        "options": {"queue": "ops"},
    },
    # The batch path: a group whose collector died is taken over, and requests left waiting
    # (a collect that was never scheduled) are grouped or sent back to the sync path.
    "batch-recover": {
        "task": "batch.recover",
        "schedule": 30.0,
        "options": {"queue": "batch"},
    },
    # Provider batch APIs: collect finished batches, flip late ones to sync before the deadline.
    "batch-provider-poll": {
        "task": "batch.provider_poll",
        "schedule": 30.0,
        "options": {"queue": "batch"},
    },
}

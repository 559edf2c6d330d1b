"""Periodic and ops tasks on the ``ops`` queue: budget reconcile, rollover resume, webhooks,
and the sweep that re-dispatches leads whose chain was lost."""

from __future__ import annotations

import datetime as dt
from typing import Any

import structlog

from pipeline.budget.guard import BudgetGuard
from pipeline.budget.throttle import PAUSED_AT_LEVEL, Period, window
from pipeline.campaigns.sweep import Stalled, find_stalled, find_undispatched
from pipeline.deps import Deps
from pipeline.errors import TransientError
from pipeline.web.webhook import post_json
from workers.app import app
from workers.broker import leads_in_broker
from workers.canvas import dispatch_batch, lead_chain
from workers.control import queue_states, resume
from workers.lifecycle import budget_webhook_url, process_deps, sweep_after_s
from workers.queues import Queue


def _guard() -> BudgetGuard | None:
    budget = process_deps().budget
    return budget if isinstance(budget, BudgetGuard) else None


@app.task(name="ops.budget_reconcile", queue=Queue.OPS, ignore_result=True)
def reconcile_budgets() -> None:
    guard = _guard()
    if guard is not None:
        guard.reconcile()
        guard.check()


@app.task(name="ops.budget_rollover", queue=Queue.OPS, ignore_result=True)
def resume_after_rollover() -> None:
    guard = _guard()
    if guard is None or guard.check().throttle_level >= PAUSED_AT_LEVEL:
        return
    day = window(Period.DAILY, dt.datetime.now(dt.UTC), guard.config.timezone)
    resume_rolled_over(process_deps(), day.start)


def resume_rolled_over(deps: Deps, period_start: dt.datetime) -> list[str]:
    """Resume the queues the budget paused before ``period_start`` (a new period began)."""
    resumed = []
    for name, row in queue_states(deps).items():
        if row.paused and row.changed_by == "budget" and _aware(row.changed_at) < period_start:
            resume(deps, name, by="budget-rollover")
            resumed.append(name)
    return resumed


def _aware(at: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones."""
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


@app.task(
    name="ops.budget_webhook",
    queue=Queue.OPS,
    ignore_result=True,
    autoretry_for=(TransientError,),
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=8,
    acks_late=True,
)
def send_budget_alert(payload: dict[str, Any]) -> None:
    url = budget_webhook_url()
    if url:
        post_json(url, payload)


def redispatch_stalled(older_than_s: int) -> list[Stalled]:
    """Send a chain again for every lead idle longer than ``older_than_s`` (see campaigns.sweep)."""
    deps = process_deps()
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_s)
    with deps.session_scope() as session:
        stalled = find_stalled(session, older_than=cutoff)
    if stalled and deps.redis is not None:  # a lead waiting in a long backlog is not lost
        waiting = leads_in_broker(deps.redis)
        stalled = [item for item in stalled if item.lead_id not in waiting]
    for item in stalled:
        lead_chain(item.lead_id, item.run_id, item.priority, item.resume_at).apply_async()
    if stalled:
        structlog.get_logger(__name__).warning("leads_redispatched", count=len(stalled))
    return stalled


@app.task(name="ops.sweep_stalled", queue=Queue.OPS, ignore_result=True)
def sweep_stalled() -> None:
    redispatch_stalled(sweep_after_s())


DISPATCH_GRACE_S = 60
"""A batch younger than this is left to the ``enqueue`` that is still sending it."""


def dispatch_pending(older_than_s: int = DISPATCH_GRACE_S) -> list[str]:
    """Finish every batch stored but never dispatched (the outbox); each is claimed once."""
    deps = process_deps()
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than_s)
    with deps.session_scope() as session:
        pending = find_undispatched(session, older_than=cutoff)
    done = [b for b in pending if dispatch_batch(deps.session_factory, b) is not None]
    if done:
        structlog.get_logger(__name__).warning("batches_dispatched", batch_ids=done)
    return done


@app.task(name="ops.dispatch_pending", queue=Queue.OPS, ignore_result=True)
def dispatch_pending_batches() -> None:
    dispatch_pending()

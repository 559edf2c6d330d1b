"""Issue 13: a task never logs the previous task's lead_id (context cleared around each task)."""

from __future__ import annotations

import structlog
from celery.signals import task_postrun, task_prerun

import workers.logcontext  # noqa: F401  (connects the handlers, as the worker's include does)


def test_context_is_cleared_before_and_after_every_task() -> None:
    structlog.contextvars.bind_contextvars(lead_id=41, stage="judge")
    task_prerun.send(sender=None, task_id="t1", task=None, args=(), kwargs={})
    assert structlog.contextvars.get_contextvars() == {}
    structlog.contextvars.bind_contextvars(lead_id=42)
    task_postrun.send(sender=None, task_id="t1", task=None, args=(), kwargs={}, retval=None)
    assert structlog.contextvars.get_contextvars() == {}

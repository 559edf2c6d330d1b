"""Log context per task: structlog's context variables are cleared around every task.

A worker thread runs one task after another; without this, a task that binds no context of its
own (ops, campaigns) logs the previous task's ``lead_id`` (issue 13).
"""

from __future__ import annotations

from typing import Any

import structlog
from celery.signals import task_postrun, task_prerun


@task_prerun.connect
def _fresh_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()


@task_postrun.connect
def _drop_context(**_: Any) -> None:
    structlog.contextvars.clear_contextvars()

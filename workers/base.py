"""The shared task base class: ack late, retry only what may succeed next time (R3)."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task

from db.enums import Stage
from pipeline.errors import PermanentError, TransientError
from pipeline.stages._common import mark_failed
from workers.lifecycle import process_deps


class PipelineTask(Task):  # type: ignore[type-arg]
    acks_late = True
    reject_on_worker_lost = True
    autoretry_for = (TransientError,)
    dont_autoretry_for = (PermanentError,)
    retry_backoff = 5
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = 6

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            task=self.name, task_id=task_id, attempt=self.request.retries, **kwargs
        )

    def on_failure(
        self,
        exc: Exception,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: Any,
    ) -> None:
        stage = Stage(self.name.removeprefix("leads."))
        mark_failed(
            process_deps(),
            lead_id=kwargs["lead_id"],
            run_id=kwargs["run_id"],
            stage=stage,
            error=f"{type(exc).__name__}: {exc}",
        )

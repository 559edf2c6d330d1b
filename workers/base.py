"""The shared task base class: ack late, retry only what may succeed next time (R3)."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task
from celery.exceptions import Ignore

from db.enums import Stage
from pipeline.budget.guard import BudgetRefused
from pipeline.errors import PermanentError, TransientError
from pipeline.stages._common import StageBusy, mark_failed, release
from workers.identity import refuse_foreign
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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        refuse_foreign(self.request, self.name)  # issue 13: another database's lead never runs
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            cause = getattr(exc, "exc", None) or exc  # autoretry wraps the error in Retry
            if not isinstance(cause, StageBusy):  # a busy stage's lease is someone else's
                release(
                    process_deps(),
                    lead_id=kwargs["lead_id"],
                    run_id=kwargs["run_id"],
                    stage=Stage(self.name.removeprefix("leads.")),
                )
            if isinstance(cause, BudgetRefused):  # park: same message later, retries untouched
                self.signature_from_request(countdown=cause.retry_after_s).apply_async()
                structlog.get_logger(__name__).warning("lead_parked", reason=str(cause))
                raise Ignore() from exc
            raise

    def before_start(self, task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            task=self.name,
            task_id=task_id,
            stage=self.name.removeprefix("leads."),
            attempt=self.request.retries,
            **kwargs,
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

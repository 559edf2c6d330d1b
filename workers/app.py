"""The Celery application, configured from settings (a composition root)."""

from __future__ import annotations

from celery import Celery

from pipeline.settings import get_settings
from workers.queues import Queue
from workers.schedule import BEAT_SCHEDULE


def make_app() -> Celery:
    settings = get_settings()
    broker = settings.resolved_redis_url()
    celery = Celery(
        "leadpipe",
        broker=broker,
        # kombu's Redis transport with a worker-killing close-time bug fixed (see the module).
        broker_transport="workers.broker_transport:Transport",
        include=[
            "workers.tasks",
            "workers.campaign_tasks",
            "workers.batch_tasks",  # the batch queue's collector (issue 14)
            "workers.ops",
            "workers.metrics_server",
            "workers.recovery",  # heartbeats and the recovery loop (worker_ready hook)
            "workers.logcontext",
        ],
    )
    celery.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=Queue.OPS.value,
        # Without a default every task gets priority 0 and jumps the line (DESIGN.md 7).
        task_default_priority=5,
        task_routes={f"leads.{q.value}": {"queue": q.value} for q in Queue},
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "queue_order_strategy": "priority",
            "priority_steps": list(range(10)),
            # kombu's default key separator: a stock client (celery inspect ping, Flower) stores
            # its reply bindings with it, and a worker with another "sep" cannot reply to them.
        },
        # Task events only while someone listens: Flower sends ``enable_events`` to the workers
        # every 5 s while it runs (``leadpipe worker --events`` sends them from the start).
        # Unheard, they were about 6 % of a worker's CPU per lead (issue 15). No task-sent
        # events: Flower shows a task from the moment a worker receives it.
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        beat_schedule=BEAT_SCHEDULE,
    )
    return celery


app = make_app()

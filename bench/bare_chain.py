"""The yardstick for bench/pipeline.py: a bare Celery chain of six tasks, nothing else.

Same broker, same worker settings as leadpipe (acks_late, prefetch 1, threads pool); each task
sleeps the simulated model latency; the last one counts the finished chain in Redis.
Started as ``celery -A bench.bare_chain worker`` by bench/pipeline.py.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery, chain

BROKER = os.environ.get("BARE_BROKER_URL", "redis://127.0.0.1:56379/7")
LATENCY_S = float(os.environ.get("BARE_LATENCY_S", "0.02"))
DONE_KEY = "bare:done"
STAGES = ("classify", "score", "analyze", "demo", "personalize", "judge")

app = Celery("bare", broker=BROKER)
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_priority=5,
    broker_transport_options={"queue_order_strategy": "priority", "sep": ":"},
    task_routes={f"bare.{s}": {"queue": f"bare-{s}"} for s in STAGES},
    worker_hijack_root_logger=False,
)
_redis = redis.Redis.from_url(BROKER)


@app.task(name="bare.step")
def step(lead_id: int, last: bool = False) -> None:  # noqa: ARG001  (names the lead in Flower)
    time.sleep(LATENCY_S)
    if last:
        _redis.incr(DONE_KEY)


def lead_chain(lead_id: int) -> chain:
    """Six tasks on six queues, like a leadpipe lead."""
    return chain(
        step.si(lead_id, last=(i == len(STAGES) - 1)).set(queue=f"bare-{s}")
        for i, s in enumerate(STAGES)
    )

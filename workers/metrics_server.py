"""Serve Prometheus ``/metrics`` from a worker's main process (started on ``worker_ready``).

``worker_ready`` fires once, in the main process, so a host running several pool processes
exposes one port. With the default threads pool every model call happens in that process and
is counted there; a prefork pool would need prometheus-client's multiprocess mode.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery import Celery
from celery.signals import worker_ready
from prometheus_client import REGISTRY, start_http_server

from pipeline.budget.guard import BudgetConfig, BudgetGuard
from pipeline.metrics import RateLimitCollector, StateCollector, guard_reading, ledger_reading
from pipeline.settings import get_settings
from workers.app import app
from workers.lifecycle import process_deps
from workers.queues import ALL_QUEUES

log = structlog.get_logger(__name__)
_started: list[int] = []


def queue_keys(app: Celery) -> dict[str, list[str]]:
    """Each queue's Redis lists: kombu keeps one per priority step, ``name{sep}{step}``."""
    options = app.conf.broker_transport_options or {}
    sep, steps = options.get("sep", "\x06\x16"), options.get("priority_steps", [0, 3, 6, 9])
    return {q: [q if step == 0 else f"{q}{sep}{step}" for step in steps] for q in ALL_QUEUES}


@worker_ready.connect
def start_metrics_server(**_: Any) -> None:
    settings = get_settings()
    if not settings.metrics_port or _started:
        return
    try:
        start_http_server(settings.metrics_port)
    except OSError as exc:  # another worker on this host has the port: run without metrics
        log.warning("metrics_port_busy", port=settings.metrics_port, error=str(exc))
        return
    _started.append(settings.metrics_port)
    deps = process_deps()
    if isinstance(deps.budget, BudgetGuard):
        budget = guard_reading(deps.budget)
    else:  # no guard in this process: read spend from the ledger
        config = BudgetConfig.from_settings(settings.budget)
        budget = ledger_reading(
            deps.session_factory,
            limits=config.limits,
            timezone=config.timezone,
            thresholds=config.throttle_thresholds,
        )
    assert deps.redis is not None  # workers always build a Redis client
    REGISTRY.register(
        StateCollector(
            redis=deps.redis,
            session_factory=deps.session_factory,
            queue_keys=queue_keys(app),
            budget=budget,
        )
    )
    limiter = deps.limiter
    if limiter is not None:  # limits configured here, and any model cooling down after a 429
        REGISTRY.register(RateLimitCollector(lambda: (limiter.state(), limiter.cooldowns())))
    log.info("metrics_serving", port=settings.metrics_port)

"""Pausing and resuming queues: Celery consumer control, persisted in ``queue_state``.

``cancel_consumer`` alone is forgotten when a worker restarts, so every pause is stored and a
starting worker drops paused queues before its consumer starts (the signal handlers in
``workers/lifecycle.py``). Messages stay in Redis while a queue is paused.
"""

from __future__ import annotations

import structlog

from db.models import QueueState
from pipeline.budget import store as budget_db
from pipeline.budget.throttle import PAUSE_QUEUES, PAUSED_AT_LEVEL
from pipeline.deps import Deps
from workers.app import app
from workers.queues import ALL_QUEUES

log = structlog.get_logger(__name__)
WORKERS_KEY = "leadpipe:workers:queues"  # hostname -> the queues it was started with


def queue_states(deps: Deps) -> dict[str, QueueState]:
    """Every stored queue state by queue name."""
    with deps.session_scope() as session:
        return budget_db.queue_states(session)


def _store(deps: Deps, queue: str, *, paused: bool, reason: str | None, by: str) -> None:
    with deps.session_scope() as session:
        budget_db.save_queue_state(session, queue, paused=paused, reason=reason, by=by)


def pause(deps: Deps, queue: str, *, reason: str, by: str) -> None:
    """Stop every worker consuming ``queue`` (persisted; survives restarts)."""
    if queue not in ALL_QUEUES:
        raise ValueError(f"unknown queue {queue!r}; known: {', '.join(ALL_QUEUES)}")
    _store(deps, queue, paused=True, reason=reason, by=by)
    app.control.cancel_consumer(queue, reply=False)
    log.warning("queue_paused", queue=queue, reason=reason, by=by)


def resume(deps: Deps, queue: str, *, by: str) -> None:
    """Let the workers started with ``queue`` consume it again."""
    if queue not in ALL_QUEUES:
        raise ValueError(f"unknown queue {queue!r}; known: {', '.join(ALL_QUEUES)}")
    _store(deps, queue, paused=False, reason=None, by=by)
    hosts = _hosts_for(deps, queue)
    if hosts:
        app.control.add_consumer(queue, destination=hosts, reply=False)
    log.warning("queue_resumed", queue=queue, by=by, workers=hosts)


def _hosts_for(deps: Deps, queue: str) -> list[str]:
    if deps.redis is None:
        return []
    raw = deps.redis.hgetall(WORKERS_KEY)
    text = {_text(h): _text(qs) for h, qs in raw.items()}
    return [host for host, qs in text.items() if queue in qs.split(",")]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def budget_level_hook(deps: Deps, old: int, new: int, reason: str) -> None:
    """Throttle level 5 pauses ``analyze`` and ``demo`` (resumed by ops or on rollover)."""
    if new >= PAUSED_AT_LEVEL > old:
        for queue in PAUSE_QUEUES:
            pause(deps, queue, reason=f"throttle level 5: {reason}", by="budget")

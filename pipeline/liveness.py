"""Who is alive, who owns a stage, and which infrastructure errors are only a blip.

A worker process has one id (host, pid, random suffix). It writes a heartbeat key in Redis every
few seconds with a short TTL; a stage row it claims stores ``owner`` = ``<worker id>/<task id>``.
When the heartbeat is gone the worker is gone (kill -9, OOM, lost host), so its leases and budget
reservations can be taken over at once instead of after a fixed lease or the broker's visibility
timeout. The current task's owner string travels in a context variable (one per thread), so the
stages need no extra argument and ``release`` only ever touches the caller's own lease.
"""

from __future__ import annotations

import contextvars
import json
import os
import socket
import uuid
from typing import TYPE_CHECKING

import redis.exceptions
from sqlalchemy import exc as sa_exc

from pipeline.errors import TransientError

if TYPE_CHECKING:
    from redis import Redis

HEARTBEAT_PREFIX = "leadpipe:hb:"
"""``leadpipe:hb:<worker id>``: JSON ``{"tags": [...], "owners": [...]}`` with a TTL: the
delivery tags that worker holds and the owner strings of the executions running in it."""

RUNNING: set[str] = set()
"""Owner strings of the task executions running in this process (published by the heartbeat)."""

PARKED_PREFIX = "parked: "
"""Starts the ``error`` of a lead waiting out an outage (it stays running; ``leadpipe retry``)."""

OWNER: contextvars.ContextVar[str | None] = contextvars.ContextVar("leadpipe_owner", default=None)
"""``<worker id>/<task id>`` of the task running in this thread (None outside a task)."""

_WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

_INFRA_TRANSIENT: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,  # connection refused or reset, server restart, serialisation failure
    sa_exc.InterfaceError,  # connection already closed
    sa_exc.TimeoutError,  # connection pool exhausted while the server was away
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (AOF being replayed)
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    ConnectionError,  # kombu/amqp publish errors wrap socket errors as OSError subclasses
)


def worker_id() -> str:
    """This process's id (a fresh one after fork: the pid is part of it)."""
    global _WORKER_ID
    if f":{os.getpid()}:" not in _WORKER_ID:
        _WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    return _WORKER_ID


def owner_worker(owner: str) -> str:
    """The worker id part of an owner string (``<worker id>/<task id>``)."""
    return owner.partition("/")[0]


def heartbeat_key(worker: str) -> str:
    return f"{HEARTBEAT_PREFIX}{worker}"


def is_running(client: Redis, owner: str) -> bool:
    """True while the execution ``owner`` still runs in a live worker.

    A worker that died stops its heartbeat; an execution that ended (even one whose lease
    release failed because the database was away) leaves the worker's published set.
    """
    worker = owner_worker(owner)
    if worker == worker_id():
        return owner in RUNNING
    raw = client.get(heartbeat_key(worker))
    if raw is None:
        return False
    published = json.loads(raw)
    return isinstance(published, dict) and owner in published.get("owners", ())


def is_transient(exc: BaseException) -> bool:
    """Errors that may go away on their own: never a reason to fail a lead.

    Besides our own ``TransientError``: database connection and serialisation errors, including
    a ``DBAPIError`` whose connection was invalidated, and Redis connection/timeout/loading errors.
    """
    if isinstance(exc, (TransientError, *_INFRA_TRANSIENT)):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return _is_serialization_failure(exc)


def _is_serialization_failure(exc: BaseException) -> bool:
    """PostgreSQL 40001 (serialization_failure) and 40P01 (deadlock_detected)."""
    orig = getattr(exc, "orig", None)
    return getattr(orig, "sqlstate", None) in {"40001", "40P01"}

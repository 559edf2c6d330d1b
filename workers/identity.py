"""Deployment identity on every task message (issue 13): no worker runs another database's lead.

Lead ids are only unique inside one database. A message is stamped with the publishing
process's deployment id (``before_task_publish``); a worker whose database has another id
acknowledges the message without running it and says so. Workers also announce their id in
Redis, so ``leadpipe enqueue`` can refuse to queue leads from a database the workers do not use.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import redis
import structlog
from celery.exceptions import Ignore
from celery.signals import before_task_publish, celeryd_after_setup, heartbeat_sent

from db.identity import read_deployment_id
from db.session import make_engine, make_session_factory
from pipeline.settings import get_settings

HEADER = "leadpipe_deployment"
REDIS_KEY = "leadpipe:deployment"
"""The id of the database the running workers use (refreshed by their heartbeat)."""
ANNOUNCE_TTL_S = 30
log = structlog.get_logger(__name__)
_known: dict[str, str] = {}


def local_deployment_id() -> str | None:
    """The id of this process's database (cached once found; None before any migration)."""
    url = get_settings().resolved_database_url()
    if url not in _known:
        found = _read(url)
        if found is None:
            return None
        _known[url] = found
    return _known[url]


def _read(url: str) -> str | None:
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return None  # connecting would create an empty database file
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            return read_deployment_id(session)
    finally:
        engine.dispose()


@before_task_publish.connect
def _stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    ours = local_deployment_id()
    if headers is not None and ours is not None:
        headers.setdefault(HEADER, ours)


def refuse_foreign(request: Any, task: str) -> None:
    """Raise ``Ignore`` (ack, do not run) for a message stamped by another deployment."""
    theirs = getattr(request, HEADER, None) or (getattr(request, "headers", None) or {}).get(HEADER)
    ours = local_deployment_id()
    if theirs is None or ours is None or theirs == ours:
        return
    log.error(
        "task_refused_foreign_deployment",
        task=task,
        message_deployment=theirs,
        worker_deployment=ours,
        kwargs=getattr(request, "kwargs", None),
        hint="this message was queued from another database; it was acknowledged, not run",
    )
    raise Ignore()


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().resolved_redis_url(), socket_timeout=2)


def announce() -> None:
    """Publish this worker's deployment id in Redis (a key with a short TTL)."""
    ours = local_deployment_id()
    if ours is None:
        return
    try:
        previous = _redis().set(REDIS_KEY, ours, ex=ANNOUNCE_TTL_S, get=True)
    except redis.RedisError:
        return
    if isinstance(previous, bytes) and previous.decode() != ours:
        log.error(
            "redis_shared_by_two_deployments",
            previous=previous.decode(),
            ours=ours,
            hint="two databases share this Redis; give each its own LEADPIPE_REDIS_URL",
        )


@celeryd_after_setup.connect
def _announce_at_start(**_: Any) -> None:
    announce()


@heartbeat_sent.connect
def _announce_on_heartbeat(**_: Any) -> None:
    announce()


def workers_deployment_id(client: redis.Redis) -> str | None:
    """The deployment id the running workers announced, or None when none is running."""
    value = client.get(REDIS_KEY)
    return value.decode() if isinstance(value, bytes) else None

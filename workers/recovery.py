"""Heartbeats and the recovery loop: a dead worker's work is taken back within about a minute.

Every worker process runs one daemon thread. Every ``heartbeat_interval_s`` it writes
``leadpipe:hb:<worker id>`` (TTL ``heartbeat_ttl_s``) holding the delivery tags of every message
it holds (running, waiting for a slot, or waiting for a retry countdown). Then, under a short Redis
lock so only one worker does it at a time, it:

- puts back on its queue every unacknowledged message older than the TTL that no live worker
  holds (kombu would only do so after the visibility timeout, an hour by default);
- drops the budget reservations of dead workers (their id prefixes the reservation id);
- every ``lost_chain_after_s / 2``: re-sends the chain of every unfinished lead idle that long
  with no message anywhere in the broker (Redis restarted empty or FLUSHALL'd, a crash between a
  batch commit and its dispatch). A lead waiting in a backlog has a message, so it is left alone.

The stage leases of the dead worker need no action: ``claim`` treats a lease whose owner has no
heartbeat as free, so the restored message runs its stage at once.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import structlog
from celery.signals import worker_ready
from celery.worker import state as worker_state

from pipeline.liveness import RUNNING, heartbeat_key, is_transient, owner_worker, worker_id
from pipeline.settings import get_settings
from workers.app import app
from workers.lifecycle import process_deps
from workers.ops import redispatch_stalled

log = structlog.get_logger(__name__)
LOCK_KEY = "leadpipe:recovery:lock"
SWEEP_LOCK_KEY = "leadpipe:recovery:sweep"
_started = threading.Event()


def held_tags() -> list[str]:
    """Delivery tags of every message this process holds (reserved, active or scheduled)."""
    for _ in range(5):
        try:
            requests = [
                *list(worker_state.reserved_requests),
                *list(worker_state.active_requests),
                *list(getattr(worker_state, "scheduled_requests", ())),
                *list(worker_state.requests.values()),
            ]
        except RuntimeError:  # a set changed size while another thread added a request
            continue
        # Request.delivery_info leaves the tag out; the kombu message carries it.
        tags = {str(getattr(r.message, "delivery_tag", None)) for r in requests}
        return sorted(tags - {"None"})
    return []


def beat_once(client: Any, ttl_s: int) -> None:
    """Publish this worker's heartbeat and the tags it holds."""
    published = {"tags": held_tags(), "owners": sorted(RUNNING)}
    client.set(heartbeat_key(worker_id()), json.dumps(published), ex=ttl_s)


def alive_tags(client: Any) -> tuple[set[str], set[str]]:
    """(ids of live workers, every delivery tag they hold)."""
    workers, tags = set(), set()
    for key in client.scan_iter(match=heartbeat_key("*"), count=500):
        raw = client.get(key)
        if raw is None:
            continue
        name = key.decode() if isinstance(key, bytes) else key
        workers.add(name.removeprefix(heartbeat_key("")))
        tags.update(json.loads(raw).get("tags", ()))
    return workers, tags


def restore_orphans(client: Any, older_than_s: int) -> int:
    """Requeue unacknowledged messages older than ``older_than_s`` held by no live worker."""
    _, held = alive_tags(client)
    ceiling = time.time() - older_than_s
    restored = 0
    with app.connection_for_write() as conn:
        channel: Any = conn.default_channel
        qos = channel.qos
        for raw in client.zrangebyscore(qos.unacked_index_key, 0, ceiling):
            tag = raw.decode() if isinstance(raw, bytes) else raw
            if tag not in held:
                qos.restore_by_tag(tag, leftmost=True)
                restored += 1
    if restored:
        log.warning("orphaned_messages_restored", count=restored)
    return restored


def release_dead_reservations(client: Any, older_than_s: int) -> int:
    """Drop budget reservations whose worker is dead (its id prefixes the reservation id)."""
    store = _store()
    if store is None:
        return 0
    live, _ = alive_tags(client)
    now = time.time()
    dropped = 0
    for field, value in client.hgetall(store.resv_key).items():
        rid = field.decode() if isinstance(field, bytes) else field
        _amount, ts, keys = (value.decode() if isinstance(value, bytes) else value).split("|", 2)
        if "/" not in rid or owner_worker(rid) in live or now - int(ts) < older_than_s:
            continue
        if store.release(rid, [k for k in keys.split(",") if k]):
            dropped += 1
    if dropped:
        log.warning("dead_reservations_released", count=dropped)
    return dropped


def _store() -> Any:
    budget = process_deps().budget
    return getattr(budget, "store", None)


def recover_once(client: Any, ttl_s: int, lost_after_s: int) -> None:
    """One recovery pass, by one worker at a time (the locks expire on their own)."""
    if client.set(LOCK_KEY, worker_id(), nx=True, ex=ttl_s):
        restore_orphans(client, ttl_s)
        release_dead_reservations(client, ttl_s)
    if client.set(SWEEP_LOCK_KEY, worker_id(), nx=True, ex=lost_after_s // 2):
        redispatch_stalled(lost_after_s)


def _loop(interval_s: int, ttl_s: int, lost_after_s: int) -> None:
    while True:
        try:
            client = process_deps().redis
            if client is not None:
                beat_once(client, ttl_s)
                recover_once(client, max(interval_s, ttl_s), lost_after_s)
        except Exception as exc:  # a Redis or DB blip: the next beat tries again
            if not is_transient(exc):
                log.exception("recovery_loop_error")
        time.sleep(interval_s)


def start_heartbeat() -> None:
    """Start this process's heartbeat and recovery thread (once)."""
    if _started.is_set():
        return
    _started.set()
    settings = get_settings()
    thread = threading.Thread(
        target=_loop,
        args=(
            settings.heartbeat_interval_s,
            settings.heartbeat_ttl_s,
            settings.lost_chain_after_s,
        ),
        name="leadpipe-heartbeat",
        daemon=True,
    )
    thread.start()


@worker_ready.connect
def _start_on_ready(**_: Any) -> None:
    start_heartbeat()

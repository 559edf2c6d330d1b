"""Process resources (engine, Redis, HTTP clients), built once per process after fork (R7)."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
import structlog
from celery.signals import celeryd_after_setup, worker_process_shutdown, worker_ready
from sqlalchemy.orm import Session, sessionmaker

from db.session import make_engine, make_session_factory
from pipeline import metrics
from pipeline.batch.config import load_batch_policy
from pipeline.batch.planner import Plan
from pipeline.budget.guard import BudgetConfig, BudgetGuard
from pipeline.budget.reservations import ReservationStore
from pipeline.budget.throttle import ttl_multiplier
from pipeline.deps import Deps, RoutingPolicy
from pipeline.llm.breaker import CircuitBreaker
from pipeline.llm.cache import ResponseCache
from pipeline.llm.providers import build_providers, make_http_client
from pipeline.llm.providers.batch_api import RedisIdStore, build_batch_backends
from pipeline.llm.ratelimit import RateLimiter
from pipeline.llm.routing import load_routing_table
from pipeline.logs import configure_logging
from pipeline.settings import Settings, get_settings
from pipeline.web.fetch import WebPolicy, make_site_client
from workers.app import app
from workers.control import WORKERS_KEY, budget_level_hook, queue_states
from workers.queues import Queue

log = structlog.get_logger(__name__)
_lock = threading.Lock()
_deps: dict[int, Deps] = {}


def build_deps(settings: Settings) -> Deps:
    """Real clients for one process."""
    routing = load_routing_table(settings.routing_table)
    # One pooled connection per worker thread (and a few for the heartbeat and recovery loops).
    threads = max(settings.worker_concurrency, int(app.conf.worker_concurrency or 0))
    engine = make_engine(settings.resolved_database_url(), pool_size=threads + 4)
    http = make_http_client()
    # Named, so CLIENT LIST (and bench/pipeline.py's counter) tells it from the broker's.
    client = redis.Redis.from_url(settings.resolved_redis_url(), client_name="leadpipe")
    factory = make_session_factory(engine)
    guard = _budget_guard(settings, client, factory)
    return Deps(
        session_factory=factory,
        providers=build_providers(
            settings.providers, simulator_url=settings.simulator_url, http=http
        ),
        routing=routing,
        web_policy=WebPolicy.from_settings(settings.web),
        web_client=make_site_client(),
        redis=client,
        demo_tiers=frozenset(settings.demo_tiers),
        policy=RoutingPolicy(
            spend_cap_ratio=settings.spend_cap_ratio,
            ab_testing=settings.ab_testing,
            sender_name=settings.sender_name,
            sender_company=settings.sender_company,
            sender_website=settings.sender_website,
        ),
        breaker=CircuitBreaker(client),
        limiter=RateLimiter(client, routing.limits, observe=metrics.observe_rate_limit),
        budget=guard,
        stage_lease_s=settings.stage_lease_s,
        heartbeat_grace_s=settings.heartbeat_ttl_s,
        cache=ResponseCache(client, lambda: ttl_multiplier(guard.status().throttle_level)),
        batch=load_batch_policy(settings.routing_table, routing.catalog.knows),
        batch_apis=dict(
            build_batch_backends(
                settings.providers,
                simulator_url=settings.simulator_url,
                http=http,
                catalog=routing.catalog,
                price_factor=settings.provider_batch.price_factor,
                ids=RedisIdStore(client),
            )
        ),
        batch_plan=Plan.of_seconds(
            settings.provider_batch.turnaround_s, settings.provider_batch.margin_s
        ),
    )


def _budget_guard(
    settings: Settings, client: redis.Redis, factory: sessionmaker[Session]
) -> BudgetGuard:
    def on_level(old: int, new: int, reason: str) -> None:
        budget_level_hook(process_deps(), old, new, reason)

    def notify(payload: dict[str, Any]) -> None:  # ``ops.budget_webhook`` in workers/ops.py
        app.send_task("ops.budget_webhook", args=[payload], queue=Queue.OPS)

    config = BudgetConfig.from_settings(settings.budget)
    store = ReservationStore(client)
    return BudgetGuard(store, factory, config, on_level=on_level, notify=notify)


def budget_webhook_url() -> str | None:
    """The alert webhook URL (a secret), read where it is used."""
    url = get_settings().budget.webhook_url
    return url.get_secret_value() if url is not None else None


def process_deps() -> Deps:
    """This process's ``Deps``, built on first use (works for prefork and threads pools)."""
    pid = os.getpid()
    deps = _deps.get(pid)
    if deps is None:
        with _lock:
            deps = _deps.get(pid)
            if deps is None:
                settings = get_settings()
                configure_logging(json_lines=settings.log_json)
                deps = _deps[pid] = build_deps(settings)
    return deps


@worker_process_shutdown.connect
def _dispose(**_: Any) -> None:
    deps = _deps.pop(os.getpid(), None)
    if deps is not None and deps.redis is not None:
        deps.redis.close()


def sweep_after_s() -> int:
    """Idle seconds after which the sweep re-dispatches a lead (from settings)."""
    return get_settings().sweep_after_s


@celeryd_after_setup.connect
def _drop_paused_queues(sender: str, instance: Any, **_: Any) -> None:
    deps = process_deps()
    selected = list(instance.app.amqp.queues.keys())
    if deps.redis is not None:
        deps.redis.hset(WORKERS_KEY, sender, ",".join(selected))
    for name, row in queue_states(deps).items():
        if row.paused and name in selected and len(instance.app.amqp.queues) > 1:
            instance.app.amqp.queues.deselect(name)
            log.warning("queue_kept_paused", queue=name, worker=sender, reason=row.reason)


@worker_ready.connect
def _cancel_paused_queues(sender: Any, **_: Any) -> None:
    for name, row in queue_states(process_deps()).items():
        if row.paused and sender.task_consumer.consuming_from(name):
            sender.cancel_task_queue(name)

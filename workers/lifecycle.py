"""Process resources (engine, Redis, HTTP clients), built once per process after fork (R7)."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from celery.signals import worker_process_shutdown
from sqlalchemy.orm import Session, sessionmaker

from db.reservations import ReservationStore
from db.session import make_engine, make_session_factory
from pipeline.breaker import CircuitBreaker
from pipeline.budget import BudgetConfig, BudgetGuard
from pipeline.cache import ResponseCache
from pipeline.deps import Deps, RoutingPolicy
from pipeline.logs import configure_logging
from pipeline.providers import build_providers, make_http_client
from pipeline.routing import load_routing_table
from pipeline.settings import Settings, get_settings
from pipeline.throttle import ttl_multiplier
from pipeline.web import WebPolicy
from workers.embedded import redis_url_for

_lock = threading.Lock()
_deps: dict[int, Deps] = {}


def build_deps(settings: Settings) -> Deps:
    """Real clients for one process."""
    routing = load_routing_table(settings.routing_table)
    engine = make_engine(settings.resolved_database_url())
    http = make_http_client()
    web = settings.web
    client = redis.Redis.from_url(redis_url_for(settings))
    factory = make_session_factory(engine)
    guard = _budget_guard(settings, client, factory)
    return Deps(
        session_factory=factory,
        providers=build_providers(
            settings.providers, simulator_url=settings.simulator_url, http=http
        ),
        routing=routing,
        web_policy=WebPolicy(
            allow_hosts=frozenset(web.allow_hosts),
            mirror_url=web.mirror_url,
            timeout_s=web.timeout_s,
            max_bytes=web.max_bytes,
            max_redirects=web.max_redirects,
            max_text_chars=web.max_text_chars,
        ),
        redis=client,
        demo_tiers=frozenset(settings.demo_tiers),
        policy=RoutingPolicy(
            spend_cap_ratio=settings.spend_cap_ratio,
            ab_testing=settings.ab_testing,
            sender_name=settings.sender_name,
            sender_company=settings.sender_company,
        ),
        breaker=CircuitBreaker(client),
        budget=guard,
        stage_lease_s=settings.stage_lease_s,
        cache=ResponseCache(client, lambda: ttl_multiplier(guard.status().throttle_level)),
    )


def _budget_guard(
    settings: Settings, client: redis.Redis, factory: sessionmaker[Session]
) -> BudgetGuard:
    from workers.control import budget_level_hook  # imports this module: bind late

    def notify(payload: dict[str, Any]) -> None:
        from workers.ops import send_budget_alert

        send_budget_alert.delay(payload)

    config = BudgetConfig.from_settings(settings.budget)
    store = ReservationStore(client)
    return BudgetGuard(store, factory, config, on_level=budget_level_hook, notify=notify)


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

"""Process resources (engine, Redis, HTTP clients), built once per process after fork (R7)."""

from __future__ import annotations

import os
import threading
from typing import Any

import redis
from celery.signals import worker_process_shutdown

from db.session import make_engine, make_session_factory
from pipeline.deps import Deps
from pipeline.logs import configure_logging
from pipeline.providers import build_providers, make_http_client
from pipeline.routing import load_routing_table
from pipeline.settings import Settings, get_settings
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
    return Deps(
        session_factory=make_session_factory(engine),
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
        redis=redis.Redis.from_url(redis_url_for(settings)),
        demo_tiers=frozenset(settings.demo_tiers),
    )


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

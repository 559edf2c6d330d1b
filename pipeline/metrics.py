"""Prometheus metrics: per-call counters fed by the gateway, state gauges read at scrape time.

Counters and the latency histogram live in this process (the gateway calls
:func:`observe_call` once per ledger row). Queue depth, paused queues, budget use and the throttle
level are shared state, so :class:`StateCollector` reads them from Redis and the database when
Prometheus scrapes, never from a copy that could be stale. ``workers/metrics_server.py`` serves
the registry from each worker's main process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus
from db.models import LLMCall
from pipeline.budget import store as budget_db
from pipeline.budget.throttle import Period, throttle_level, window

if TYPE_CHECKING:
    from redis import Redis

    from pipeline.budget.guard import BudgetGuard

log = structlog.get_logger(__name__)

BudgetReading = Callable[[], tuple[dict[str, Decimal], int]]
"""Returns (used ratio per period, throttle level) for the global budget."""

LLM_CALLS = Counter(
    "leadpipe_llm_calls",
    "Model call attempts (one per ledger row).",
    ["stage", "model", "provider", "status"],
)
LLM_TOKENS = Counter("leadpipe_llm_tokens", "Billed tokens.", ["stage", "model", "direction"])
LLM_COST = Counter("leadpipe_llm_cost_usd", "Billed cost in USD.", ["stage", "model"])
LLM_LATENCY = Histogram(
    "leadpipe_llm_latency_seconds",
    "Wall time of one model call attempt.",
    ["stage", "model"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
)
CACHE_HITS = Counter("leadpipe_cache_hits", "Calls answered from the response cache.", ["stage"])
FALLBACKS = Counter(
    "leadpipe_fallbacks", "Call attempts on a fallback model (the primary had failed).", ["stage"]
)
RATE_LIMITED = Counter(
    "leadpipe_rate_limited",
    "Calls held back by a shared rate limit: waited for a slot, deferred, or answered 429.",
    ["model", "outcome"],
)
RATE_LIMIT_WAIT = Histogram(
    "leadpipe_rate_limit_wait_seconds",
    "Time a call slept for its rate-limit slot.",
    ["model"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


_OBSERVED = (
    "stage",
    "model",
    "provider",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
    "cache_hit",
    "fallback_from",
)
_KNOWN_STATUS = frozenset(s.value for s in CallStatus)
_Children = tuple[Any, Any, Any, Any, Any]
_children: dict[tuple[str, str, str, str], _Children] = {}
"""Labelled children per (stage, model, provider, status): ``labels()`` validates and locks on
every call; the children themselves never change (as many as the label sets seen)."""


def observe_call(row: LLMCall | Mapping[str, Any]) -> None:
    """Count one ledger row (an ORM row, or the gateway's column dict): call, tokens, cost,
    latency, cache hit, fallback."""
    values = row if isinstance(row, Mapping) else {name: getattr(row, name) for name in _OBSERVED}
    stage, model = values["stage"], values["model"]
    raw_status = values["status"]
    status = str(raw_status) if raw_status in _KNOWN_STATUS else CallStatus.ERROR.value
    key = (stage, model, values["provider"], status)
    children = _children.get(key)
    if children is None:
        children = (
            LLM_CALLS.labels(*key),
            LLM_TOKENS.labels(stage, model, "input"),
            LLM_TOKENS.labels(stage, model, "output"),
            LLM_COST.labels(stage, model),
            LLM_LATENCY.labels(stage, model),
        )
        _children[key] = children
    calls, tokens_in, tokens_out, cost, latency = children
    calls.inc()
    tokens_in.inc(values["prompt_tokens"])
    tokens_out.inc(values["completion_tokens"])
    cost.inc(float(values["cost_usd"]))
    latency.observe(values["latency_ms"] / 1000)
    if values["cache_hit"]:
        CACHE_HITS.labels(stage).inc()
    if values["fallback_from"]:
        FALLBACKS.labels(stage).inc()


def observe_rate_limit(model: str, outcome: str, waited_s: float = 0.0) -> None:
    """Count a call the rate limiter held back (``waited``, ``deferred``, ``429``)."""
    RATE_LIMITED.labels(model, outcome).inc()
    if outcome == "waited":
        RATE_LIMIT_WAIT.labels(model).observe(waited_s)


def queue_depths(redis: Redis, queue_keys: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Messages waiting per queue: the sum of ``LLEN`` over the queue's Redis lists.

    Args:
        redis: the broker's Redis.
        queue_keys: queue name -> its Redis list keys (one per priority level on Redis).
    """
    pipe = redis.pipeline(transaction=False)
    for keys in queue_keys.values():
        for key in keys:
            pipe.llen(key)
    lengths = iter(pipe.execute())
    return {queue: sum(int(next(lengths)) for _ in keys) for queue, keys in queue_keys.items()}


def ledger_budget_ratios(
    session: Session, *, limits: Mapping[str, Decimal], timezone: str, now: dt.datetime
) -> dict[str, Decimal]:
    """Global spend / limit per current calendar period, from the ``llm_calls`` ledger.

    Limits stored with ``leadpipe budget set`` win over ``limits`` (the settings' defaults).
    """
    stored = {period: v for (camp, period), v in budget_db.load_limits(session).items() if not camp}
    ratios = {}
    for period in Period:
        limit = stored.get(period.value, limits.get(period.value))
        if limit is None or limit <= 0:
            continue
        spent = budget_db.ledger_spent(session, window(period, now, timezone))
        ratios[period.value] = spent / limit
    return ratios


def guard_reading(guard: BudgetGuard) -> BudgetReading:
    """Budget use as the budget guard sees it (Redis counters, reservations settled)."""

    def read() -> tuple[dict[str, Decimal], int]:
        status = guard.status()
        ratios = {p.window.period.value: p.pct for p in status.periods if p.scope == "global"}
        return ratios, status.throttle_level

    return read


def ledger_reading(
    factory: sessionmaker[Session],
    *,
    limits: Mapping[str, Decimal],
    timezone: str,
    thresholds: Sequence[Decimal],
) -> BudgetReading:
    """Budget use from the ledger, for processes that run without a budget guard."""

    def read() -> tuple[dict[str, Decimal], int]:
        with factory() as session:
            ratios = ledger_budget_ratios(
                session, limits=limits, timezone=timezone, now=dt.datetime.now(dt.UTC)
            )
        return ratios, throttle_level(max(ratios.values(), default=Decimal(0)), thresholds)

    return read


class StateCollector(Collector):
    """Gauges read at scrape time: queue depth, paused queues, budget use, throttle level."""

    def __init__(
        self,
        *,
        redis: Redis,
        session_factory: sessionmaker[Session],
        queue_keys: Mapping[str, Sequence[str]],
        budget: BudgetReading,
    ) -> None:
        self._redis = redis
        self._factory = session_factory
        self._queue_keys = queue_keys
        self._budget = budget

    def collect(self) -> Iterator[Metric]:
        """One family per state; a family whose source is unreachable is left out."""
        depth = GaugeMetricFamily(
            "leadpipe_queue_depth", "Messages waiting in the queue.", labels=["queue"]
        )
        paused = GaugeMetricFamily(
            "leadpipe_queue_paused", "1 when the queue is paused (queue_state).", labels=["queue"]
        )
        try:
            for queue, n in queue_depths(self._redis, self._queue_keys).items():
                depth.add_metric([queue], n)
            yield depth
        except RedisError as exc:
            log.warning("metrics_queue_depth_failed", error=str(exc))
        try:
            with self._factory() as session:
                state = budget_db.queue_paused_flags(session)
            for queue in self._queue_keys:
                paused.add_metric([queue], 1 if state.get(queue) else 0)
            yield paused
        except SQLAlchemyError as exc:
            log.warning("metrics_paused_queues_failed", error=str(exc))
        yield from self._budget_families()

    def _budget_families(self) -> Iterator[Metric]:
        try:
            ratios, level = self._budget()
        except (RedisError, SQLAlchemyError) as exc:
            log.warning("metrics_budget_failed", error=str(exc))
            return
        used = GaugeMetricFamily(
            "leadpipe_budget_used_ratio",
            "Global spend / limit in the current calendar period (1.0 = limit reached).",
            labels=["period"],
        )
        for period, ratio in sorted(ratios.items()):
            used.add_metric([period], float(ratio))
        yield used
        yield GaugeMetricFamily(
            "leadpipe_throttle_level", "Budget throttle level 0..5.", value=level
        )


RateLimitReading = Callable[[], tuple[list[dict[str, Any]], dict[str, float]]]
"""Returns (one row per limited scope, model -> seconds of 429 cooldown left); see
``pipeline.llm.ratelimit.RateLimiter.state`` and ``cooldowns``."""


class RateLimitCollector(Collector):
    """Shared rate limits read from Redis at scrape time: the configured limits and their state."""

    def __init__(self, read: RateLimitReading) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        try:
            rows, cooldowns = self._read()
        except RedisError as exc:
            log.warning("metrics_rate_limits_failed", error=str(exc))
            return
        limit = GaugeMetricFamily(
            "leadpipe_rate_limit",
            "Configured shared rate limit (requests_per_min, tokens_per_min, max_concurrent).",
            labels=["scope", "kind"],
        )
        state = {
            "next_free_s": GaugeMetricFamily(
                "leadpipe_rate_limit_next_free_seconds",
                "Seconds until the scope lets one more request through (0: now).",
                labels=["scope"],
            ),
            "tokens_free": GaugeMetricFamily(
                "leadpipe_rate_limit_tokens_free",
                "Tokens a call may take now under the scope's tokens_per_min.",
                labels=["scope"],
            ),
            "in_flight": GaugeMetricFamily(
                "leadpipe_rate_limit_in_flight",
                "Calls in flight under the scope's max_concurrent.",
                labels=["scope"],
            ),
        }
        for row in rows:
            for kind in ("requests_per_min", "tokens_per_min", "max_concurrent"):
                if row.get(kind) is not None:
                    limit.add_metric([row["scope"], kind], float(row[kind]))
            for key, family in state.items():
                if row.get(key) is not None:
                    family.add_metric([row["scope"]], float(row[key]))
        yield limit
        yield from state.values()
        cool = GaugeMetricFamily(
            "leadpipe_rate_limit_cooldown_seconds",
            "Seconds a model is still held back after a 429 (every worker waits them out).",
            labels=["model"],
        )
        for model, seconds in sorted(cooldowns.items()):
            cool.add_metric([model], seconds)
        yield cool

"""Issue 14: the shared rate limiter against real Redis (several clients = several processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from importlib.resources import files
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import Stage
from db.models import LLMCall
from pipeline.budget.guard import BudgetConfig, BudgetGuard
from pipeline.budget.reservations import ReservationStore
from pipeline.deps import Deps
from pipeline.errors import RateLimited
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.prompts import render
from pipeline.llm.ratelimit import Limit, RateLimiter, RateLimits, cooldown_key
from pipeline.llm.routing import load_routing_table

pytestmark = pytest.mark.integration
MINI = "openai:gpt-4o-mini"
GPT4O = "openai:gpt-4o"


def _limiter(client: redis.Redis, max_wait_s: float = 5.0, **kw: object) -> RateLimiter:
    models = {MINI: Limit(**kw)} if kw else {}  # type: ignore[arg-type]
    return RateLimiter(client, RateLimits(models=models, max_wait_s=max_wait_s))


def test_calls_from_many_clients_are_spaced_and_never_pass_the_limit(
    redis_client: redis.Redis, redis_url: str
) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(4)]  # four "processes"
    limiters = [_limiter(c, requests_per_min=1200) for c in clients]  # one call per 50 ms
    sent: list[float] = []
    lock = threading.Lock()

    def worker(limiter: RateLimiter) -> None:
        for _ in range(5):
            limiter.admit(MINI, 100)
            with lock:
                sent.append(time.monotonic())

    threads = [threading.Thread(target=worker, args=(limiters[i % 4],)) for i in range(8)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    sent.sort()
    assert len(sent) == 40
    # 40 calls at 20/s take at least 39 intervals, and the limiter keeps close to that pace.
    assert 39 * 0.05 * 0.95 <= elapsed <= 39 * 0.05 + 1.5
    # No 1-second window holds more than the 20 the limit allows (one more for sleep jitter).
    worst = max(sum(1 for s in sent if t0 <= s < t0 + 1.0) for t0 in sent)
    assert worst <= 21, worst
    for c in clients:
        c.close()


def test_one_redis_step_per_call_and_none_for_an_unlimited_model(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter = _limiter(redis_client, requests_per_min=6000, tokens_per_min=10**6)
    limiter.admit(MINI, 10)  # loads the script (NOSCRIPT -> EVAL once)
    sent: list[str] = []
    real = redis_client.execute_command

    def counting(*args: object, **kwargs: object) -> object:
        sent.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(redis_client, "execute_command", counting)
    for _ in range(5):
        assert limiter.admit(MINI, 10) is not None
    assert limiter.admit(GPT4O, 10) is None  # not limited: not even a Redis step
    assert sent == ["EVALSHA"] * 5


def test_over_the_limit_a_call_is_deferred_with_a_countdown(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client, max_wait_s=0.0, requests_per_min=60)  # one per second
    assert limiter.admit(MINI, 1) is not None
    with pytest.raises(RateLimited) as info:
        limiter.admit(MINI, 1)
    assert info.value.scope == f"model:{MINI} req/min"
    assert 0.5 < info.value.retry_after_s <= 1.01  # one per second, plus 1 % headroom
    time.sleep(info.value.retry_after_s)
    assert limiter.admit(MINI, 1) is not None  # the refused call booked nothing
    state = {row["scope"]: row for row in limiter.state()}[f"model:{MINI}"]
    assert state["requests_per_min"] == 60 and 0.5 < state["next_free_s"] <= 1.01


def test_a_short_wait_is_slept_and_the_slot_is_booked(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client, max_wait_s=2.0, requests_per_min=60)
    limiter.admit(MINI, 1)
    started = time.monotonic()
    permit = limiter.admit(MINI, 1)
    assert permit is not None and 0.9 <= permit.waited_s <= 1.01
    assert time.monotonic() - started >= 0.9
    with pytest.raises(RateLimited):  # the next slot is about 1 s away: more than 0.5 s
        _limiter(redis_client, max_wait_s=0.5, requests_per_min=60).admit(MINI, 1)


def test_tokens_per_minute(redis_client: redis.Redis) -> None:
    limiter = _limiter(redis_client, max_wait_s=1.0, tokens_per_min=1000)
    limiter.admit(MINI, 600)
    state = {row["scope"]: row for row in limiter.state()}[f"model:{MINI}"]
    assert 390 <= state["tokens_free"] <= 410
    with pytest.raises(RateLimited, match="tok/min"):
        limiter.admit(MINI, 600)  # 200 tokens short: 12 s of refill
    limiter.admit(MINI, 300)  # fits in what is left


def test_max_concurrent_holds_leases_and_frees_a_dead_workers(
    redis_client: redis.Redis,
) -> None:
    limiter = _limiter(redis_client, max_wait_s=0.5, max_concurrent=2)
    first, second = limiter.admit(MINI, 1), limiter.admit(MINI, 1)
    started = time.monotonic()
    with pytest.raises(RateLimited, match="in flight"):
        limiter.admit(MINI, 1)
    assert time.monotonic() - started >= 0.5  # it polled for a free slot up to max_wait
    assert {r["scope"]: r for r in limiter.state()}[f"model:{MINI}"]["in_flight"] == 2
    limiter.release(first)
    assert limiter.admit(MINI, 1) is not None
    limiter.release(second)
    # A worker killed while holding a lease: the lease expires on its own.
    redis_client.flushdb()
    short = RateLimiter(
        redis_client,
        RateLimits(models={MINI: Limit(max_concurrent=1)}, max_wait_s=0.0),
        lease_s=0.3,
    )
    short.admit(MINI, 1)
    with pytest.raises(RateLimited):
        short.admit(MINI, 1)
    time.sleep(0.35)
    assert short.admit(MINI, 1) is not None


def test_a_provider_limit_is_shared_by_its_models(redis_client: redis.Redis) -> None:
    limits = RateLimits(providers={"openai": Limit(requests_per_min=60)}, max_wait_s=0.0)
    limiter = RateLimiter(redis_client, limits)
    assert limiter.admit(MINI, 1) is not None
    with pytest.raises(RateLimited, match="provider:openai"):
        limiter.admit(GPT4O, 1)
    assert limiter.admit("anthropic:claude-3-haiku-20240307", 1) is None


def test_a_429_holds_the_model_back_for_every_client(
    redis_client: redis.Redis, redis_url: str
) -> None:
    one = _limiter(redis_client, max_wait_s=0.2, requests_per_min=6000)
    other_client = redis.Redis.from_url(redis_url)
    other = _limiter(other_client, max_wait_s=0.2, requests_per_min=6000)
    assert one.penalize(MINI, 1.5) == pytest.approx(1.5, abs=0.01)
    assert one.penalize(MINI, 0.5) == pytest.approx(1.5, abs=0.05)  # the later deadline stays
    with pytest.raises(RateLimited, match="429 cooldown"):
        other.admit(MINI, 1)
    assert 1.3 < other.cooldowns()[MINI] <= 1.5
    time.sleep(1.5)
    assert other.admit(MINI, 1) is not None
    other_client.close()


def limited_table(path: Path, limits: str) -> Path:
    """The packaged routing table with ``limits`` (TOML) as its ``[rate_limits]`` section."""
    text = files("pipeline.llm").joinpath("routing.toml").read_text("utf-8")
    text = text.split("\n[rate_limits]\n")[0]
    path.write_text(f"{text}\n{limits}\n", "utf-8")
    return path


def test_queues_status_shows_limits_their_state_and_429_cooldowns(
    engine: Engine, redis_client: redis.Redis, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    table = limited_table(
        tmp_path / "routing.toml",
        "[rate_limits]\n"
        "[rate_limits.models]\n"
        "gpt4o_mini = { requests_per_min = 2, tokens_per_min = 1000 }\n"
        "[rate_limits.providers]\n"
        "vllm = { max_concurrent = 4 }\n",
    )
    limiter = RateLimiter(redis_client, load_routing_table(table).limits)
    limiter.admit(MINI, 500)
    limiter.admit("vllm:meta-llama/Llama-3.1-8B-Instruct", 10)  # a lease held
    limiter.penalize(GPT4O, 30)
    env = dict(
        os.environ,
        LEADPIPE_DATABASE_URL=db_url,
        LEADPIPE_REDIS_URL=redis_url,
        LEADPIPE_HOME=str(tmp_path / "home"),
        LEADPIPE_ROUTING_TABLE=str(table),
    )
    cli = [sys.executable, "-m", "workers.cli", "queues", "status"]
    done = subprocess.run([*cli, "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rows = {r["scope"]: r for r in doc["rate_limits"]}
    mini = rows[f"model:{MINI}"]
    assert mini["requests_per_min"] == 2 and mini["tokens_per_min"] == 1000
    assert 0 < mini["next_free_s"] <= 30.0 and 500 <= mini["tokens_free"] < 1000
    assert rows["provider:vllm"]["in_flight"] == 1 and rows["provider:vllm"]["max_concurrent"] == 4
    assert 0 < doc["rate_limit_cooldowns"][GPT4O] <= 30
    assert doc["queues"]  # the queue rows are still there
    wide = {**env, "COLUMNS": "200"}
    text = subprocess.run(cli, env=wide, capture_output=True, text=True, timeout=60).stdout
    assert "2 req/min, 1000 tok/min" in text and "1/4" in text
    assert f"{GPT4O}: held back" in text


def test_metrics_show_the_limits_their_state_and_held_back_calls(
    redis_client: redis.Redis,
) -> None:
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    from pipeline import metrics

    limits = RateLimits(
        models={MINI: Limit(requests_per_min=2, tokens_per_min=1000)},
        providers={"vllm": Limit(max_concurrent=3)},
        max_wait_s=0.0,
    )
    limiter = RateLimiter(redis_client, limits, observe=metrics.observe_rate_limit)
    before = REGISTRY.get_sample_value(
        "leadpipe_rate_limited_total", {"model": MINI, "outcome": "deferred"}
    )
    limiter.admit(MINI, 400)
    with pytest.raises(RateLimited):
        limiter.admit(MINI, 1)
    limiter.penalize(GPT4O, 20)
    after = REGISTRY.get_sample_value(
        "leadpipe_rate_limited_total", {"model": MINI, "outcome": "deferred"}
    )
    assert (after or 0) - (before or 0) == 1
    registry = CollectorRegistry()
    registry.register(metrics.RateLimitCollector(lambda: (limiter.state(), limiter.cooldowns())))
    text = generate_latest(registry).decode()
    assert f'leadpipe_rate_limit{{kind="requests_per_min",scope="model:{MINI}"}} 2.0' in text
    assert 'leadpipe_rate_limit{kind="max_concurrent",scope="provider:vllm"} 3.0' in text
    assert f'leadpipe_rate_limit_tokens_free{{scope="model:{MINI}"}} 6' in text
    assert 'leadpipe_rate_limit_in_flight{scope="provider:vllm"} 0.0' in text
    assert f'leadpipe_rate_limit_cooldown_seconds{{model="{GPT4O}"}} 19' in text or (
        f'leadpipe_rate_limit_cooldown_seconds{{model="{GPT4O}"}} 20' in text
    )


def test_a_429_holds_back_a_model_no_limit_covers_without_a_round_trip_of_its_own(
    deps: Deps, redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    """No [rate_limits] entry: the cooldown is read with the budget reservation instead."""
    big = Decimal(1000)
    deps.budget = guard = BudgetGuard(
        ReservationStore(redis_client),
        session_factory,
        BudgetConfig(limits={"daily": big, "weekly": big, "monthly": big}),
    )
    guard.reconcile()
    deps.limiter = _limiter(redis_client, max_wait_s=1.0)  # nothing limited
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    ref = chain[0].ref
    prompt = render("classify", lead={"company": "Acme Dental", "industry": "Healthcare"})
    assert deps.limiter.admit(ref, 10) is None  # no admission step for this model

    def calls() -> int:
        with session_factory() as session:
            return len(session.scalars(select(LLMCall)).all())

    deps.limiter.penalize(ref, 30.0)  # another worker's call was answered 429
    with pytest.raises(RateLimited, match=f"429 cooldown of {ref}") as info:
        call_model(deps, CallContext(Stage.CLASSIFY, None, "run-1", None), prompt, chain)
    assert 29.0 - 1.0 <= info.value.retry_after_s <= 30.0
    assert calls() == 0  # nothing was sent, to this model or down the ladder
    assert guard.status(fresh=True).periods[0].reserved_usd == 0

    redis_client.delete(cooldown_key(ref))
    deps.limiter.penalize(ref, 0.5)  # shorter than max_wait_s: slept out, then sent
    started = time.monotonic()
    result = call_model(deps, CallContext(Stage.CLASSIFY, None, "run-2", None), prompt, chain)
    assert result.route.ref == ref and time.monotonic() - started >= 0.45
    assert calls() == 1

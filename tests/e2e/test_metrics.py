"""A real worker serves /metrics, and what it reports agrees with the ledger and Redis."""

from __future__ import annotations

import csv
import socket
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus
from db.models import LLMCall, QueueState
from tests.e2e.conftest import E2EStack, leads_done, stop, wait_until
from workers.queues import ALL_QUEUES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "leads.csv"
DAILY_LIMIT = Decimal("10")
CONSUMED = ("classify", "score", "analyze", "demo", "personalize", "judge", "ops")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _three_leads(path: Path) -> Path:
    with SAMPLE.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [r for r in reader if r["Company Name"] and r["Website URL"]][:3]
        header = list(reader.fieldnames or [])
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _metrics_text(port: str) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def _scrape(port: str) -> dict[str, list[Sample]]:
    text = wait_until("the metrics endpoint", lambda: _metrics_text(port), 30)
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _total(samples: list[Sample], suffix: str = "_total", **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name.endswith(suffix) and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_worker_serves_metrics_that_match_the_ledger(
    stack: E2EStack,
    session_factory: sessionmaker[Session],
    redis_url: str,
    tmp_path: Path,
) -> None:
    # gpt-4o-mini always fails, so judge (and others) must fall back: fallbacks are counted.
    stack.configure_simulator(latency_scale=0.02, seed=11, fail_models={"gpt-4o-mini": 1.0})
    stack = stack.with_env(
        LEADPIPE_VISIBILITY_TIMEOUT_S=None,
        LEADPIPE_WORKER_CONCURRENCY="4",
        LEADPIPE_METRICS_PORT=str(_free_port()),
        LEADPIPE_BUDGET__DAILY_USD=str(DAILY_LIMIT),
        LEADPIPE_BUDGET__EMERGENCY_RESERVE_USD="0",
    )
    leads = _three_leads(tmp_path / "three.csv")
    # Not consumed by this worker: a waiting backlog (two priority lists) and a paused queue.
    broker = redis.Redis.from_url(redis_url)
    broker.lpush("batch", "m1", "m2")
    broker.lpush("batch\x06\x165", "m3")  # kombu's priority list: name, separator, step
    with session_factory() as session, session.begin():
        session.add(QueueState(queue="batch", paused=True, reason="test", changed_by="test"))
    enq = stack.cli("enqueue", str(leads), "--campaign", "metrics", "--json")
    assert enq.returncode == 0, enq.stderr
    worker = stack.worker(tmp_path / "worker.log", "-Q", ",".join(CONSUMED))
    try:
        wait_until("3 leads done", lambda: leads_done(session_factory) == 3, 120)
        with session_factory() as session:
            calls = session.scalars(select(LLMCall)).all()
        spent = sum((c.cost_usd for c in calls), Decimal(0))

        def settled() -> dict[str, list[Sample]] | None:
            # A stage settles its reservations right after its finishing commit, and the
            # budget figures are cached per process for 2 s: the gauges may trail a lead that
            # has just finished by that much, never more.
            scraped = _scrape(stack.env["LEADPIPE_METRICS_PORT"])
            daily = [
                s.value
                for s in scraped["leadpipe_budget_used_ratio"]
                if s.labels["period"] == "daily"
            ]
            return (
                scraped if daily == [pytest.approx(float(spent / DAILY_LIMIT), rel=1e-3)] else None
            )

        metrics = wait_until("the budget gauges to catch up with the ledger", settled, 15)
    finally:
        stop(worker, timeout=30)

    ok = [c for c in calls if c.status == CallStatus.OK]
    assert len(calls) > len(ok) > 0  # the failing model left error rows
    llm = metrics["leadpipe_llm_calls"]
    assert _total(llm) == len(calls)
    assert _total(llm, status="ok") == len(ok)
    assert _total(llm, stage="judge", model="gpt-4o-mini", status="error") > 0
    assert {s.labels["provider"] for s in llm} >= {"openai", "anthropic"}
    tokens = metrics["leadpipe_llm_tokens"]
    assert _total(tokens, direction="input") == sum(c.prompt_tokens for c in calls) > 0
    assert _total(tokens, direction="output") == sum(c.completion_tokens for c in calls) > 0
    assert _total(metrics["leadpipe_llm_cost_usd"]) == pytest.approx(float(spent), rel=1e-9)
    assert spent > 0
    assert _total(metrics["leadpipe_llm_latency_seconds"], suffix="_count") == len(calls)
    fallbacks = sum(1 for c in calls if c.fallback_from)
    assert _total(metrics["leadpipe_fallbacks"]) == fallbacks > 0
    assert _total(metrics["leadpipe_cache_hits"]) == sum(1 for c in calls if c.cache_hit)

    depth = {s.labels["queue"]: s.value for s in metrics["leadpipe_queue_depth"]}
    assert set(depth) == set(ALL_QUEUES)
    assert depth["batch"] == 3
    assert all(depth[q] == 0 for q in CONSUMED)
    paused = {s.labels["queue"]: s.value for s in metrics["leadpipe_queue_paused"]}
    assert paused == {q: (1.0 if q == "batch" else 0.0) for q in ALL_QUEUES}
    used = {s.labels["period"]: s.value for s in metrics["leadpipe_budget_used_ratio"]}
    assert set(used) == {"daily", "weekly", "monthly"}
    assert used["daily"] == pytest.approx(float(spent / DAILY_LIMIT), rel=1e-3)
    assert used["daily"] > used["weekly"] > used["monthly"] > 0
    assert [s.value for s in metrics["leadpipe_throttle_level"]] == [0.0]

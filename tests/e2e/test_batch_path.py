"""Issue 14: the batch path through real worker processes, Redis and PostgreSQL.

A wave of leads reaches analyze, whose model (the self-hosted Llama on ``vllm``) is batchable:
each lead's request waits in ``batch_requests``, the ``batch`` queue's collector sends them as one
group to the endpoint (a second SIMULATOR in self-hosted mode: fixed slots, per-token latency;
labelled simulated) and every lead's chain continues from analyze with its own answer. When the
endpoint is down, the group goes back to the sync path and no lead is lost.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus, LeadStatus, Stage, StageStatus
from db.models import BatchGroup, BatchRequest, Email, Lead, LLMCall, StageResult
from simulator import SimulatorConfig, SimulatorServer
from tests.e2e.conftest import ROOT, E2EStack, leads_done, stop, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(600)]
LEADS = 28
SELF_HOSTED = "vllm:meta-llama/Llama-3.1-8B-Instruct"
STAGE_QUEUES = "classify,score,analyze,demo,personalize,judge,ops"


def batch_routing_table(path: Path, *, concurrency: int, extra: str = "") -> Path:
    """The packaged table with every tier's analyze on the batchable self-hosted Llama."""
    packaged = (ROOT / "pipeline" / "llm" / "routing.toml").read_text("utf-8")
    head, _, _ = packaged.partition("[batch]")
    head = head.replace(
        "start = { smb = 0, mid_market = 1, enterprise = 2 }\n\n[stages.demo]",
        "start = { default = 0 }\n\n[stages.demo]",
    )
    assert "start = { default = 0 }\n\n[stages.demo]" in head
    path.write_text(
        head
        + "[batch]\nthreshold = 20\nwindow_s = 8.0\nmax_group = 100\n"
        + f"[batch.endpoints.vllm]\nconcurrency = {concurrency}\ncold_start_s = 1\n{extra}"
        + '[batch.stages.analyze]\nmodels = ["llama8b"]\n',
        "utf-8",
    )
    return path


def leads_file(path: Path, count: int) -> Path:
    lines = (ROOT / "samples" / "leads.csv").read_text("utf-8-sig").splitlines()
    path.write_text("\n".join([lines[0], *lines[1 : 1 + count]]) + "\n", "utf-8")
    return path


def analyzed_by_llm(session: Session) -> int:
    """Leads whose analyze stage called a model (a lead without a site calls none)."""
    rows = session.scalars(
        select(StageResult.output).where(
            StageResult.stage == Stage.ANALYZE.value, StageResult.status == StageStatus.DONE
        )
    ).all()
    return sum(1 for output in rows if output.get("source") in ("llm", "fallback"))


def assert_every_lead_continued(session: Session) -> None:
    statuses = dict(session.execute(select(Lead.status, func.count()).group_by(Lead.status)).all())
    total = sum(statuses.values())
    assert statuses.get(LeadStatus.FAILED, 0) == 0, statuses
    assert statuses.get(LeadStatus.RUNNING, 0) == statuses.get(LeadStatus.QUEUED, 0) == 0
    # every lead went past analyze to the end of its chain: one email each
    assert session.scalar(select(func.count(func.distinct(Email.lead_id)))) == total
    judged = session.scalar(
        select(func.count()).where(
            StageResult.stage == Stage.JUDGE.value, StageResult.status == StageStatus.DONE
        )
    )
    assert judged == total
    # no call paid twice: one successful ledger row per journal key
    dupes = session.execute(
        select(LLMCall.journal_key)
        .where(LLMCall.status == CallStatus.OK)
        .group_by(LLMCall.journal_key)
        .having(func.count() > 1)
    ).all()
    assert dupes == []


def test_a_wave_over_the_threshold_goes_as_one_group_and_every_lead_continues(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    endpoint = SimulatorServer(config=SimulatorConfig(latency_scale=0.05, seed=5, slots=4))
    endpoint.start()
    try:
        env = stack.with_env(
            LEADPIPE_ROUTING_TABLE=str(batch_routing_table(tmp_path / "r.toml", concurrency=4)),
            LEADPIPE_PROVIDERS__VLLM__BASE_URL=endpoint.url,
        )
        env.cli_ok("enqueue", str(leads_file(tmp_path / "leads.csv", LEADS)), "--campaign", "b")
        with session_factory() as session:
            total = session.scalar(select(func.count()).select_from(Lead)) or 0
        worker = env.worker(tmp_path / "worker.log")
        try:
            wait_until("every lead done", lambda: leads_done(session_factory) == total, 300)
        finally:
            stop(worker)
    finally:
        endpoint.stop()
    with session_factory() as session:
        assert_every_lead_continued(session)
        groups = session.scalars(select(BatchGroup)).all()
        assert groups, "no group was formed"
        assert max(g.size for g in groups) > 20, [g.size for g in groups]
        assert {g.status for g in groups} == {"done"}
        assert {g.backend for g in groups} == {"selfhosted"}
        requests = session.scalars(select(BatchRequest)).all()
        assert len(requests) == analyzed_by_llm(session) > 20
        assert {r.status for r in requests} == {"done"}
        # each answer is in the ledger under its journal key, once, marked as a batch call
        batch_rows = session.scalars(
            select(LLMCall).where(LLMCall.routing_reason.like("%batch"))
        ).all()
        assert sorted(r.journal_key for r in batch_rows) == sorted(r.request_id for r in requests)
        assert all(f"{r.provider}:{r.model}" == SELF_HOSTED for r in batch_rows)
        assert all(r.cost_usd > 0 and r.simulated for r in batch_rows)
        # and the stage replayed it: no analyze call went to the self-hosted model one by one
        direct = session.scalar(
            select(func.count()).where(
                LLMCall.stage == Stage.ANALYZE.value,
                LLMCall.provider == "vllm",
                LLMCall.routing_reason.not_like("%batch"),
            )
        )
        assert direct == 0


def test_an_endpoint_outage_falls_back_to_sync_and_loses_no_lead(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    # Nothing listens on this port: /models never answers, the cold-start bound (1 s) passes.
    down = SimulatorServer(config=SimulatorConfig())
    dead_url = down.url
    down.stop()
    env = stack.with_env(
        LEADPIPE_ROUTING_TABLE=str(batch_routing_table(tmp_path / "r.toml", concurrency=4)),
        LEADPIPE_PROVIDERS__VLLM__BASE_URL=dead_url,
        LEADPIPE_PROVIDERS__VLLM__CONNECT_TIMEOUT_S="1",
    )
    env.cli_ok("enqueue", str(leads_file(tmp_path / "leads.csv", LEADS)), "--campaign", "down")
    with session_factory() as session:
        total = session.scalar(select(func.count()).select_from(Lead)) or 0
    worker = env.worker(tmp_path / "worker.log")
    try:
        wait_until("every lead done", lambda: leads_done(session_factory) == total, 300)
    finally:
        stop(worker)
    with session_factory() as session:
        assert_every_lead_continued(session)
        requests = session.scalars(select(BatchRequest)).all()
        assert requests, "no request took the batch path"
        assert {r.status for r in requests} == {"sync"}
        assert all("batch backend failed" in (r.error or "") for r in requests)
        groups = session.scalars(select(BatchGroup)).all()
        assert groups and {g.status for g in groups} == {"failed"}
        # every analyze answer came from the sync path's next rung (the simulator), none lost
        answered = session.scalar(
            select(func.count(func.distinct(LLMCall.journal_key))).where(
                LLMCall.stage == Stage.ANALYZE.value, LLMCall.status == CallStatus.OK
            )
        )
        assert answered == analyzed_by_llm(session) >= len(requests)


def _analyze_journaled(client: redis.Redis) -> int:
    return sum(1 for _ in client.scan_iter(match="leadpipe:journal:*:analyze:*", count=500))


def test_the_batch_worker_killed_mid_group_loses_nothing_and_pays_nothing_twice(
    stack: E2EStack, session_factory: sessionmaker[Session], redis_url: str, tmp_path: Path
) -> None:
    # Two answers at a time, about a second each: the group takes long enough to be cut.
    endpoint = SimulatorServer(config=SimulatorConfig(latency_scale=0.4, seed=5, slots=2))
    endpoint.start()
    client = redis.Redis.from_url(redis_url)
    try:
        env = stack.with_env(
            LEADPIPE_ROUTING_TABLE=str(batch_routing_table(tmp_path / "r.toml", concurrency=2)),
            LEADPIPE_PROVIDERS__VLLM__BASE_URL=endpoint.url,
        )
        env.cli_ok("enqueue", str(leads_file(tmp_path / "leads.csv", LEADS)), "--campaign", "k")
        with session_factory() as session:
            total = session.scalar(select(func.count()).select_from(Lead)) or 0
        stages = env.worker(tmp_path / "stages.log", "-Q", STAGE_QUEUES, "-n", "stages@%h")
        collector = env.worker(tmp_path / "batch1.log", "-Q", "batch", "-n", "batch1@%h")
        try:
            wait_until("a few answers paid", lambda: _analyze_journaled(client) >= 4, 180)
            collector.send_signal(signal.SIGKILL)  # mid-group: no warm shutdown
            collector.wait(timeout=30)
            with session_factory() as session:
                cut = session.scalars(select(BatchGroup)).one()
                assert cut.status in ("open", "submitted")
                paid_before = _analyze_journaled(client)
                assert paid_before < cut.size
            collector = env.worker(tmp_path / "batch2.log", "-Q", "batch", "-n", "batch2@%h")
            wait_until("every lead done", lambda: leads_done(session_factory) == total, 300)
        finally:
            stop(stages, collector)
        stats = httpx.get(endpoint.url.removesuffix("/v1") + "/_sim/stats").json()
    finally:
        endpoint.stop()
        client.close()
    with session_factory() as session:
        assert_every_lead_continued(session)
        group = session.scalars(select(BatchGroup)).one()
        assert (group.status, group.attempts) == ("done", 2)  # taken over, finished once
        requests = session.scalars(select(BatchRequest)).all()
        assert {r.status for r in requests} == {"done"}
        rows = session.scalars(select(LLMCall).where(LLMCall.routing_reason.like("%batch"))).all()
        assert sorted(r.journal_key for r in rows) == sorted(r.request_id for r in requests)
    # The endpoint answered each request at most once, plus whatever was in flight at the kill
    # (answers paid but not yet journaled: at most the two slots).
    assert group.size <= stats["by_status"]["200"] <= group.size + 2

"""Provider batch APIs end to end against the simulator (labelled), real PostgreSQL and Redis.

The analyze stage of a lead with a website diverts its model call to the batch path; the
collector submits it to the simulator's Message Batches / Batch API; the beat tick
(``pipeline.batch.provider.tick``) collects it, sends per-request errors back to sync, or flips a
late batch to sync before the campaign's send-by time. Stages run in-process like a worker
runs them (``tests/integration/test_stages.py``); the chain resume is the same stage run again.
"""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from db.enums import LeadStatus, Stage
from db.models import BatchGroup, BatchRequest, Lead, LLMCall
from pipeline.batch import store
from pipeline.batch.awaiting import AwaitingGroups
from pipeline.batch.backend import BatchItem
from pipeline.batch.collector import AwaitingBatch, collect
from pipeline.batch.config import BatchPolicy
from pipeline.batch.planner import Plan
from pipeline.batch.provider import AWAITING, FLIPPED, OpenBatch, Tick, tick
from pipeline.campaigns.send_by import set_send_by
from pipeline.deps import Deps
from pipeline.llm.providers.batch_api import RedisIdStore, build_batch_backends
from pipeline.llm.routing import RoutingTable
from pipeline.models import LLMRequest
from pipeline.reporting.paths import batch_vs_sync
from pipeline.stages import analyze, classify, demo, judge, personalize, score
from pipeline.stages._common import release
from pipeline.web.fetch import WebPolicy
from simulator import SimulatorServer
from tests.factories import ENTERPRISE_ROW, make_batch

pytestmark = pytest.mark.integration
ROW = ENTERPRISE_ROW.replace("Globex Software,,", "Globex Software,https://apex-freight.example,")
AFTER = (demo, personalize, judge)


@pytest.fixture
def sites() -> Iterator[WebPolicy]:
    root = Path(__file__).resolve().parents[2] / "samples" / "sites"
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    yield WebPolicy(allow_hosts=frozenset({host}), mirror_url=f"http://{host}")
    server.shutdown()


@pytest.fixture
def batched(deps: Deps, simulator: SimulatorServer, sites: WebPolicy) -> Iterator[Deps]:
    """Every OpenAI/Anthropic model of the analyze ladder goes through a provider batch."""
    http = httpx.Client(timeout=10.0)
    refs = list(deps.routing.stages[Stage.ANALYZE].ladder)
    wanted = {ref: 0 for ref in refs if ref.startswith(("openai:", "anthropic:"))}
    deps.web_policy = sites
    deps.batch = BatchPolicy(stages={"analyze": wanted}, window_s=0.1)
    deps.batch_apis = dict(
        build_batch_backends(
            {},
            simulator_url=simulator.url,
            http=http,
            catalog=deps.routing.catalog,
            price_factor=Decimal("0.5"),
            ids=RedisIdStore(deps.redis) if deps.redis is not None else None,
        )
    )
    yield deps
    http.close()


def _lead(deps: Deps, *, send_by: dt.datetime | None) -> tuple[int, str]:
    with deps.session_scope() as session:
        batch = make_batch(session, [ROW], campaign="launch")
        set_send_by(session, "launch", send_by=send_by, send_within_s=None)
    lead_id = batch.leads[0][0]
    for stage in (classify, score):
        stage.run(deps, lead_id=lead_id, run_id=batch.run_id)
    return lead_id, batch.run_id


def _analyze_waits(deps: Deps, lead_id: int, run_id: str) -> str:
    """Run analyze: it diverts to the batch path; free its lease as the task base does."""
    with pytest.raises(AwaitingBatch) as waiting:
        analyze.run(deps, lead_id=lead_id, run_id=run_id)
    release(deps, lead_id=lead_id, run_id=run_id, stage=Stage.ANALYZE)
    done = collect(deps, "analyze", waiting.value.model_ref, owner="test-collector")
    assert done.groups == 1 and not done.resumes  # submitted, nobody resumed yet
    with deps.session_scope() as session:
        group = session.scalars(select(BatchGroup)).one()
        assert group.status == AWAITING and group.handle
        assert group.backend in ("openai_batch", "anthropic_batch")
    return waiting.value.model_ref


def _resume(deps: Deps, lead_id: int, run_id: str) -> None:
    for stage in (analyze, *AFTER):
        stage.run(deps, lead_id=lead_id, run_id=run_id)


def _analyze_calls(deps: Deps, lead_id: int) -> list[LLMCall]:
    with deps.session_scope() as session:
        rows = session.scalars(
            select(LLMCall).where(LLMCall.lead_id == lead_id, LLMCall.stage == "analyze")
        ).all()
        session.expunge_all()
        return list(rows)


def _tick_until(deps: Deps, until: float, done: str) -> tuple[Tick, AwaitingGroups]:
    while True:
        groups = AwaitingGroups(deps)
        result = tick(groups, deps.batch_apis, deps.batch_plan, store.now())
        if getattr(result, done) or time.monotonic() > until:
            return result, groups
        time.sleep(0.2)


def test_submit_poll_collect_writes_the_batch_answer_at_the_batch_price(
    batched: Deps, simulator: SimulatorServer
) -> None:
    deps = batched
    simulator.configure(batch_delay_s=2.0)  # the first tick must find it running
    lead_id, run_id = _lead(deps, send_by=None)
    ref = _analyze_waits(deps, lead_id, run_id)
    first = tick(AwaitingGroups(deps), deps.batch_apis, deps.batch_plan, store.now())
    assert first.waiting and not first.delivered
    result, groups = _tick_until(deps, time.monotonic() + 10, "delivered")
    assert result.answers == 1 and result.to_sync == 0
    assert [r.lead_id for r in groups.resumes] == [lead_id]
    _resume(deps, lead_id, run_id)  # the chain again: analyze replays the ledger row
    [row] = _analyze_calls(deps, lead_id)
    assert row.routing_reason.endswith("batch") and row.simulated
    listed = deps.routing.catalog.price(ref).cost_of_tokens(
        row.prompt_tokens, row.completion_tokens
    )
    assert row.cost_usd == (listed * Decimal("0.5")).quantize(Decimal("0.000000000001"))
    with deps.session_scope() as session:
        assert session.get_one(Lead, lead_id).status in (LeadStatus.COMPLETED, LeadStatus.HELD)
    stats = httpx.get(f"{simulator.url}/_sim/stats").json()["batches"]
    assert stats["succeeded"] == 1


def test_a_per_request_error_goes_back_to_the_sync_path(
    batched: Deps, simulator: SimulatorServer
) -> None:
    deps = batched
    simulator.configure(batch_delay_s=0.2, batch_error_rate=1.0)
    lead_id, run_id = _lead(deps, send_by=None)
    _analyze_waits(deps, lead_id, run_id)
    result, groups = _tick_until(deps, time.monotonic() + 10, "delivered")
    assert (result.answers, result.to_sync) == (0, 1)
    assert [r.lead_id for r in groups.resumes] == [lead_id]
    with deps.session_scope() as session:
        request = session.scalars(select(BatchRequest)).one()
        assert request.status == store.SYNC and "simulated per-request failure" in request.error
    _resume(deps, lead_id, run_id)
    [row] = _analyze_calls(deps, lead_id)
    assert not row.routing_reason.endswith("batch")  # answered on the sync path


class _IgnoresCancel:
    """A provider that answers a batch even though it was cancelled (the race, made certain)."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.name = inner.name  # type: ignore[attr-defined]

    def submit(self, model: str, items: object) -> str:
        return str(self._inner.submit(model, items))  # type: ignore[attr-defined]

    def poll(self, handle: str) -> object:
        return self._inner.poll(handle)  # type: ignore[attr-defined]

    def cancel(self, handle: str) -> None:
        return None


@pytest.mark.parametrize("cancel_honoured", [True, False])
def test_a_late_provider_batch_flips_to_sync_before_the_deadline(
    batched: Deps, simulator: SimulatorServer, cancel_honoured: bool
) -> None:
    """Issue 14's done-when: the batch takes longer than the planner can wait (completion
    delay > turnaround, and past send-by minus the margin); the lead completes on the sync
    path before its send-by time, and the batch answer is never recorded or paid twice."""
    deps = batched
    delay_s = 6.0
    simulator.configure(batch_delay_s=delay_s)
    deps.batch_plan = Plan.of_seconds(turnaround_s=2, margin_s=3)
    send_by = store.now() + dt.timedelta(seconds=7)  # 7 s >= 2 s + 3 s: the planner batches it
    if not cancel_honoured:
        deps.batch_apis = {k: _IgnoresCancel(v) for k, v in deps.batch_apis.items()}  # type: ignore[misc]
    lead_id, run_id = _lead(deps, send_by=send_by)
    _analyze_waits(deps, lead_id, run_id)
    submitted = time.monotonic()
    result, groups = _tick_until(deps, submitted + 6, "flipped")
    flipped_after = time.monotonic() - submitted
    assert result.flipped and result.to_sync == 1, result
    assert flipped_after < delay_s  # before the batch could answer
    assert [r.lead_id for r in groups.resumes] == [lead_id]
    _resume(deps, lead_id, run_id)  # the chain again: analyze calls its model on the sync path
    finished = store.now()
    with deps.session_scope() as session:
        lead = session.get_one(Lead, lead_id)
        assert lead.status in (LeadStatus.COMPLETED, LeadStatus.HELD)
        assert store.aware(lead.updated_at) < send_by and finished < send_by
        group = session.scalars(select(BatchGroup)).one()
        assert group.status == FLIPPED and "late" in (group.error or "")
        request = session.scalars(select(BatchRequest)).one()
        assert request.status == store.SYNC and request.error.startswith("flipped to sync")
    [row] = _analyze_calls(deps, lead_id)
    assert not row.routing_reason.endswith("batch")
    # The batch finishes later. Cancelled: it answers nothing. Not cancelled: its answer comes
    # back and is not written (the sync answer holds the journal key); nobody collects it twice.
    time.sleep(max(0.0, submitted + delay_s + 0.3 - time.monotonic()))
    with deps.session_scope() as session:
        handle, model_ref = session.execute(select(BatchGroup.handle, BatchGroup.model_ref)).one()
    provider = deps.batch_apis[model_ref.partition(":")[0]]
    late = provider.poll(handle or "")
    assert late is not None
    answered = [r for r in late if r.response is not None]
    assert len(answered) == (0 if cancel_honoured else 1)
    group_view = AwaitingGroups(deps)
    assert group_view.open_batches() == []  # a flipped batch is never polled again
    batch = tick(group_view, deps.batch_apis, deps.batch_plan, store.now())
    assert batch == Tick()
    with deps.session_scope() as session:
        group = session.scalars(select(BatchGroup)).one()
        as_open = OpenBatch(
            group_id=group.id,
            backend=group.backend,
            provider=group.model_ref.partition(":")[0],
            handle=handle or "",
            submitted_at=store.aware(group.submitted_at or group.created_at),
            deadline=send_by,
        )
    written, to_sync = AwaitingGroups(deps).deliver(as_open, late)
    assert (written, to_sync) == (0, 0)
    assert len(_analyze_calls(deps, lead_id)) == 1  # one ledger row, one payment
    stats = httpx.get(f"{simulator.url}/_sim/stats").json()["batches"]
    assert stats.get("succeeded", 0) == (0 if cancel_honoured else 1)
    with deps.session_scope() as session:
        [report] = batch_vs_sync(session, catalog=deps.routing.catalog)
    assert report["deadline"]["held"] is True and report["batch"]["calls"] == 0
    assert report["flipped_to_sync"] == 1


def test_a_near_deadline_skips_the_batch_path(batched: Deps, simulator: SimulatorServer) -> None:
    deps = batched
    deps.batch_plan = Plan.of_seconds(turnaround_s=3600, margin_s=1800)
    lead_id, run_id = _lead(deps, send_by=store.now() + dt.timedelta(minutes=30))
    analyze.run(deps, lead_id=lead_id, run_id=run_id)  # no AwaitingBatch: straight to sync
    with deps.session_scope() as session:
        assert session.scalars(select(BatchRequest)).all() == []
    [row] = _analyze_calls(deps, lead_id)
    assert not row.routing_reason.endswith("batch")


SIM_PORT = 59916  # h-papi's own port range (TEAM.md)


@pytest.fixture
def simulator_process() -> Iterator[str]:
    """``leadpipe simulator`` as its own process, with a 3 s batch completion delay."""
    cmd = [
        sys.executable,
        "-m",
        "workers.cli",
        "simulator",
        "--port",
        str(SIM_PORT),
        "--latency-scale",
        "0",
        "--batch-delay-s",
        "3",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{SIM_PORT}/v1"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("leadpipe simulator did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_backends_against_a_simulator_process(
    simulator_process: str, provider: str, routing: RoutingTable
) -> None:
    model = {"openai": "gpt-4o-mini", "anthropic": "claude-3-haiku-20240307"}[provider]
    with httpx.Client(timeout=10) as http:
        backend = build_batch_backends(
            {},
            simulator_url=simulator_process,
            http=http,
            catalog=routing.catalog,
            price_factor=Decimal("0.5"),
        )[provider]
        items = [
            BatchItem(f"run:{i}:analyze:main", LLMRequest(model, "s", f"lead {i}", 200))
            for i in range(3)
        ]
        submitted = time.monotonic()
        handle = backend.submit(model, items)
        if time.monotonic() - submitted < 2.5:  # a loaded machine may take that long to submit
            assert backend.poll(handle) is None  # the 3 s delay has not passed
        time.sleep(max(0.0, submitted + 3.2 - time.monotonic()))
        results = {r.request_id: r for r in backend.poll(handle) or []}
    assert set(results) == {item.request_id for item in items}
    for result in results.values():
        assert result.error is None and result.response is not None
        assert result.response.simulated
        listed = routing.catalog.price(f"{provider}:{model}").cost(result.response.usage)
        assert result.cost_usd == listed / 2

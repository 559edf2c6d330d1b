"""The batch collector on real PostgreSQL and Redis, against the simulator (labelled).

A collector that dies mid-group loses nothing and pays nothing twice: the group's lease runs out,
the next collector takes it over, writes the answers the journal already holds and sends only the
rest. Too few requests go back to the sync path after the window; a per-request error sends that
request back to the sync path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from db.enums import CallStatus, Stage
from db.models import BatchGroup, BatchRequest, LLMCall
from pipeline.batch import store
from pipeline.batch.collector import AwaitingBatch, collect, divert, register
from pipeline.batch.config import parse_batch_policy
from pipeline.deps import Deps
from pipeline.llm import journal
from pipeline.llm.contracts import contract_for
from pipeline.llm.gateway import CallContext, request_for
from pipeline.llm.prompts import render
from pipeline.models import LLMResponse, Route, Usage
from simulator import SimulatorServer
from tests.factories import SMB_ROW, make_batch

pytestmark = pytest.mark.integration
STAGE = Stage.ANALYZE.value
ANSWER = (
    '{"summary": "Three dental clinics in Portland with online booking.", "products": [], '
    '"pain_points": [], "tech_signals": [], '
    '"has_career_page": false, "has_enterprise_tech_stack": false}'
)


@pytest.fixture
def batch_deps(deps: Deps) -> Deps:
    doc = {
        "models": {"llama8b": "vllm:meta-llama/Llama-3.1-8B-Instruct"},
        "prices": {"vllm:meta-llama/Llama-3.1-8B-Instruct": ["0.02", "0.02"]},
        "batch": {
            "threshold": 20,
            "window_s": 0.3,
            "lease_s": 30,
            "endpoints": {"vllm": {"concurrency": 4, "cold_start_s": 1}},
            "stages": {"analyze": {"models": ["llama8b"]}},
        },
    }
    deps.batch = parse_batch_policy(doc, deps.routing.catalog.knows)
    return deps


def _route(deps: Deps) -> Route:
    route = deps.routing.chain(Stage.ANALYZE, "smb")[0]
    assert route.provider == "vllm"
    return route


def _register(deps: Deps, n: int) -> list[str]:
    route, run_id, ids = _route(deps), str(uuid.uuid4()), []
    for i in range(n):
        ctx = CallContext(Stage.ANALYZE, None, run_id, None, call_key=f"r{i}")
        lead = {"company": f"Northwind Dental {i}", "industry": "Healthcare"}
        prompt = render("analyze", lead=lead, website_text=f"Clinic {i}: online booking.")
        register(deps, ctx, prompt, route, request_for(route, prompt, contract_for(Stage.ANALYZE)))
        ids.append(ctx.journal_key)
    return ids


def _answered(simulator: SimulatorServer) -> int:
    base = simulator.url.removesuffix("/v1")
    return int(httpx.get(f"{base}/_sim/stats").json()["by_status"].get("200", 0))


def test_a_collector_killed_mid_group_loses_nothing_and_pays_nothing_twice(
    batch_deps: Deps, simulator: SimulatorServer
) -> None:
    deps, route = batch_deps, _route(batch_deps)
    ids = _register(deps, 25)
    # A collector claimed the group, was paid for 10 answers (journaled), then died.
    with deps.session_scope() as session:
        claimed = store.new_group(session, STAGE, route.ref, "selfhosted", "dead/1", 100, 0.01)
        assert claimed is not None and len(claimed[1]) == 25
    for rid in ids[:10]:
        paid = LLMResponse(ANSWER, Usage(300, 40), "vllm", route.model, simulated=True)
        journal.remember(deps.redis, rid, journal.Entry.of(rid, route, paid, 1, None))
    time.sleep(0.05)  # the dead collector's lease runs out
    httpx.post(simulator.url.removesuffix("/v1") + "/_sim/reset")

    done = collect(deps, STAGE, route.ref, owner="alive/2")

    assert (done.recovered, done.answered, done.to_sync) == (10, 15, 0)
    assert _answered(simulator) == 15  # only the unanswered requests were sent again
    with deps.session_scope() as session:
        rows = session.scalars(select(LLMCall).where(LLMCall.request_id.in_(ids))).all()
        assert sorted(r.request_id for r in rows) == sorted(ids)  # one ledger row each
        assert all(r.status == CallStatus.OK and r.cost_usd > 0 for r in rows)
        group = session.scalars(select(BatchGroup)).one()
        assert (group.status, group.attempts, group.lease_owner) == ("done", 2, None)
        statuses = session.scalars(select(BatchRequest.status)).all()
        assert set(statuses) == {"done"}
    # a second collector finds nothing left to do
    again = collect(deps, STAGE, route.ref, owner="late/3")
    assert (again.groups, again.answered, again.recovered) == (0, 0, 0)


def test_too_few_requests_go_back_to_sync_after_the_window(batch_deps: Deps) -> None:
    deps, route = batch_deps, _route(batch_deps)
    _register(deps, 5)
    first = collect(deps, STAGE, route.ref, owner="c/1")
    assert first.groups == 0 and first.again_s is not None and first.again_s > 0
    time.sleep(first.again_s + 0.05)
    second = collect(deps, STAGE, route.ref, owner="c/2")
    assert (second.groups, second.to_sync) == (0, 5)
    with deps.session_scope() as session:
        assert set(session.scalars(select(BatchRequest.status)).all()) == {"sync"}
        assert session.scalar(select(func.count(LLMCall.id))) == 0  # nothing was called


def test_a_request_the_endpoint_fails_goes_back_to_sync(
    batch_deps: Deps, simulator: SimulatorServer
) -> None:
    deps, route = batch_deps, _route(batch_deps)
    simulator.configure(fail_models={route.model: 1.0})
    ids = _register(deps, 22)
    done = collect(deps, STAGE, route.ref, owner="c/1")
    assert (done.groups, done.answered, done.to_sync) == (1, 0, 22)
    with deps.session_scope() as session:
        rows = session.scalars(select(BatchRequest).where(BatchRequest.request_id.in_(ids)))
        assert {(r.status, "HTTP" in (r.error or "")) for r in rows} == {("sync", True)}
        assert session.scalars(select(BatchGroup.status)).one() == "done"


def test_an_endpoint_that_never_answers_sends_the_group_to_sync(batch_deps: Deps) -> None:
    deps, route = batch_deps, _route(batch_deps)
    dead = SimulatorServer()
    url = dead.url
    dead.stop()
    provider = deps.providers["vllm"]
    provider._url = url  # type: ignore[attr-defined]
    provider.endpoint = url  # type: ignore[attr-defined]
    _register(deps, 21)
    started = time.monotonic()
    done = collect(deps, STAGE, route.ref, owner="c/1")
    assert time.monotonic() - started < 10  # the cold-start bound (1 s), not forever
    assert (done.groups, done.answered, done.to_sync) == (1, 0, 21)
    assert deps.redis is not None and deps.redis.exists("leadpipe:batch:down:vllm")
    with deps.session_scope() as session:
        assert session.scalars(select(BatchGroup.status)).one() == "failed"


def test_a_long_group_keeps_its_lease_while_answers_arrive(
    batch_deps: Deps, simulator: SimulatorServer
) -> None:
    deps, route = batch_deps, _route(batch_deps)
    assert deps.batch is not None
    deps.batch = dataclasses.replace(deps.batch, lease_s=1.0)
    simulator.configure(latency_scale=0.2)  # about 0.3 s an answer, 4 at a time: ~2 s a group
    _register(deps, 24)
    httpx.post(simulator.url.removesuffix("/v1") + "/_sim/reset")
    stolen: list[object] = []
    thief = threading.Timer(1.5, lambda: stolen.append(collect(deps, STAGE, route.ref, owner="t")))
    thief.start()
    started = time.monotonic()
    done = collect(deps, STAGE, route.ref, owner="slow/1")
    thief.join()
    assert time.monotonic() - started > 1.5  # the group outlived its first lease
    assert done.answered == 24
    assert stolen and stolen[0].answered == stolen[0].recovered == 0  # type: ignore[attr-defined]
    assert _answered(simulator) == 24  # nothing was sent twice


def test_divert_pauses_a_batchable_call_once_and_lets_the_rest_through(batch_deps: Deps) -> None:
    deps, route = batch_deps, _route(batch_deps)
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW], priority=3)
    lead_id = batch.leads[0][0]
    prompt = render("analyze", lead={"company": "Corner Bakery"}, website_text="Bread daily.")
    request = request_for(route, prompt, contract_for(Stage.ANALYZE))
    ctx = CallContext(Stage.ANALYZE, lead_id, batch.run_id, None)
    for _ in range(2):  # a redelivered task waits for the same request, never a second one
        with pytest.raises(AwaitingBatch) as paused:
            divert(deps, ctx, prompt, route, request)
    assert (paused.value.stage, paused.value.model_ref) == (STAGE, route.ref)
    with deps.session_scope() as session:
        row = session.scalars(select(BatchRequest)).one()
        assert (row.request_id, row.status, row.lead_id) == (ctx.journal_key, "pending", lead_id)
        assert store.resumes(session, [row])[0].priority == 3
        row.created_at = store.now() - dt.timedelta(seconds=1000)  # past max_wait_s
        claimed = store.new_group(session, STAGE, route.ref, "selfhosted", "c/1", 10, 60)
        assert claimed is not None
        group_id = claimed[0].id
    # its group is being sent right now: going sync as well would pay twice, so it waits
    with pytest.raises(AwaitingBatch):
        divert(deps, ctx, prompt, route, request)
    with deps.session_scope() as session:
        session.get_one(BatchGroup, group_id).lease_until = store.now() - dt.timedelta(seconds=1)
    # waiting past max_wait_s with no live group: the request goes back to the sync path
    divert(deps, ctx, prompt, route, request)
    with deps.session_scope() as session:
        assert session.scalars(select(BatchRequest.status)).one() == "sync"
    # a model that is not batchable, or an endpoint marked down, goes straight through
    other = Route("openai", "gpt-4o-mini", 100)
    divert(
        deps, CallContext(Stage.ANALYZE, lead_id, batch.run_id, None, "b"), prompt, other, request
    )
    assert deps.redis is not None
    deps.redis.set("leadpipe:batch:down:vllm", "1")
    divert(
        deps, CallContext(Stage.ANALYZE, lead_id, batch.run_id, None, "c"), prompt, route, request
    )
    with deps.session_scope() as session:
        assert session.scalar(select(func.count(BatchRequest.id))) == 1

"""The batch collector on real PostgreSQL and Redis, against the simulator (labelled).

A collector that dies mid-group loses nothing and pays nothing twice: the group's lease runs out,
the next collector takes it over, writes the answers the journal already holds and sends only the
rest. Too few requests go back to the sync path after the window; a per-request error sends that
request back to the sync path.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from db.enums import CallStatus, Stage
from db.models import BatchGroup, BatchRequest, LLMCall
from pipeline.batch import store
from pipeline.batch.collector import collect, register
from pipeline.batch.config import parse_batch_policy
from pipeline.deps import Deps
from pipeline.llm import journal
from pipeline.llm.contracts import contract_for
from pipeline.llm.gateway import CallContext, request_for
from pipeline.llm.prompts import render
from pipeline.models import LLMResponse, Route, Usage
from simulator import SimulatorServer

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

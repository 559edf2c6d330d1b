from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from db.enums import CallStatus, Stage
from db.models import LLMCall
from pipeline.deps import Deps
from pipeline.errors import AllRoutesFailed
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.prompts import render
from simulator import SimulatorServer

pytestmark = pytest.mark.integration
CTX = CallContext(Stage.CLASSIFY, None, "run-1", None)


def _prompt():  # type: ignore[no-untyped-def]
    return render(
        "classify",
        lead={"company": "Acme Dental", "industry": "Healthcare", "employees": 40, "country": "US"},
    )


def _calls(deps: Deps) -> list[LLMCall]:
    with deps.session_scope() as session:
        return list(session.scalars(select(LLMCall).order_by(LLMCall.id)))


def test_call_is_priced_recorded_and_replayed(deps: Deps) -> None:
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    first = call_model(deps, CTX, _prompt(), chain)
    assert first.data["industry"] == "healthcare"
    [row] = _calls(deps)
    assert row.status == CallStatus.OK and row.simulated
    assert row.prompt_tokens > 100 and row.completion_tokens > 10
    expected, _ = deps.routing.catalog.cost(chain[0].ref, first.usage)
    assert row.cost_usd == expected > Decimal(0)
    assert isinstance(row.cost_usd, Decimal)

    again = call_model(deps, CTX, _prompt(), chain)  # a redelivered task
    assert again.data == first.data
    assert len(_calls(deps)) == 1  # replayed from the journal: not called, not charged twice


def test_primary_failing_falls_back_and_ledger_shows_it(
    deps: Deps, simulator: SimulatorServer
) -> None:
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    httpx.post(
        simulator.url.removesuffix("/v1") + "/_sim/config",
        json={"fail_models": {chain[0].model: 1.0}},
    )
    result = call_model(deps, CTX, _prompt(), chain)
    assert result.route.ref == chain[1].ref
    rows = _calls(deps)
    failed = [r for r in rows if r.status == CallStatus.ERROR]
    assert len(failed) == 1  # one attempt per model: the task retry is the only retry loop
    assert all(r.model == chain[0].model and r.cost_usd == 0 for r in failed)
    ok = [r for r in rows if r.status == CallStatus.OK]
    assert [(r.model, r.fallback_from) for r in ok] == [(chain[1].model, chain[0].ref)]
    assert [r.attempt for r in rows] == list(range(1, len(rows) + 1))


def test_every_model_failing_raises_transient(deps: Deps, simulator: SimulatorServer) -> None:
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    httpx.post(
        simulator.url.removesuffix("/v1") + "/_sim/config",
        json={"fail_models": {r.model: 1.0 for r in chain}},
    )
    with pytest.raises(AllRoutesFailed):
        call_model(deps, CTX, _prompt(), chain)
    rows = _calls(deps)
    assert len(rows) == len(chain)
    assert sum(r.cost_usd for r in rows) == 0

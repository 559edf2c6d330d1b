import httpx
import pytest
from sqlalchemy import select

from db.enums import CallStatus, Stage
from db.models import LLMCall
from pipeline.deps import Deps
from pipeline.llm.breaker import CircuitBreaker
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.prompts import render
from simulator import SimulatorServer

pytestmark = pytest.mark.integration


def test_breaker_opens_after_threshold_and_closes_on_success(deps: Deps) -> None:
    breaker = CircuitBreaker(deps.redis, threshold=3, cooldown_s=30)
    for _ in range(2):
        breaker.failure("x:y")
    assert not breaker.is_open("x:y")
    breaker.success("x:y")
    for _ in range(2):
        breaker.failure("x:y")
    assert not breaker.is_open("x:y")  # the success reset the count
    breaker.failure("x:y")
    assert breaker.is_open("x:y")


def test_open_breaker_takes_a_failing_model_out_of_every_chain(
    deps: Deps, simulator: SimulatorServer
) -> None:
    deps.breaker = CircuitBreaker(deps.redis, threshold=2, cooldown_s=30)
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    httpx.post(
        simulator.url.removesuffix("/v1") + "/_sim/config",
        json={"fail_models": {chain[0].model: 1.0}},
    )
    prompt = render("classify", lead={"company": "Acme"})
    for lead in range(3):
        call_model(deps, CallContext(Stage.CLASSIFY, None, f"run-{lead}", None), prompt, chain)
    with deps.session_scope() as session:
        primary = session.scalars(select(LLMCall).where(LLMCall.model == chain[0].model)).all()
    # two failures opened the breaker during the first call; later calls skip the model
    assert len(primary) == 2 and all(r.status == CallStatus.ERROR for r in primary)
    assert deps.breaker.is_open(chain[0].ref)

import httpx
import pytest
from sqlalchemy import select

from db.enums import Stage
from db.models import LLMCall
from pipeline.deps import Deps
from pipeline.llm.cache import TTL_S, ResponseCache
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.ledger import StageLedger
from pipeline.llm.prompts import render
from pipeline.llm.providers.openai_compat import OpenAICompatible
from pipeline.models import Route

pytestmark = pytest.mark.integration


def _prompt():  # type: ignore[no-untyped-def]
    return render("classify", lead={"company": "Acme Dental", "industry": "Healthcare"})


def test_same_prompt_for_the_same_model_is_served_from_the_cache(deps: Deps) -> None:
    level = {"value": 1}
    deps.cache = ResponseCache(deps.redis, lambda: level["value"])  # type: ignore[arg-type]
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    first = call_model(deps, CallContext(Stage.CLASSIFY, None, "run-a", None), _prompt(), chain)
    second = call_model(deps, CallContext(Stage.CLASSIFY, None, "run-b", None), _prompt(), chain)
    assert second.cache_hit and not first.cache_hit
    assert second.data == first.data
    with deps.session_scope() as session:
        rows = session.scalars(select(LLMCall).order_by(LLMCall.id)).all()
    assert [r.cache_hit for r in rows] == [False, True]
    assert (rows[1].cost_usd, rows[1].prompt_tokens, rows[1].model) == (0, 0, rows[0].model)
    assert rows[1].simulated and second.simulated  # a hit keeps the original's provenance
    key = ResponseCache.key(Stage.CLASSIFY, chain[0].ref, _prompt(), _endpoint(deps, chain))
    assert TTL_S[Stage.CLASSIFY] - 5 < deps.redis.ttl(key) <= TTL_S[Stage.CLASSIFY]


def test_another_model_or_prompt_misses_and_level_4_stretches_ttls(deps: Deps) -> None:
    deps.cache = ResponseCache(deps.redis, lambda: 5)  # type: ignore[arg-type]  # throttle L4+
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    call_model(deps, CallContext(Stage.CLASSIFY, None, "run-a", None), _prompt(), chain)
    other = call_model(deps, CallContext(Stage.CLASSIFY, None, "run-b", None), _prompt(), chain[1:])
    assert not other.cache_hit  # a council member asking a different model gets its own answer
    changed = render("classify", lead={"company": "Acme Dental", "industry": "Retail"})
    assert not call_model(
        deps, CallContext(Stage.CLASSIFY, None, "run-c", None), changed, chain
    ).cache_hit
    key = ResponseCache.key(Stage.CLASSIFY, chain[0].ref, _prompt(), _endpoint(deps, chain))
    assert deps.redis.ttl(key) > TTL_S[Stage.CLASSIFY] * 4


def _endpoint(deps: Deps, chain: list[Route]) -> str:
    return str(deps.providers[chain[0].provider].endpoint)  # type: ignore[attr-defined]


def test_an_answer_from_another_endpoint_is_never_served(deps: Deps) -> None:
    """The simulator's answer must not serve the same model once its real endpoint is set."""
    deps.cache = ResponseCache(deps.redis)  # type: ignore[arg-type]
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    call_model(deps, CallContext(Stage.CLASSIFY, None, "run-a", None), _prompt(), chain)
    simulator = deps.providers[chain[0].provider]
    real = OpenAICompatible(
        name=chain[0].provider,
        base_url="http://127.0.0.1:9/real/v1",  # a different endpoint (this one refuses)
        api_key=None,
        http=httpx.Client(),
    )
    deps.providers = {**deps.providers, chain[0].provider: real}
    again = call_model(deps, CallContext(Stage.CLASSIFY, None, "run-b", None), _prompt(), chain)
    assert not again.cache_hit and again.route.ref == chain[1].ref  # asked, failed, fell back
    deps.providers = {**deps.providers, chain[0].provider: simulator}
    back = call_model(deps, CallContext(Stage.CLASSIFY, None, "run-c", None), _prompt(), chain)
    assert back.cache_hit


def test_a_call_meant_to_improve_never_reads_the_cache(deps: Deps) -> None:
    deps.cache = ResponseCache(deps.redis)  # type: ignore[arg-type]
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    call_model(deps, CallContext(Stage.CLASSIFY, None, "run-a", None), _prompt(), chain)
    fresh = call_model(
        deps, CallContext(Stage.CLASSIFY, None, "run-b", None), _prompt(), chain, read_cache=False
    )
    assert not fresh.cache_hit and fresh.usage.output_tokens > 0


def test_a_cache_hit_in_a_stage_waits_for_its_finishing_transaction(deps: Deps) -> None:
    deps.cache = ResponseCache(deps.redis)  # type: ignore[arg-type]
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    call_model(deps, CallContext(Stage.CLASSIFY, None, "run-a", None), _prompt(), chain)
    abandoned, pending = StageLedger(), StageLedger()
    for run, ledger in (("run-b", abandoned), ("run-c", pending)):
        ctx = CallContext(Stage.CLASSIFY, None, run, None, replay=False, pending=ledger)
        assert call_model(deps, ctx, _prompt(), chain).cache_hit
        assert (len(ledger.rows), ledger.spent, ledger.held) == (1, 0, [])
    abandoned.abandon(deps.budget)  # its stage failed: the $0 row is never written
    with deps.session_scope() as session:
        assert len(session.scalars(select(LLMCall)).all()) == 1  # not written yet
        pending.write(session)
    pending.settle(deps.budget)
    with deps.session_scope() as session:
        rows = session.scalars(select(LLMCall).order_by(LLMCall.id)).all()
    assert [(r.run_id, r.cache_hit, r.cost_usd) for r in rows] == [
        ("run-a", False, rows[0].cost_usd),
        ("run-c", True, 0),
    ]
    assert rows[1].journal_key == "run-c:None:classify:main" and rows[1].response is not None

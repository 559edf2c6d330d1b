import pytest
from sqlalchemy import select

from db.enums import Stage
from db.models import LLMCall
from pipeline.deps import Deps
from pipeline.llm.cache import TTL_S, ResponseCache
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.prompts import render

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
    key = ResponseCache.key(Stage.CLASSIFY, chain[0].ref, _prompt())
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
    key = ResponseCache.key(Stage.CLASSIFY, chain[0].ref, _prompt())
    assert deps.redis.ttl(key) > TTL_S[Stage.CLASSIFY] * 4

"""Every branch of an answer through the gateway, with scripted providers (httpx.MockTransport).

The ledger is the real one (PostgreSQL), so these are marked integration like test_logs.py.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from db.enums import CallStatus, Stage
from db.models import LLMCall
from pipeline.deps import Deps
from pipeline.errors import AllRoutesFailed, NoValidAnswer, RateLimited
from pipeline.llm.breaker import CircuitBreaker
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.providers.openai_compat import OpenAICompatible
from pipeline.llm.ratelimit import Limit, RateLimiter, RateLimits
from pipeline.logs import configure_logging
from pipeline.models import Prompt, Route
from pipeline.settings import ProviderSettings

pytestmark = pytest.mark.integration
KEY = "sk-or-v1-SECRETSECRET0123456789"
CTX = CallContext(Stage.SCORE, None, "run-1", None)
PROMPT = Prompt(system="leadpipe-task: score", user="Score Acme.", version="v1")
GOOD = {"fit_score": 72, "rationale": "Mid-sized software firm."}
A = Route("openrouter", "qwen/qwen-2.5-72b-instruct", 200, "test")
B = Route("deepseek", "deepseek-chat", 200, "test")
NAMES = {"alpha": A.provider, "beta": B.provider}
Answer = str | int | tuple[str, str] | Callable[[httpx.Request], httpx.Response]


def completion(text: str, finish: str = "stop") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "x",
            "model": "m",
            "choices": [{"message": {"content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 30},
        },
    )


class Script:
    """A provider whose answers are queued: text, (text, finish_reason), an HTTP code or a
    handler; it records every request body."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.bodies: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        answer = self.answers.pop(0)
        if isinstance(answer, int):
            return httpx.Response(answer, json={"error": {"message": f"refused key {KEY}"}})
        if isinstance(answer, tuple):
            return completion(*answer)
        if callable(answer):
            return answer(request)
        return completion(answer)


def provider(name: str, script: Script) -> OpenAICompatible:
    return OpenAICompatible(
        name=name,
        base_url=f"https://{name}.test/v1",
        api_key=SecretStr(KEY),
        http=httpx.Client(transport=httpx.MockTransport(script)),
        settings=ProviderSettings(timeout_s=5),
    )


def scripted(deps: Deps, **scripts: Script) -> Deps:
    providers = {NAMES[name]: provider(NAMES[name], script) for name, script in scripts.items()}
    return dataclasses.replace(deps, providers=providers, breaker=CircuitBreaker(deps.redis))


def rows(deps: Deps) -> list[LLMCall]:
    with deps.session_scope() as session:
        return list(session.scalars(select(LLMCall).order_by(LLMCall.id)))


def test_prose_wrapped_answer_passes_first_time(deps: Deps) -> None:
    alpha = Script(f"Here you go:\n```json\n{json.dumps(GOOD)}\n```\nAnything else?")
    result = call_model(scripted(deps, alpha=alpha), CTX, PROMPT, [A, B])
    assert result.data == GOOD and not result.repaired
    [row] = rows(deps)
    assert row.status == CallStatus.OK and row.prompt_tokens == 120
    assert alpha.bodies[0]["response_format"]["type"] == "json_schema"  # type: ignore[index]


def test_wrong_keys_are_billed_invalid_then_repaired(deps: Deps) -> None:
    alpha = Script('{"score": 72, "why": "fits"}', json.dumps(GOOD))
    result = call_model(scripted(deps, alpha=alpha), CTX, PROMPT, [A, B])
    assert result.data == GOOD and result.repaired
    bad, good = rows(deps)
    assert bad.status == CallStatus.INVALID_OUTPUT and "fit_score" in str(bad.error)
    assert bad.response == {"text": '{"score": 72, "why": "fits"}'}  # kept for diagnosis
    assert bad.completion_tokens == 30  # billed like any answer
    assert good.status == CallStatus.OK and good.attempt == 2 and good.model == A.model
    repair = str(alpha.bodies[1]["messages"][1]["content"])  # type: ignore[index]
    assert '{"score": 72, "why": "fits"}' in repair and "fit_score" in repair


def test_truncated_answer_then_failed_repair_moves_to_the_next_rung(deps: Deps) -> None:
    alpha = Script(('{"fit_score": 72, "ratio', "length"), "I cannot answer in JSON.")
    beta = Script(json.dumps(GOOD))
    result = call_model(scripted(deps, alpha=alpha, beta=beta), CTX, PROMPT, [A, B])
    assert result.route == B and result.data == GOOD
    statuses = [(r.model, r.status) for r in rows(deps)]
    assert statuses == [
        (A.model, CallStatus.INVALID_OUTPUT),
        (A.model, CallStatus.INVALID_OUTPUT),
        (B.model, CallStatus.OK),
    ]
    assert "cut off" in str(rows(deps)[0].error)
    assert rows(deps)[2].fallback_from == A.ref


def test_every_model_invalid_raises_a_permanent_no_valid_answer(deps: Deps) -> None:
    alpha = Script("nope", '{"fit_score": "high"}')
    beta = Script("[1, 2]", '{"fit_score": 500, "rationale": "x"}')
    with pytest.raises(NoValidAnswer, match="fit_score"):
        call_model(scripted(deps, alpha=alpha, beta=beta), CTX, PROMPT, [A, B])
    assert [r.status for r in rows(deps)] == [CallStatus.INVALID_OUTPUT] * 4
    assert all(r.cost_usd >= 0 and r.completion_tokens == 30 for r in rows(deps))


def test_secrets_in_an_invalid_answer_are_masked_in_the_ledger(deps: Deps) -> None:
    alpha = Script(f"my key is {KEY}", json.dumps(GOOD))
    call_model(scripted(deps, alpha=alpha), CTX, PROMPT, [A])
    assert KEY not in json.dumps(rows(deps)[0].response)


def test_401_costs_one_attempt_per_model_and_the_key_never_leaks(deps: Deps) -> None:
    buffer = io.StringIO()
    configure_logging(json_lines=True, stream=buffer)
    try:
        alpha, beta = Script(401), Script(json.dumps(GOOD))
        routed = scripted(deps, alpha=alpha, beta=beta)
        result = call_model(routed, CTX, PROMPT, [A, B])
        assert result.route == B
        refused, ok = rows(deps)
        assert ok.status == CallStatus.OK
        assert refused.status == CallStatus.ERROR and "HTTP 401: refused key" in str(refused.error)
        # The breaker now skips the refused model: a second call does not knock on it again.
        beta.answers.append(json.dumps(GOOD))
        call_model(routed, CallContext(Stage.SCORE, None, "run-2", None), PROMPT, [A, B])
        assert len(alpha.bodies) == 1 and len(rows(deps)) == 3
        with pytest.raises(NoValidAnswer, match="refused recently"):  # no Celery retries
            call_model(routed, CallContext(Stage.SCORE, None, "run-4", None), PROMPT, [A])
        assert len(alpha.bodies) == 1
        with pytest.raises(NoValidAnswer):  # only refusing models left: permanent, no retry
            call_model(
                scripted(deps, alpha=Script(403)),
                CallContext(Stage.SCORE, None, "r3", None),
                PROMPT,
                [Route(A.provider, "qwen/qwen-2.5-coder-32b-instruct", 100, "t")],
            )
    finally:
        configure_logging()
    with deps.session_scope() as session:
        for row in session.scalars(select(LLMCall)):
            values = {c.name: getattr(row, c.name) for c in LLMCall.__table__.columns}
            assert KEY not in json.dumps(values, default=str)
    assert KEY not in buffer.getvalue() and "llm_call_failed" in buffer.getvalue()


@pytest.mark.parametrize("code", [400, 404, 422])
def test_other_permanent_codes_skip_to_the_next_model_without_retry(deps: Deps, code: int) -> None:
    alpha, beta = Script(code), Script(json.dumps(GOOD))
    assert call_model(scripted(deps, alpha=alpha, beta=beta), CTX, PROMPT, [A, B]).route == B
    assert len(alpha.bodies) == 1


def test_timeouts_are_transient_and_do_not_open_the_breaker(deps: Deps) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow model", request=request)

    routed = scripted(deps, alpha=Script(*[slow] * 8))
    for n in range(6):  # more than the breaker's threshold of failures
        with pytest.raises(AllRoutesFailed, match="timeout"):
            call_model(routed, CallContext(Stage.SCORE, None, f"run-{n}", None), PROMPT, [A])
    assert routed.breaker is not None and not routed.breaker.is_open(A.ref)


@pytest.mark.parametrize("code", [408, 409, 500, 503])
def test_transient_codes_leave_the_retry_to_the_task(deps: Deps, code: int) -> None:
    alpha = Script(code)
    with pytest.raises(AllRoutesFailed):
        call_model(scripted(deps, alpha=alpha), CTX, PROMPT, [A])
    assert len(alpha.bodies) == 1  # one attempt: the task's retry is the only retry loop


def _too_many(seconds: str | None) -> Callable[[httpx.Request], httpx.Response]:
    headers = {"Retry-After": seconds} if seconds is not None else {}
    return lambda _: httpx.Response(429, json={"error": {"message": "slow down"}}, headers=headers)


def test_a_429_never_falls_up_the_ladder_and_holds_the_model_for_everyone(deps: Deps) -> None:
    """Issue 14: a 429 defers the call to the same model; the next rung is not asked."""
    alpha, beta = Script(*[_too_many("7")] * 6), Script(json.dumps(GOOD))
    routed = scripted(deps, alpha=alpha, beta=beta)
    routed.limiter = RateLimiter(deps.redis, RateLimits())  # type: ignore[arg-type]
    for n in range(6):  # more than the breaker's threshold
        with pytest.raises(RateLimited) as info:
            call_model(routed, CallContext(Stage.SCORE, None, f"run-{n}", None), PROMPT, [A, B])
        assert 6.5 < info.value.retry_after_s <= 7.0  # the shared cooldown's time left
    assert not beta.bodies  # never escalated to the other model
    assert routed.breaker is not None and not routed.breaker.is_open(A.ref)  # not "broken"
    ledger = rows(deps)
    assert [(r.model, r.status) for r in ledger] == [(A.model, CallStatus.ERROR)] * 6
    assert all("HTTP 429" in str(r.error) and r.cost_usd == 0 for r in ledger)
    # Every worker's limiter now holds the model back (a limit configured on it).
    other = RateLimiter(
        deps.redis,  # type: ignore[arg-type]
        RateLimits(models={A.ref: Limit(requests_per_min=600)}, max_wait_s=1.0),
    )
    with pytest.raises(RateLimited, match="429 cooldown"):
        other.admit(A.ref, 10)


def test_a_429_without_retry_after_and_without_a_limiter_still_defers(deps: Deps) -> None:
    alpha, beta = Script(_too_many(None)), Script(json.dumps(GOOD))
    with pytest.raises(RateLimited) as info:
        call_model(scripted(deps, alpha=alpha, beta=beta), CTX, PROMPT, [A, B])
    assert info.value.retry_after_s == 5.0 and not beta.bodies


def test_a_limited_model_is_not_called_and_nothing_is_reserved(deps: Deps) -> None:
    alpha, beta = Script(json.dumps(GOOD), json.dumps(GOOD)), Script(json.dumps(GOOD))
    routed = scripted(deps, alpha=alpha, beta=beta)
    limits = RateLimits(models={A.ref: Limit(requests_per_min=1)}, max_wait_s=0.0)
    routed.limiter = RateLimiter(deps.redis, limits)  # type: ignore[arg-type]
    assert call_model(routed, CTX, PROMPT, [A, B]).route.ref == A.ref
    with pytest.raises(RateLimited, match=f"model:{A.ref} req/min"):
        call_model(routed, CallContext(Stage.SCORE, None, "run-2", None), PROMPT, [A, B])
    assert len(alpha.bodies) == 1 and not beta.bodies
    assert len(rows(deps)) == 1  # a call that was never sent is no ledger row


def test_a_deferred_call_gives_its_budget_reservation_back(deps: Deps) -> None:
    from decimal import Decimal

    from pipeline.budget.guard import BudgetConfig, BudgetGuard
    from pipeline.budget.reservations import ReservationStore

    big = Decimal(1000)
    guard = BudgetGuard(
        ReservationStore(deps.redis),  # type: ignore[arg-type]
        deps.session_factory,
        BudgetConfig(limits={"daily": big, "weekly": big, "monthly": big}),
    )
    alpha = Script(json.dumps(GOOD))
    routed = dataclasses.replace(scripted(deps, alpha=alpha), budget=guard)
    limits = RateLimits(models={A.ref: Limit(requests_per_min=1)}, max_wait_s=0.0)
    routed.limiter = RateLimiter(deps.redis, limits)  # type: ignore[arg-type]
    call_model(routed, CTX, PROMPT, [A])
    with pytest.raises(RateLimited):
        call_model(routed, CallContext(Stage.SCORE, None, "run-2", None), PROMPT, [A])
    status = guard.status(fresh=True)
    assert all(p.reserved_usd == 0 for p in status.periods), status

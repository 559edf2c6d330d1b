"""The only path to a model: journal, route chain, retries and fallback, price, ledger.

Every attempt writes one ``llm_calls`` row in its own short transaction, successful or not, so the
ledger is the source of truth for spend. A successful call is journaled under a deterministic key
(run, lead, stage, call); a redelivered task finds it and replays the stored answer instead of
paying for the call again.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import select

from db.enums import CallStatus, Stage
from db.models import LLMCall
from pipeline import metrics
from pipeline.budget.guard import Reservation
from pipeline.deps import Deps
from pipeline.errors import AllRoutesFailed, ProviderRejected, ProviderUnavailable
from pipeline.llm.cache import ResponseCache
from pipeline.llm.catalog import estimate_max_cost, estimate_prompt_tokens
from pipeline.llm.providers.base import LLMProvider
from pipeline.logs import mask_secrets
from pipeline.models import GatewayResult, LLMRequest, LLMResponse, Prompt, Route, Usage

log = structlog.get_logger(__name__)
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class CallContext:
    """Who a call is for: the ledger's foreign keys and the journal key."""

    stage: Stage
    lead_id: int | None
    run_id: str | None
    campaign_id: int | None
    call_key: str = "main"
    tier: str | None = None
    """The lead's value tier: only enterprise leads may use the budget's emergency reserve."""

    @property
    def journal_key(self) -> str:
        return f"{self.run_id}:{self.lead_id}:{self.stage.value}:{self.call_key}"


def call_model(
    deps: Deps, ctx: CallContext, prompt: Prompt, chain: list[Route], *, json_mode: bool = True
) -> GatewayResult:
    """Answer ``prompt`` with the first model of ``chain`` that succeeds.

    Args:
        deps: process dependencies (providers, catalogue, sessions).
        ctx: the lead, stage and run the call belongs to.
        prompt: rendered system and user text.
        chain: primary route first, then fallbacks.
        json_mode: parse the answer as a JSON object; an unparseable answer counts as a
            failed (but billed) attempt and moves on to the next model.

    Raises:
        AllRoutesFailed: no model in the chain produced a usable answer.
    """
    replay = _journal_replay(deps, ctx)
    if replay is not None:
        return replay
    if deps.cache is not None and chain and json_mode:
        cached = _cache_hit(deps, deps.cache, ctx, prompt, chain[0])
        if cached is not None:
            return cached
    run = _ChainRun(deps, ctx, prompt, chain[0].ref if chain else None, json_mode)
    for route in chain:
        result = run.try_route(route)
        if result is not None:
            if deps.cache is not None and run.primary is not None:
                deps.cache.put(ctx.stage, run.primary, prompt, result.text, route)
            return result
    raise AllRoutesFailed(f"{ctx.stage.value}: every model failed: " + "; ".join(run.errors[-6:]))


@dataclass(slots=True)
class _ChainRun:
    """One walk down a fallback chain: attempt numbers and errors across its routes."""

    deps: Deps
    ctx: CallContext
    prompt: Prompt
    primary: str | None
    json_mode: bool
    attempt: int = 0
    errors: list[str] = field(default_factory=list)

    def try_route(self, route: Route) -> GatewayResult | None:
        """Up to ``attempts_per_model`` tries of one model; None moves on to the next."""
        deps = self.deps
        provider = deps.providers.get(route.provider)
        if provider is None or (deps.breaker is not None and deps.breaker.is_open(route.ref)):
            why = "provider not configured" if provider is None else "circuit open"
            self.errors.append(f"{route.ref}: {why}")
            return None
        fallback_from = self.primary if route.ref != self.primary else None
        for try_no in range(deps.retry.attempts_per_model):
            self.attempt += 1
            request = LLMRequest(
                model=route.model,
                system=self.prompt.system,
                user=self.prompt.user,
                max_tokens=route.max_output_tokens,
                json_mode=self.json_mode,
            )
            reservation = _reserve(deps, self.ctx, route, request)
            started = time.monotonic()
            record = (deps, self.ctx, route, self.prompt, self.attempt, fallback_from, started)
            try:
                response = _complete(deps, provider, request, reservation)
            except ProviderUnavailable as exc:
                _record(*record, error=str(exc))
                if deps.breaker is not None:
                    deps.breaker.failure(route.ref)
                self.errors.append(f"{route.ref}: {exc.reason}")
                if try_no + 1 < deps.retry.attempts_per_model:
                    deps.sleep(_backoff(deps, try_no, exc.retry_after_s))
                continue
            except ProviderRejected as exc:
                _record(*record, error=str(exc))
                self.errors.append(f"{route.ref}: {exc.reason}")
                return None
            result = _settle(*record, response, json_mode=self.json_mode, reservation=reservation)
            if result is None:
                self.errors.append(f"{route.ref}: unusable output")
            elif deps.breaker is not None:
                deps.breaker.success(route.ref)
            return result
        return None


def _reserve(deps: Deps, ctx: CallContext, route: Route, request: LLMRequest) -> Reservation | None:
    """Reserve this attempt's maximum cost (raises BudgetRefused when it does not fit)."""
    if deps.budget is None:
        return None
    tokens = estimate_prompt_tokens(request.system, request.user)
    cost = estimate_max_cost(deps.routing.catalog, route.ref, tokens, request.max_tokens)
    return deps.budget.reserve(cost, campaign_id=ctx.campaign_id, tier=ctx.tier)


def _complete(
    deps: Deps, provider: LLMProvider, request: LLMRequest, reservation: Reservation | None
) -> LLMResponse:
    try:
        return provider.complete(request)
    except BaseException:
        if reservation is not None and deps.budget is not None:
            deps.budget.release(reservation)
        raise


def _backoff(deps: Deps, try_no: int, retry_after_s: float | None) -> float:
    wait = deps.retry.backoff_s * (2**try_no)
    if retry_after_s is not None:
        wait = max(wait, retry_after_s)
    return float(min(wait, deps.retry.max_backoff_s))


def _settle(
    deps: Deps,
    ctx: CallContext,
    route: Route,
    prompt: Prompt,
    attempt: int,
    fallback_from: str | None,
    started: float,
    response: LLMResponse,
    *,
    json_mode: bool,
    reservation: Reservation | None = None,
) -> GatewayResult | None:
    """Price and record a completed call; None when its output is unusable (still billed)."""
    cost, price_version = deps.routing.catalog.cost(route.ref, response.usage)
    data = parse_json_object(response.text) if json_mode else {}
    usable = data is not None and response.finish_reason != "length"
    _record(
        deps,
        ctx,
        route,
        prompt,
        attempt,
        fallback_from,
        started,
        response=response,
        cost=cost,
        price_version=price_version,
        error=None if usable else f"unusable output (finish_reason={response.finish_reason})",
    )
    if reservation is not None and deps.budget is not None:
        deps.budget.settle(reservation, cost)  # after the ledger row: reconcile stays safe
    if not usable or data is None:
        return None
    return GatewayResult(
        text=response.text,
        data=data,
        route=route,
        usage=response.usage,
        cost_usd_str=str(cost),
        attempts=attempt,
        fallbacks=(fallback_from,) if fallback_from else (),
    )


def _record(
    deps: Deps,
    ctx: CallContext,
    route: Route,
    prompt: Prompt,
    attempt: int,
    fallback_from: str | None,
    started: float,
    *,
    response: LLMResponse | None = None,
    cost: Decimal = Decimal(0),
    price_version: str = "",
    error: str | None = None,
    cache_hit: bool = False,
) -> None:
    latency_ms = int((time.monotonic() - started) * 1000)
    usage = response.usage if response else Usage(0, 0)
    row = LLMCall(
        request_id=uuid.uuid4().hex,
        journal_key=ctx.journal_key,
        lead_id=ctx.lead_id,
        campaign_id=ctx.campaign_id,
        run_id=ctx.run_id,
        stage=ctx.stage.value,
        provider=route.provider,
        model=route.model,
        routing_reason=route.reason,
        cache_hit=cache_hit,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        cost_usd=cost,
        price_version=price_version,
        prompt_version=prompt.version,
        latency_ms=latency_ms,
        simulated=bool(response and response.simulated),
        fallback_from=fallback_from,
        attempt=attempt,
        status=CallStatus.OK if error is None else CallStatus.ERROR,
        error=mask_secrets(error) if error else None,  # never a configured key in the ledger
        response={"text": response.text} if response and error is None else None,
    )
    with deps.session_scope() as session:
        session.add(row)
    metrics.observe_call(row)
    event = "llm_call_settled" if error is None else "llm_call_failed"
    log.info(
        event,
        stage=ctx.stage.value,
        lead_id=ctx.lead_id,
        provider=route.provider,
        model=route.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=str(cost),
        latency_ms=latency_ms,
        attempt=attempt,
        error=error,
        simulated=row.simulated,
    )


def _cache_hit(
    deps: Deps, cache: ResponseCache, ctx: CallContext, prompt: Prompt, requested: Route
) -> GatewayResult | None:
    """A cached answer to the same prompt for the same requested model: $0, one ledger row."""
    hit = cache.get(ctx.stage, requested.ref, prompt)
    data = parse_json_object(hit.text) if hit is not None else None
    if hit is None or data is None:
        return None
    route = Route(hit.provider, hit.model, requested.max_output_tokens, f"cache:{requested.reason}")
    answer = LLMResponse(hit.text, Usage(0, 0), hit.provider, hit.model)
    _record(deps, ctx, route, prompt, 0, None, time.monotonic(), response=answer, cache_hit=True)
    return GatewayResult(
        text=hit.text,
        data=data,
        route=route,
        usage=Usage(0, 0),
        cost_usd_str="0",
        cache_hit=True,
        attempts=0,
    )


def _journal_replay(deps: Deps, ctx: CallContext) -> GatewayResult | None:
    """The stored answer of an earlier successful call with the same journal key, if any."""
    with deps.session_scope() as session:
        row = session.scalars(
            select(LLMCall)
            .where(LLMCall.journal_key == ctx.journal_key, LLMCall.status == CallStatus.OK)
            .order_by(LLMCall.id)
            .limit(1)
        ).first()
    if row is None or row.response is None:
        return None
    text = str(row.response.get("text", ""))
    data = parse_json_object(text) or {}
    route = Route(row.provider, row.model, 0, row.routing_reason)
    log.info("llm_call_replayed", stage=ctx.stage.value, lead_id=ctx.lead_id, model=row.model)
    return GatewayResult(
        text=text,
        data=data,
        route=route,
        usage=Usage(row.prompt_tokens, row.completion_tokens),
        cost_usd_str=str(row.cost_usd),
        attempts=row.attempt,
        fallbacks=(row.fallback_from,) if row.fallback_from else (),
    )


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in a model's answer (code fences tolerated), or None."""
    cleaned = _FENCE.sub("", text.strip())
    start, end = cleaned.find("{"), cleaned.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(cleaned[start : end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None

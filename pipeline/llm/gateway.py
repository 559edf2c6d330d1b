"""The only path to a model: journal, route chain, contract, repair and fallback, price, ledger.

Every attempt writes one ``llm_calls`` row, successful or not, so the ledger is the source of truth
for spend: a failed or invalid attempt in its own short transaction, a successful one (journaled
first) or a cache hit ($0) with its stage's finishing transaction when the call belongs to a
claimed stage (``ledger.StageLedger``; its reservation is settled after that commit). A
successful call is journaled under a deterministic key (run, lead, stage, call); a redelivered
task finds it and replays the stored answer instead of paying for the call again.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import structlog

from db.enums import CallStatus, Stage
from pipeline import metrics
from pipeline.budget.guard import Peeked, Reservation
from pipeline.deps import Deps
from pipeline.errors import (
    AllRoutesFailed,
    NoValidAnswer,
    PipelineError,
    ProviderRejected,
    ProviderUnavailable,
    RateLimited,
)
from pipeline.llm import journal, ledger
from pipeline.llm.breaker import CircuitBreaker
from pipeline.llm.cache import ResponseCache
from pipeline.llm.catalog import estimate_max_cost, estimate_prompt_tokens
from pipeline.llm.contracts import (
    REPAIR_SUFFIX,
    Contract,
    contract_for,
    json_schema,
    repair_prompt,
    shown_answer,
    validate,
)
from pipeline.llm.providers.base import LLMProvider
from pipeline.llm.ratelimit import DEFAULT_429_COOLDOWN_S, Permit, cooldown_key
from pipeline.logs import mask_secrets
from pipeline.models import GatewayResult, LLMRequest, LLMResponse, Prompt, Route, Usage

log = structlog.get_logger(__name__)
_ZERO = Decimal(0)
_NO_USAGE = Usage(0, 0)
MODEL_REFUSED = frozenset({401, 403, 404})
"""Refusals that hold for every call to the model (bad key, no access, unknown model)."""


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
    replay: bool = True
    """False when no earlier execution can have made this call (the stage was claimed for the
    first time): the journal lookups, one transaction and one Redis round trip, are skipped."""
    pending: ledger.StageLedger | None = None
    """The stage's pending ledger: a successful call's row commits with the stage's result."""

    @property
    def journal_key(self) -> str:
        return f"{self.run_id}:{self.lead_id}:{self.stage.value}:{self.call_key}"


def call_model(
    deps: Deps,
    ctx: CallContext,
    prompt: Prompt,
    chain: list[Route],
    *,
    json_mode: bool = True,
    contract: type[Contract] | None = None,
    read_cache: bool = True,
) -> GatewayResult:
    """Answer ``prompt`` with the first model of ``chain`` whose answer meets the contract.

    Each model gets one attempt (the task's retry is the only retry loop) and, when it answers
    outside the contract, one repair call; then the next rung is tried.

    Args:
        deps: process dependencies (providers, catalogue, sessions).
        ctx: the lead, stage and run the call belongs to.
        prompt: rendered system and user text.
        chain: primary route first, then fallbacks.
        json_mode: expect a JSON object; False returns the text as it came.
        contract: the answer's pydantic contract (default: the stage's, ``contracts.CONTRACTS``).
        read_cache: False for a call meant to improve on an earlier answer (an escalation, a
            second council draft): the cached answer is exactly what it must not get back.

    Raises:
        AllRoutesFailed: a model was unavailable for now (timeout, 429, 5xx): retry later.
        NoValidAnswer: every model refused the request or answered outside the contract.
    """
    shape = (contract or contract_for(ctx.stage)) if json_mode else None
    if ctx.replay:
        replay = _journal_replay(deps, ctx, shape) or _replay_journaled(deps, ctx, prompt, shape)
        if replay is not None:
            return replay
    primary = chain[0] if chain else None
    cache_key = _cache_key(deps, ctx, prompt, primary) if read_cache and shape else None
    # Without a budget there is no reservation round trip to carry the lookup: read it now.
    if cache_key is not None and primary is not None and shape is not None and deps.budget is None:
        cached = _cache_hit(deps, ctx, prompt, primary, shape, _get(deps, cache_key))
        if cached is not None:
            return cached
        cache_key = None
    run = _ChainRun(deps, ctx, prompt, primary, shape, cache_key=cache_key)
    for route in chain:
        result = run.try_route(route)
        if result is not None:
            if not result.cache_hit:
                _cache_put(deps, ctx, prompt, primary, result)
            return result
    raise run.failure()


@dataclass(slots=True)
class _ChainRun:
    """One walk down a fallback chain: attempt numbers and errors across its routes."""

    deps: Deps
    ctx: CallContext
    prompt: Prompt
    primary_route: Route | None
    contract: type[Contract] | None
    cache_key: str | None = None
    """Looked up with the first reservation (one round trip), then cleared."""
    attempt: int = 0
    errors: list[str] = field(default_factory=list)
    transient: bool = False
    """Some model failed in a way that may pass (timeout, 429, 5xx, open breaker)."""
    cooled: set[str] = field(default_factory=set)
    """Models whose 429 cooldown this run slept out: their key may outlive the deadline by a
    moment, so it is not read again."""

    @property
    def primary(self) -> str | None:
        return self.primary_route.ref if self.primary_route is not None else None

    def try_route(self, route: Route) -> GatewayResult | None:
        """One call to one model, plus one repair call if it broke the contract."""
        provider = self.deps.providers.get(route.provider)
        if provider is None:
            self.errors.append(f"{route.ref}: provider not configured")
            return None
        if self.deps.budget is None and self._skipped(route):
            return None  # with a budget, the reservation script checks the breaker
        outcome = self._attempt(provider, route, self.prompt)
        if not isinstance(outcome, _Invalid) or self.contract is None:
            return outcome if isinstance(outcome, GatewayResult) else None
        repair = repair_prompt(self.prompt, self.contract, outcome.text, outcome.errors)
        repaired = self._attempt(provider, route, repair)
        return repaired if isinstance(repaired, GatewayResult) else None

    def _skipped(self, route: Route) -> bool:
        """A model that refused us recently (permanent) or whose breaker is open (transient)."""
        breaker = self.deps.breaker
        if breaker is None:
            return False
        refused, opened = breaker.blocked(route.ref)
        if refused is not None:
            self.errors.append(f"{route.ref}: refused recently: {refused}")
            return True
        if opened:
            self.errors.append(f"{route.ref}: circuit open")
            self.transient = True
            return True
        return False

    def _attempt(
        self, provider: LLMProvider, route: Route, prompt: Prompt
    ) -> GatewayResult | _Invalid | None:
        """One billed attempt: a result, an invalid answer (to repair) or None (failed).

        The reservation's round trip also reads the cache (first attempt) and the breaker.
        """
        deps = self.deps
        request = _request(route, prompt, self.contract)
        peek = self._peek_keys(route)
        reserved = _reserve(deps, self.ctx, route, request, peek)
        self.cache_key = None
        if isinstance(reserved, Peeked):
            key = peek[reserved.index]
            if key == cooldown_key(route.ref) and deps.limiter is not None:
                deps.limiter.cooling(route.ref, reserved.value)  # sleeps, or RateLimited
                self.cooled.add(route.ref)
                return self._attempt(provider, route, prompt)
            hit = self._peeked(key, reserved.value, route)
            if hit is None and key.startswith("cache:"):
                return self._attempt(provider, route, prompt)  # an unusable cached answer
            return hit
        reservation = reserved
        self.attempt += 1
        fallback_from = self.primary if route.ref != self.primary else None
        permit = _admit(deps, route, request, reservation)  # rate limit: waits or RateLimited
        started = time.monotonic()
        record = (deps, self.ctx, route, prompt, self.attempt, fallback_from, started)
        try:
            response = _complete(deps, provider, request, reservation, permit)
        except ProviderUnavailable as exc:
            _record(*record, error=str(exc))
            if exc.status_code == 429:  # never up the ladder: the same model, later
                raise _rate_limited(deps, route, exc) from exc
            _note_unavailable(deps, route, exc)
            self.errors.append(f"{route.ref}: {exc.reason}")
            self.transient = True
            return None
        except ProviderRejected as exc:
            _record(*record, error=str(exc))
            _note_rejected(deps, route, exc)
            self.errors.append(f"{route.ref}: {exc.reason}")
            return None
        # Journal hook (issue 12): the paid answer is durable before the ledger write.
        request_id = reservation.rid if reservation is not None else uuid.uuid4().hex
        entry = journal.Entry.of(request_id, route, response, self.attempt, fallback_from)
        checked = _check(response, self.contract)
        # A valid answer resets the breaker's failure count in the journal's round trip.
        breaker = deps.breaker
        shared = breaker is not None and breaker.redis is not None and breaker.redis is deps.redis
        clear = (
            [CircuitBreaker.fails_key(route.ref)] if shared and not isinstance(checked, str) else []
        )
        journaled = journal.remember(deps.redis, self.ctx.journal_key, entry, clear=clear)
        outcome = _settle(
            *record,
            response,
            contract=self.contract,
            reservation=reservation,
            request_id=request_id,
            journaled=journaled,
            checked=checked,
        )
        if isinstance(outcome, _Invalid):
            self.errors.append(f"{route.ref}: invalid output: {outcome.errors}")
        elif deps.breaker is not None and not (clear and journaled):
            deps.breaker.success(route.ref)
        return outcome

    def _peek_keys(self, route: Route) -> list[str]:
        keys = [self.cache_key] if self.cache_key is not None else []
        if self.deps.breaker is not None and self.deps.breaker.redis is not None:
            keys += [CircuitBreaker.refused_key(route.ref), CircuitBreaker.open_key(route.ref)]
        limiter = self.deps.limiter
        if limiter is not None and route.ref not in self.cooled:
            cooling = limiter.peek_key(route.ref)  # an unlimited model's 429 cooldown
            if cooling is not None:
                keys.append(cooling)
        return keys

    def _peeked(self, key: str, value: bytes, route: Route) -> GatewayResult | None:
        """A peek key existed: a cached answer (returned when valid), or a blocked model."""
        if key.startswith("cache:"):
            if self.primary_route is None or self.contract is None:
                return None
            return _cache_hit(
                self.deps, self.ctx, self.prompt, self.primary_route, self.contract, value
            )
        if key == CircuitBreaker.refused_key(route.ref):
            self.errors.append(f"{route.ref}: refused recently: {value.decode()}")
        else:
            self.errors.append(f"{route.ref}: circuit open")
            self.transient = True
        return None

    def failure(self) -> PipelineError:
        """The error for a chain that produced no valid answer."""
        errors = "; ".join(self.errors[-6:])
        if self.transient:
            return AllRoutesFailed(f"{self.ctx.stage.value}: every model failed: {errors}")
        return NoValidAnswer(f"{self.ctx.stage.value}: no valid answer: {errors}")


@dataclass(frozen=True, slots=True)
class _Invalid:
    """An answer that broke the contract: its text and what was wrong (for the repair call)."""

    text: str
    errors: str


def request_for(route: Route, prompt: Prompt, contract: type[Contract] | None) -> LLMRequest:
    """The provider request the gateway would send for ``prompt`` on ``route`` (the batch path
    sends the same one)."""
    return _request(route, prompt, contract)


def _request(route: Route, prompt: Prompt, contract: type[Contract] | None) -> LLMRequest:
    return LLMRequest(
        model=route.model,
        system=prompt.system,
        user=prompt.user,
        max_tokens=route.max_output_tokens,
        json_mode=contract is not None,
        schema=json_schema(contract) if contract is not None else None,
        schema_name=contract.__name__ if contract is not None else "answer",
    )


def _note_unavailable(deps: Deps, route: Route, exc: ProviderUnavailable) -> None:
    """Count a failure for the breaker, except a timeout: slow is not broken."""
    if deps.breaker is not None and not exc.timeout:
        deps.breaker.failure(route.ref)


def _note_rejected(deps: Deps, route: Route, exc: ProviderRejected) -> None:
    """A refused key or unknown model is refused for every call: take it out of the chains."""
    if deps.breaker is not None and exc.status_code in MODEL_REFUSED:
        deps.breaker.trip(route.ref, reason=exc.reason)


def _reserve(
    deps: Deps, ctx: CallContext, route: Route, request: LLMRequest, peek: list[str]
) -> Reservation | Peeked | None:
    """Reserve this attempt's maximum cost (raises BudgetRefused when it does not fit), unless
    one of the ``peek`` keys exists (a cached answer, a blocked model): then that."""
    if deps.budget is None:
        return None
    tokens = estimate_prompt_tokens(request.system, request.user)
    cost = estimate_max_cost(deps.routing.catalog, route.ref, tokens, request.max_tokens)
    return deps.budget.reserve(cost, campaign_id=ctx.campaign_id, tier=ctx.tier, peek=peek)


def _complete(
    deps: Deps,
    provider: LLMProvider,
    request: LLMRequest,
    reservation: Reservation | None,
    permit: Permit | None = None,
) -> LLMResponse:
    try:
        return provider.complete(request)
    except BaseException:
        if reservation is not None and deps.budget is not None:
            deps.budget.release(reservation)
        raise
    finally:
        if permit is not None and deps.limiter is not None:
            deps.limiter.release(permit)  # a concurrency lease only; no Redis step otherwise


def _admit(
    deps: Deps, route: Route, request: LLMRequest, reservation: Reservation | None
) -> Permit | None:
    """Wait for this call's slot under the shared limits (``llm/ratelimit.py``).

    Raises:
        RateLimited: the slot is further away than the limiter waits; the task goes later
            (the call's budget reservation is released: it was never sent).
    """
    if deps.limiter is None:
        return None
    tokens = estimate_prompt_tokens(request.system, request.user) + request.max_tokens
    try:
        return deps.limiter.admit(route.ref, tokens)
    except BaseException:
        if reservation is not None:
            _release_quietly(deps, reservation)
        raise


def _rate_limited(deps: Deps, route: Route, exc: ProviderUnavailable) -> RateLimited:
    """A 429: every worker holds the model back for its Retry-After; this task goes later."""
    wait = exc.retry_after_s or DEFAULT_429_COOLDOWN_S
    if deps.limiter is not None:
        wait = deps.limiter.penalize(route.ref, exc.retry_after_s)
    return RateLimited(f"{route.ref} answered 429", wait, refused=True)


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
    contract: type[Contract] | None,
    reservation: Reservation | None = None,
    request_id: str | None = None,
    journaled: bool = False,
    checked: dict[str, Any] | str | None = None,
) -> GatewayResult | _Invalid:
    """Price and record a completed call: a result, or the reason it broke the contract.

    An invalid answer is billed like any other and recorded ``invalid_output`` with its text
    (secrets masked), so a reviewer can see what the model said.
    """
    cost, price_version = deps.routing.catalog.cost(route.ref, response.usage)
    if checked is None:
        checked = _check(response, contract)
    invalid = isinstance(checked, str)
    # Only a journaled answer may wait for the stage's commit: the journal is its record.
    defer = ctx.pending is not None and journaled and not invalid and reservation is not None
    try:
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
            error=f"invalid output: {checked}" if invalid else None,
            invalid=invalid,
            request_id=request_id,
            defer=defer,
            reservation=reservation if defer else None,
        )
    except BaseException:  # the answer is journaled; the retry records it and settles nothing
        if reservation is not None:
            _release_quietly(deps, reservation)
        raise
    if reservation is not None and deps.budget is not None and not defer:
        deps.budget.settle(reservation, cost)  # after the ledger row: reconcile stays safe
    if isinstance(checked, str):
        return _Invalid(response.text, checked)
    return GatewayResult(
        text=response.text,
        data=checked,
        route=route,
        usage=response.usage,
        cost_usd_str=str(cost),
        attempts=attempt,
        fallbacks=(fallback_from,) if fallback_from else (),
        simulated=response.simulated,
        repaired=prompt.version.endswith(REPAIR_SUFFIX),
    )


def _check(response: LLMResponse, contract: type[Contract] | None) -> dict[str, Any] | str:
    """The validated answer as a dict, or why it is not one."""
    if contract is None:
        return {}
    truncated = response.finish_reason == "length"
    checked = validate(contract, response.text, truncated=truncated)
    if isinstance(checked, str):
        return checked
    return checked.model_dump(mode="json")


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
    cost: Decimal = _ZERO,
    price_version: str = "",
    error: str | None = None,
    cache_hit: bool = False,
    invalid: bool = False,
    request_id: str | None = None,
    defer: bool = False,
    reservation: Reservation | None = None,
) -> None:
    """One ledger row; an error's text is masked (a provider may echo the key back).

    ``defer``: the row waits for the stage's finishing transaction (``ctx.pending``), which
    settles ``reservation`` (a journaled successful call's; None for a cache hit) after its
    commit. Otherwise the row is written at once, in a transaction of its own.
    """
    error = mask_secrets(error) if error is not None else None
    status = CallStatus.OK if error is None else CallStatus.ERROR
    if invalid:
        status = CallStatus.INVALID_OUTPUT
    kept = response is not None and (error is None or invalid)
    latency_ms = int((time.monotonic() - started) * 1000)
    usage = response.usage if response else _NO_USAGE
    simulated = bool(response and response.simulated)
    row: dict[str, Any] = {
        "request_id": request_id or uuid.uuid4().hex,
        "journal_key": ctx.journal_key,
        "lead_id": ctx.lead_id,
        "campaign_id": ctx.campaign_id,
        "run_id": ctx.run_id,
        "stage": ctx.stage.value,
        "provider": route.provider,
        "model": route.model,
        "routing_reason": route.reason,
        "cache_hit": cache_hit,
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "cost_usd": cost,
        "price_version": price_version,
        "prompt_version": prompt.version,
        "latency_ms": latency_ms,
        "simulated": simulated,
        "fallback_from": fallback_from,
        "attempt": attempt,
        "status": status.value,
        "error": error,
        "response": {"text": _kept_text(response, invalid)} if kept and response else None,
    }
    pending = ctx.pending
    if defer and pending is not None:
        pending.defer(row, reservation, cost)
    else:
        with deps.session_scope() as session:
            ledger.add_call(session, row)
        if pending is not None:
            pending.count(cost)
    metrics.observe_call(row)
    event = "llm_call_settled" if error is None else "llm_call_failed"
    if invalid:
        event = "llm_call_invalid_output"
    log.info(
        event,
        stage=row["stage"],
        lead_id=ctx.lead_id,
        provider=route.provider,
        model=route.model,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=str(cost),
        latency_ms=latency_ms,
        attempt=attempt,
        error=error,
        simulated=simulated,
    )


def _kept_text(response: LLMResponse, invalid: bool) -> str:
    """A valid answer is kept whole (the journal replays it); an invalid one bounded, masked."""
    return shown_answer(response.text) if invalid else response.text


def _endpoint(deps: Deps, route: Route) -> str | None:
    """Who would answer ``route``: the provider's URL, so a simulator's answer never serves a
    run against the real endpoint (None when the provider is not configured)."""
    provider = deps.providers.get(route.provider)
    if provider is None:
        return None
    return str(getattr(provider, "endpoint", route.provider))


def _cache_key(deps: Deps, ctx: CallContext, prompt: Prompt, primary: Route | None) -> str | None:
    """Where a valid answer to ``prompt`` from ``primary`` (at its endpoint) is cached."""
    if deps.cache is None or primary is None:
        return None
    endpoint = _endpoint(deps, primary)
    return ResponseCache.key(ctx.stage, primary.ref, prompt, endpoint) if endpoint else None


def _get(deps: Deps, key: str) -> bytes | None:
    raw = deps.cache.redis.get(key) if deps.cache is not None else None
    return raw if isinstance(raw, bytes) or raw is None else str(raw).encode()


def _cache_hit(
    deps: Deps,
    ctx: CallContext,
    prompt: Prompt,
    requested: Route,
    contract: type[Contract],
    raw: bytes | None,
) -> GatewayResult | None:
    """A cached valid answer to the same prompt for the same model and endpoint: $0, one row.

    The hit keeps the original call's provenance (its model and whether it was simulated).
    """
    if raw is None:
        return None
    hit = ResponseCache.decode(raw)
    checked = validate(contract, hit.text)
    if isinstance(checked, str):
        return None
    route = Route(hit.provider, hit.model, requested.max_output_tokens, f"cache:{requested.reason}")
    answer = LLMResponse(hit.text, Usage(0, 0), hit.provider, hit.model, simulated=hit.simulated)
    # In a stage the $0 row waits for its finishing transaction (nothing reserved, nothing to
    # journal: an execution that never finishes loses only this row; its retry records its own).
    _record(
        deps,
        ctx,
        route,
        prompt,
        0,
        None,
        time.monotonic(),
        response=answer,
        cache_hit=True,
        defer=ctx.pending is not None,
    )
    return GatewayResult(
        text=hit.text,
        data=checked.model_dump(mode="json"),
        route=route,
        usage=Usage(0, 0),
        cost_usd_str="0",
        cache_hit=True,
        attempts=0,
        simulated=hit.simulated,
    )


def _cache_put(
    deps: Deps, ctx: CallContext, prompt: Prompt, primary: Route | None, result: GatewayResult
) -> None:
    """Store a valid answer under the model the router asked for and its endpoint."""
    endpoint = _endpoint(deps, primary) if primary is not None else None
    cache = deps.cache
    if cache is None or primary is None or endpoint is None:
        return
    args = (ctx.stage, primary.ref, prompt, result.text, result.route, endpoint, result.simulated)
    if ctx.pending is not None and deps.budget is not None:  # sent with the stage's settles
        ctx.pending.after_commit(lambda pipe: cache.put(*args, client=pipe))
    else:
        cache.put(*args)


def _journal_replay(
    deps: Deps, ctx: CallContext, contract: type[Contract] | None
) -> GatewayResult | None:
    """The stored answer of an earlier successful call with the same journal key, if any."""
    with deps.session_scope() as session:
        row = ledger.journaled_answer(session, ctx.journal_key)
    if row is None or row.response is None:
        return None
    text = str(row.response.get("text", ""))
    data: dict[str, Any] = {}
    if contract is not None:
        checked = validate(contract, text)
        if isinstance(checked, str):  # recorded before the contract existed: ask again
            return None
        data = checked.model_dump(mode="json")
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
        simulated=row.simulated,
    )


def _release_quietly(deps: Deps, reservation: Reservation) -> None:
    try:
        if deps.budget is not None:
            deps.budget.release(reservation)
    except Exception as exc:  # Redis is away too: the reconciler drops it later
        log.warning("reservation_release_failed", error=type(exc).__name__)


def _replay_journaled(
    deps: Deps, ctx: CallContext, prompt: Prompt, contract: type[Contract] | None
) -> GatewayResult | None:
    """A paid answer journaled in Redis whose ledger row was never written: write it now.

    The row keeps the entry's request id, so it is written at most once; an entry already in
    the ledger (an answer the chain moved past) is left alone. A journaled answer that breaks
    the contract is recorded (it was paid) and the call goes on as if it had not been made.
    """
    entry = journal.recall(deps.redis, ctx.journal_key)
    if entry is None:
        return None
    with deps.session_scope() as session:
        if ledger.request_recorded(session, entry.request_id):
            return None
    log.info("llm_call_recovered", stage=ctx.stage.value, lead_id=ctx.lead_id, model=entry.model)
    record = (deps, ctx, entry.route(), prompt, entry.attempt, entry.fallback_from)
    outcome = _settle(
        *record,
        time.monotonic(),
        entry.response(),
        contract=contract,
        request_id=entry.request_id,
    )
    return outcome if isinstance(outcome, GatewayResult) else None

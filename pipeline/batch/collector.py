"""The collector: a stage's requests for a batchable model wait here and go out as one group.

1. A stage whose routed model is batchable calls ``divert`` before the gateway. The request is
   stored (``batch_requests``, keyed by the sync path's journal key) and ``AwaitingBatch`` pauses
   the lead's chain; the task base frees the stage lease and schedules ``collect``.
2. ``collect`` (the ``batch`` queue) groups the pending requests of one stage and model once
   there are more than ``threshold`` of them (or a group of this model was formed a moment ago
   and these are its tail), up to ``max_group`` each, under a lease. Fewer than the threshold
   after ``window_s``: they go back to the sync path. The endpoint is down: back to sync too.
3. Every answer is journaled (Redis) the moment it arrives and written to the ledger under the
   request's journal key, exactly like a sync call; then the lead's chain is sent again from the
   stage, which replays the answer from the ledger and pays nothing again.

A collector that dies mid-group leaves its lease to run out; the next ``collect`` (scheduled, or
the beat's ``batch.recover``) takes the group over and sends again only the requests with neither
a ledger row nor a journal entry. A request left waiting past ``max_wait_s`` goes to sync.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy.exc import IntegrityError

from db.enums import CallStatus, Stage
from db.models import BatchRequest, LLMCall
from pipeline import metrics
from pipeline.batch import store
from pipeline.batch.backend import BatchBackend, BatchItem, BatchItemResult
from pipeline.batch.deadlines import deadlines
from pipeline.batch.planner import choose_path
from pipeline.batch.provider import AWAITING, PROVIDER_BACKENDS
from pipeline.batch.selfhosted import GPU_SECOND_VERSION, SelfHostedBackend
from pipeline.budget.guard import BudgetRefused, Reservation
from pipeline.errors import PipelineError
from pipeline.liveness import heartbeat_key, owner_worker, worker_id
from pipeline.llm import journal
from pipeline.llm.catalog import estimate_max_cost, estimate_prompt_tokens
from pipeline.llm.contracts import contract_for, shown_answer, validate
from pipeline.models import LLMRequest, LLMResponse, Prompt, Route, Usage

if TYPE_CHECKING:
    from redis import Redis

    from pipeline.deps import Deps
    from pipeline.llm.gateway import CallContext

log = structlog.get_logger(__name__)
DOWN_PREFIX = "leadpipe:batch:down:"
TICK_PREFIX = "leadpipe:batch:tick:"
DOWN_TTL_S = 60
BATCH_REASON = "batch"

BackendFactory = Callable[["Deps", str, Callable[[BatchItemResult], None]], BatchBackend | None]


class AwaitingBatch(Exception):
    """The lead's request waits for its group: pause the chain; ``collect`` resumes it."""

    def __init__(self, stage: str, model_ref: str, countdown_s: float, *, full: bool) -> None:
        super().__init__(f"{stage}: waiting for a batch of {model_ref}")
        self.stage = stage
        self.model_ref = model_ref
        self.countdown_s = countdown_s
        self.full = full
        """A whole group is already waiting: collect now rather than after the window."""


def divert(deps: Deps, ctx: CallContext, prompt: Prompt, route: Route, request: LLMRequest) -> None:
    """Send this call through the batch path when its model is batchable; else return.

    Returns (the caller goes on to the gateway) when the model is not batchable, the endpoint is
    known to be down, or the request was answered or sent back to sync; the gateway then replays
    the batch answer from the ledger, or calls the model itself.

    Raises:
        AwaitingBatch: the request is stored (or was already) and waits for its group.
    """
    policy = deps.batch
    threshold = policy.threshold(ctx.stage.value, route.ref) if policy is not None else None
    if policy is None or threshold is None or ctx.lead_id is None or ctx.run_id is None:
        return
    rid = ctx.journal_key
    try:
        with deps.session_scope() as session:
            row = store.find(session, rid)
            if row is None:
                if endpoint_down(deps.redis, route.provider) or store.answered_in_ledger(
                    session, rid
                ):
                    return
                if not _may_wait(deps, session, ctx, route):
                    return
                session.add(_new_request(ctx, prompt, route, request))
                status, age = store.PENDING, 0.0
            else:
                status = row.status
                age = (store.now() - store.aware(row.created_at)).total_seconds()
                if store.in_flight(session, row):  # being sent now: sync would pay twice
                    age = 0.0
            backlog = store.backlog(session, ctx.stage.value, route.ref).count
    except IntegrityError:  # a duplicate delivery registered the same request a moment ago
        status, age, backlog = store.PENDING, 0.0, 0
    if status not in store.WAITING:
        return
    if age > policy.max_wait_s:
        with deps.session_scope() as session:
            store.finish_request(session, rid, store.SYNC, "waited past max_wait_s")
        log.warning("batch_request_late", request_id=rid, waited_s=round(age))
        return
    full = backlog >= policy.max_group
    raise AwaitingBatch(ctx.stage.value, route.ref, policy.window_s, full=full)


def _may_wait(deps: Deps, session: Any, ctx: CallContext, route: Route) -> bool:
    """A provider-batch model: only when the lead's deadline leaves time for a batch."""
    policy = deps.batch
    if route.provider not in deps.batch_apis or (policy and policy.endpoint(route.provider)):
        return True
    lead = ctx.lead_id if ctx.lead_id is not None else -1
    decision = choose_path(store.now(), deadlines(session, [lead]).get(lead), deps.batch_plan)
    if decision.sync:
        log.info("batch_skipped_for_deadline", lead_id=ctx.lead_id, reason=decision.reason)
    return not decision.sync


def register(
    deps: Deps, ctx: CallContext, prompt: Prompt, route: Route, request: LLMRequest
) -> None:
    """Store one request as pending for the batch path (benchmarks and tests; ``divert`` does
    the same for a stage, deciding first whether it should)."""
    with deps.session_scope() as session:
        session.add(_new_request(ctx, prompt, route, request))


def _new_request(ctx: CallContext, prompt: Prompt, route: Route, request: LLMRequest) -> Any:
    payload = {
        "system": request.system,
        "user": request.user,
        "max_tokens": request.max_tokens,
        "json_mode": request.json_mode,
        "schema": request.schema,
        "schema_name": request.schema_name,
        "prompt_version": prompt.version,
        "provider": route.provider,
        "model": route.model,
        "max_output_tokens": route.max_output_tokens,
        "reason": route.reason,
        "tier": ctx.tier,
    }
    return BatchRequest(
        request_id=ctx.journal_key,
        lead_id=ctx.lead_id,
        run_id=ctx.run_id,
        campaign_id=ctx.campaign_id,
        stage=ctx.stage.value,
        model_ref=route.ref,
        payload=payload,
        status=store.PENDING,
    )


def endpoint_down(client: Redis | None, provider: str) -> bool:
    if client is None:
        return False
    try:
        return bool(client.exists(DOWN_PREFIX + provider))
    except Exception:  # Redis away: the batch path needs it anyway, go sync
        return True


def claim_tick(client: Redis | None, stage: str, ref: str, window_s: float, *, full: bool) -> bool:
    """One scheduled ``collect`` per (stage, model) and window; True: schedule one now."""
    if client is None:
        return True
    key = f"{TICK_PREFIX}{stage}:{ref}:{'full' if full else 'window'}"
    ttl_ms = max(200, int(window_s * 1000)) if not full else 500
    return bool(client.set(key, "1", nx=True, px=ttl_ms))


@dataclass(slots=True)
class Collected:
    """What one ``collect`` did."""

    groups: int = 0
    answered: int = 0
    to_sync: int = 0
    recovered: int = 0
    resumes: list[store.Resume] = field(default_factory=list)
    again_s: float | None = None
    """Call ``collect`` again after this long (requests still filling a group)."""


def collect(
    deps: Deps,
    stage: str,
    ref: str,
    *,
    owner: str,
    backend_for: BackendFactory | None = None,
    on_resume: Callable[[list[store.Resume]], None] | None = None,
) -> Collected:
    """Group and send the pending requests of (stage, model); take over dead groups first.

    ``on_resume`` gets the leads to continue after each group (their chains need not wait for
    the next group); without it they are all in the result's ``resumes``.
    """
    policy = deps.batch
    done = Collected()
    if policy is None:
        return done

    def flush() -> None:
        if on_resume is not None and done.resumes:
            ready, done.resumes = done.resumes, []
            on_resume(ready)

    factory = backend_for or default_backend
    threshold = policy.threshold(stage, ref) or 0
    with deps.session_scope() as session:
        store.expire_dead_leases(session, stage, ref, lambda o: _dead(deps.redis, o, owner))
        taken = store.take_over(session, stage, ref, owner, policy.lease_s)
    for group, rows in taken:
        log.warning("batch_group_taken_over", group=group.id, size=len(rows))
        _process(deps, factory, group.id, ref, [_Pending.of(r) for r in rows], done)
        flush()
    while True:
        with deps.session_scope() as session:
            backlog = store.backlog(session, stage, ref)
            since = store.now() - dt.timedelta(seconds=policy.window_s * 2)
            recent = store.group_formed_since(session, stage, ref, since)
        if backlog.count == 0 or backlog.oldest is None:
            return done
        age = (store.now() - backlog.oldest).total_seconds()
        if backlog.count > threshold or (recent and age >= policy.window_s):
            with deps.session_scope() as session:
                claimed = store.new_group(
                    session, stage, ref, "pending", owner, policy.max_group, policy.lease_s
                )
                if claimed is None:
                    return done
                group, rows = claimed
                pending = [_Pending.of(r) for r in rows]
            done.groups += 1
            _process(deps, factory, group.id, ref, pending, done)
            flush()
            continue
        if age < policy.window_s:
            done.again_s = policy.window_s - age
            return done
        with deps.session_scope() as session:
            released = store.release_pending(
                session, stage, ref, f"only {backlog.count} waiting (threshold {threshold})"
            )
            done.resumes += store.resumes(session, released)
        done.to_sync += len(released)
        log.info("batch_too_small_to_group", stage=stage, model=ref, count=len(released))
        flush()
        return done


def _dead(client: Redis | None, holder: str, me: str) -> bool:
    """A group's lease holder whose worker has no heartbeat (killed): take its group at once.

    Only a worker's owner string (``host:pid:suffix/task``) is checked; anything else waits for
    its lease to run out.
    """
    worker = owner_worker(holder)
    if client is None or holder == me or worker.count(":") < 2 or worker == worker_id():
        return False
    return not client.exists(heartbeat_key(worker))


def default_backend(
    deps: Deps, ref: str, on_result: Callable[[BatchItemResult], None]
) -> BatchBackend | None:
    """The self-hosted backend when the model's provider has a ``[batch.endpoints]`` entry."""
    provider_name = ref.partition(":")[0]
    endpoint = deps.batch.endpoint(provider_name) if deps.batch is not None else None
    provider = deps.providers.get(provider_name)
    if endpoint is None or provider is None:
        return deps.batch_apis.get(provider_name)  # a provider batch API, or None
    return SelfHostedBackend(provider, endpoint, deps.routing.catalog, on_result=on_result)


@dataclass(frozen=True, slots=True)
class _Pending:
    """A grouped request, detached from its session."""

    request_id: str
    lead_id: int | None
    run_id: str | None
    campaign_id: int | None
    stage: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, row: BatchRequest) -> _Pending:
        return cls(
            row.request_id, row.lead_id, row.run_id, row.campaign_id, row.stage, dict(row.payload)
        )

    def request(self) -> LLMRequest:
        p = self.payload
        return LLMRequest(
            model=p["model"],
            system=p["system"],
            user=p["user"],
            max_tokens=int(p["max_tokens"]),
            json_mode=bool(p["json_mode"]),
            schema=p.get("schema"),
            schema_name=str(p.get("schema_name", "answer")),
        )

    def route(self) -> Route:
        p = self.payload
        return Route(p["provider"], p["model"], int(p["max_output_tokens"]), str(p["reason"]))


def _process(
    deps: Deps,
    factory: BackendFactory,
    group_id: str,
    ref: str,
    pending: Sequence[_Pending],
    done: Collected,
) -> None:
    """Send one group and write every answer; every request ends done or back on sync."""
    by_id = {p.request_id: p for p in pending}
    journaled: set[str] = set()
    lease = _Lease(deps, group_id)

    def journal_now(result: BatchItemResult) -> None:
        item = by_id[result.request_id]
        if result.response is not None:
            entry = journal.Entry.of(item.request_id, item.route(), result.response, 1, None)
            if journal.remember(deps.redis, item.request_id, entry):
                journaled.add(item.request_id)
        lease.renew()  # a long group on a slow endpoint is still ours: nobody takes it over

    # Answered before a crash: write what the ledger or journal holds, pay nothing again.
    finished = _recover_all(deps, pending)
    done.recovered += len(finished)
    recovered = {item.request_id for item in finished}
    to_send = [item for item in pending if item.request_id not in recovered]
    backend = factory(deps, ref, journal_now) if to_send else None
    if to_send and backend is None:
        _to_sync(deps, to_send, f"no batch backend for {ref}", done)
        to_send = []
    holds, sendable = _reserve_all(deps, ref, to_send, done)
    results: Sequence[BatchItemResult] | None = []
    if sendable and backend is not None and backend.name in PROVIDER_BACKENDS:
        if _submit_provider(deps, backend, group_id, ref, sendable, holds, done):
            # Beat's ``batch.provider_poll`` collects it, or flips it to sync in time.
            with deps.session_scope() as session:
                store.finish_requests(session, [i.request_id for i in finished], store.DONE, None)
                rows = store.requests_by_id(session, [p.request_id for p in finished])
                done.resumes += store.resumes(session, rows)
            return
        results, sendable = None, []
    started = time.monotonic()
    if sendable and backend is not None:
        results = _send(deps, backend, group_id, ref, sendable, holds, done)
    answers = _Answers(ref, backend, journaled, int((time.monotonic() - started) * 1000))
    finished += _apply(deps, answers, by_id, results or [], holds, done)
    status = store.FINISHED if results is not None else store.FAILED
    with deps.session_scope() as session:
        store.finish_requests(session, [i.request_id for i in finished], store.DONE, None)
        store.finish_group(session, group_id, status, backend=_name(backend))
        rows = store.requests_by_id(session, [p.request_id for p in finished])
        done.resumes += store.resumes(session, rows)


class _Lease:
    """Extends a group's lease while its answers keep arriving (at most every quarter lease)."""

    def __init__(self, deps: Deps, group_id: str) -> None:
        self._deps, self._group_id = deps, group_id
        self._lease_s = deps.batch.lease_s if deps.batch is not None else 300.0
        self._renewed = time.monotonic()
        self._lock = threading.Lock()

    def renew(self) -> None:
        with self._lock:
            if time.monotonic() - self._renewed < self._lease_s / 4:
                return
            self._renewed = time.monotonic()
        try:
            with self._deps.session_scope() as session:
                store.renew_lease(session, self._group_id, self._lease_s)
        except Exception as exc:  # the DB blinked: the next answer renews it
            log.warning("batch_lease_renew_failed", error=type(exc).__name__)


@dataclass(slots=True)
class _Hold:
    """One budget reservation covering the requests of one campaign and tier in a group."""

    reservation: Reservation
    request_ids: set[str]
    cost: Decimal = Decimal(0)


def _reserve_all(
    deps: Deps, ref: str, items: Sequence[_Pending], done: Collected
) -> tuple[dict[str, _Hold], list[_Pending]]:
    """Reserve the group's maximum cost, one reservation per campaign and tier; requests the
    budget refuses go back to the sync path (which parks them with the budget's reason)."""
    if deps.budget is None or not deps.routing.catalog.knows(ref):
        return {}, list(items)
    parts: dict[tuple[int | None, str | None], list[_Pending]] = {}
    for item in items:
        parts.setdefault((item.campaign_id, item.payload.get("tier")), []).append(item)
    holds: dict[str, _Hold] = {}
    sendable = []
    for (campaign_id, tier), part in parts.items():
        cost = sum((_max_cost(deps, item, ref) for item in part), Decimal(0))
        try:
            reservation = deps.budget.reserve(cost, campaign_id=campaign_id, tier=tier)
        except BudgetRefused as exc:
            _to_sync(deps, part, f"budget: {exc}", done)
            continue
        hold = _Hold(reservation, {item.request_id for item in part})
        holds.update({item.request_id: hold for item in part})
        sendable += part
    return holds, sendable


def _max_cost(deps: Deps, item: _Pending, ref: str) -> Decimal:
    request = item.request()
    tokens = estimate_prompt_tokens(request.system, request.user)
    return estimate_max_cost(deps.routing.catalog, ref, tokens, request.max_tokens)


def _settle_all(deps: Deps, holds: dict[str, _Hold]) -> None:
    """Settle each reservation at what its answered requests cost (nothing: released)."""
    if deps.budget is None:
        return
    for hold in {id(h): h for h in holds.values()}.values():
        if hold.cost > 0:
            deps.budget.settle(hold.reservation, hold.cost)
        else:
            _release(deps, hold.reservation)


@dataclass(frozen=True, slots=True)
class _Answers:
    """How a group's answers are written: model, backend, what is journaled, group latency."""

    ref: str
    backend: BatchBackend | None
    journaled: set[str]
    latency_ms: int


def _apply(
    deps: Deps,
    answers: _Answers,
    by_id: dict[str, _Pending],
    results: Sequence[BatchItemResult],
    holds: dict[str, _Hold],
    done: Collected,
) -> list[_Pending]:
    """Write the answers (journal, then the ledger rows in one transaction, then settle the
    reservations); an error sends its request back to the sync path."""
    finished, failed, rows = [], [], []
    for result in results:
        item = by_id[result.request_id]
        if result.response is None:
            failed.append((item, result.error or "no answer"))
            continue
        if item.request_id not in answers.journaled:  # the sync path's order: journal first
            entry = journal.Entry.of(item.request_id, item.route(), result.response, 1, None)
            journal.remember(deps.redis, item.request_id, entry)
        cost, version = _price(deps, answers, result)
        rows.append(_ledger_call(item, result.response, cost, version, answers.latency_ms))
        if item.request_id in holds:
            holds[item.request_id].cost += cost
        finished.append(item)
    _insert(deps, rows)  # then settle: the budget reconcile stays safe (the gateway's order)
    _settle_all(deps, holds)
    for item, error in failed:
        _to_sync(deps, [item], error, done)
    done.answered += len(finished)
    return finished


def _send(
    deps: Deps,
    backend: BatchBackend,
    group_id: str,
    ref: str,
    items: Sequence[_Pending],
    holds: dict[str, _Hold],
    done: Collected,
) -> Sequence[BatchItemResult] | None:
    """Submit and wait for the results; the whole group goes to sync if the backend fails
    (None)."""
    model = ref.partition(":")[2]
    batch = [BatchItem(i.request_id, i.request()) for i in items]
    started = time.monotonic()
    try:
        handle = backend.submit(model, batch)
        with deps.session_scope() as session:
            store.mark_submitted(session, group_id, handle, backend.name)
        results = backend.poll(handle)
        while results is None:  # provider batch APIs; the self-hosted one is done already
            time.sleep(1.0)
            results = backend.poll(handle)
    except PipelineError as exc:
        _mark_down(deps, ref.partition(":")[0])
        _settle_all(deps, holds)  # nothing was answered: every reservation is released
        holds.clear()
        _to_sync(deps, items, f"batch backend failed: {exc}", done)
        log.warning("batch_group_to_sync", group=group_id, error=str(exc), size=len(items))
        return None
    log.info(
        "batch_group_done",
        group=group_id,
        model=ref,
        size=len(items),
        seconds=round(time.monotonic() - started, 3),
    )
    return results


def _submit_provider(
    deps: Deps,
    backend: BatchBackend,
    group_id: str,
    ref: str,
    items: Sequence[_Pending],
    holds: dict[str, _Hold],
    done: Collected,
) -> bool:
    """A provider batch API: submit the group and leave it ``awaiting`` (out of the take-over);
    False when the submit failed and the group went to sync. The reservations are released: a
    batch takes hours, the delivery books the real cost (``pipeline/batch/awaiting.py``)."""
    model = ref.partition(":")[2]
    try:
        handle = backend.submit(model, [BatchItem(i.request_id, i.request()) for i in items])
    except PipelineError as exc:
        _mark_down(deps, ref.partition(":")[0])
        _to_sync(deps, items, f"batch backend failed: {exc}", done)
        log.warning("batch_group_to_sync", group=group_id, error=str(exc), size=len(items))
        return False
    finally:
        _settle_all(deps, holds)  # nothing answered yet: every reservation is released
        holds.clear()
    with deps.session_scope() as session:
        store.hand_to_provider(session, group_id, AWAITING, handle, backend.name)
    log.info("provider_batch_submitted", group=group_id, handle=handle, size=len(items))
    return True


def _release(deps: Deps, reservation: Reservation | None) -> None:
    if reservation is None or deps.budget is None:
        return
    try:
        deps.budget.release(reservation)
    except Exception as exc:  # the reconciler drops it later
        log.warning("reservation_release_failed", error=type(exc).__name__)


def _mark_down(deps: Deps, provider: str) -> None:
    if deps.redis is not None:
        deps.redis.set(DOWN_PREFIX + provider, "1", ex=DOWN_TTL_S)


def _to_sync(deps: Deps, items: Sequence[_Pending], reason: str, done: Collected) -> None:
    """These requests go back to the sync path; their leads continue (and call the gateway)."""
    with deps.session_scope() as session:
        store.finish_requests(session, [i.request_id for i in items], store.SYNC, reason[:2000])
        rows = store.requests_by_id(session, [i.request_id for i in items])
        done.resumes += store.resumes(session, rows)
    done.to_sync += len(items)


def _name(backend: BatchBackend | None) -> str:
    return backend.name if backend is not None else "none"


def _recover_all(deps: Deps, items: Sequence[_Pending]) -> list[_Pending]:
    """Requests already answered: in the ledger, or journaled by a collector that died before
    writing its rows (written now, from the journal, at the catalogue price)."""
    ids = [i.request_id for i in items]
    with deps.session_scope() as session:
        known = store.in_ledger(session, ids)
    found, rows = [], []
    for item in items:
        if item.request_id in known:
            found.append(item)
            continue
        entry = journal.recall(deps.redis, item.request_id)
        if entry is None:
            continue
        response = entry.response()
        ref = f"{entry.provider}:{entry.model}"
        cost, version = deps.routing.catalog.cost(ref, response.usage)
        rows.append(_ledger_call(item, response, cost, version, 0))
        found.append(item)
    _insert(deps, rows)
    return found


def _price(deps: Deps, answers: _Answers, result: BatchItemResult) -> tuple[Decimal, str]:
    """The backend's price when it gives one (GPU-seconds, batch discount), else the catalogue's."""
    response = result.response
    assert response is not None
    if result.cost_usd is None:
        return deps.routing.catalog.cost(answers.ref, response.usage)
    endpoint = deps.batch.endpoint(answers.ref.partition(":")[0]) if deps.batch else None
    gpu = endpoint is not None and endpoint.usd_per_gpu_second is not None
    return result.cost_usd, GPU_SECOND_VERSION if gpu else _name(answers.backend)


def _ledger_call(
    item: _Pending, response: LLMResponse, cost: Decimal, price_version: str, latency_ms: int
) -> LLMCall:
    """One ledger row under the request's journal key: ok, or invalid_output (still billed)."""
    problem: str | None = None
    if item.payload.get("json_mode", True):
        checked = validate(
            contract_for(Stage(item.stage)),
            response.text,
            truncated=response.finish_reason == "length",
        )
        problem = checked if isinstance(checked, str) else None
    route = item.route()
    usage = response.usage or Usage(0, 0)
    return LLMCall(
        request_id=item.request_id,
        journal_key=item.request_id,
        lead_id=item.lead_id,
        campaign_id=item.campaign_id,
        run_id=item.run_id,
        stage=item.stage,
        provider=route.provider,
        model=route.model,
        routing_reason=f"{route.reason};{BATCH_REASON}" if route.reason else BATCH_REASON,
        prompt_tokens=usage.input_tokens,
        completion_tokens=usage.output_tokens,
        cost_usd=cost,
        price_version=price_version,
        prompt_version=str(item.payload.get("prompt_version", ""))[:16],
        latency_ms=latency_ms,
        simulated=response.simulated,
        attempt=1,
        status=CallStatus.OK if problem is None else CallStatus.INVALID_OUTPUT,
        error=f"invalid output: {problem}" if problem else None,
        response={"text": shown_answer(response.text) if problem else response.text},
    )


def _insert(deps: Deps, rows: Sequence[LLMCall]) -> None:
    """The group's ledger rows in one transaction; one by one if some were written before."""
    if not rows:
        return
    try:
        with deps.session_scope() as session:
            session.add_all(rows)
    except IntegrityError:  # a collector of this group wrote some of them before it died
        for row in rows:
            try:
                with deps.session_scope() as session:
                    session.add(_detached_copy(row))
            except IntegrityError:
                continue
    for row in rows:
        metrics.observe_call(row)


def _detached_copy(row: LLMCall) -> LLMCall:
    columns = {c.key: getattr(row, c.key) for c in LLMCall.__table__.columns if c.key != "id"}
    return LLMCall(**columns)

"""Issue 12's code-read defects and fault paths, each against real PostgreSQL/SQLite and Redis."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus, LeadStatus, Stage, StageStatus
from db.migrate import upgrade
from db.models import Lead, LLMCall, QueueState, StageResult
from db.session import make_engine, make_session_factory
from pipeline.budget.guard import BudgetConfig, BudgetGuard
from pipeline.budget.reservations import ReservationStore
from pipeline.campaigns.retry import find_retryable, reopen
from pipeline.deps import Deps
from pipeline.liveness import OWNER, heartbeat_key, is_transient
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.prompts import render
from pipeline.stages import classify, score
from pipeline.stages._common import StageBusy, claim, mark_failed, mark_parked, release
from simulator import SimulatorServer
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch
from workers.ops import resume_rolled_over

pytestmark = pytest.mark.integration
BIG = Decimal(1000)
THIRD_ROW = "Initech,,bill@initech.test,Bill,COO,Software,300,US,,"
CONFIG = BudgetConfig(
    limits={"daily": Decimal("10"), "weekly": BIG, "monthly": BIG}, emergency_reserve=Decimal(0)
)


def _as(owner: str) -> Any:
    return OWNER.set(owner)


def _alive(client: redis.Redis, owner: str) -> None:
    """Publish ``owner`` as running in its worker, as that worker's heartbeat does."""
    published = {"tags": [], "owners": [owner]}
    client.set(heartbeat_key(owner.partition("/")[0]), json.dumps(published), ex=60)


def test_the_loser_of_a_first_claim_never_frees_the_winners_lease(deps: Deps) -> None:
    assert deps.redis is not None
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    lead_id, run = batch.leads[0][0], batch.run_id
    _alive(deps.redis, "w1/task-a")
    token = _as("w1/task-a")
    assert claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY) is not None
    OWNER.reset(token)
    token = _as("w2/task-b")  # a duplicate delivery on another worker
    with pytest.raises(StageBusy):
        claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY)
    # PipelineTask's failure path releases "its" lease: it must not be the winner's.
    assert release(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY) is False
    with pytest.raises(StageBusy):
        claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY)
    OWNER.reset(token)
    with deps.session_scope() as session:
        row = session.scalars(select(StageResult)).one()
        assert (row.owner, row.attempts) == ("w1/task-a", 1)


def test_a_dead_workers_lease_is_taken_over_without_waiting_for_it(deps: Deps) -> None:
    assert deps.redis is not None
    deps.heartbeat_grace_s = 0  # the claim happened "long ago" relative to the grace
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    lead_id, run = batch.leads[0][0], batch.run_id
    _alive(deps.redis, "w1/task-a")
    token = _as("w1/task-a")
    claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY)
    OWNER.reset(token)
    token = _as("w2/task-b")
    with pytest.raises(StageBusy):  # the owner is alive: still its lease (lease_s is 300 s)
        claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY)
    deps.redis.delete(heartbeat_key("w1"))  # kill -9: the heartbeat expires
    assert claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY) is not None
    OWNER.reset(token)
    with deps.session_scope() as session:
        row = session.scalars(select(StageResult)).one()
        assert (row.owner, row.status, row.attempts) == ("w2/task-b", StageStatus.RUNNING, 2)


def _stats(sim: SimulatorServer) -> dict[str, Any]:
    url = sim.url.removesuffix("/v1") + "/_sim/stats"
    stats: dict[str, Any] = httpx.get(url).json()
    return stats


@pytest.fixture
def flaky_ledger(session_factory: sessionmaker[Session]) -> Iterator[list[int]]:
    """The database goes away exactly when the first successful ledger row is written (the
    gateway writes its rows with a Core INSERT: caught at the cursor)."""
    failures = [1]

    def before_cursor_execute(
        _conn: Any, _cursor: Any, statement: str, params: Any, _ctx: Any, many: bool
    ) -> None:
        rows = params if many else [params]
        ok = any(r.get("status") == CallStatus.OK for r in rows if isinstance(r, dict))
        if statement.startswith("INSERT INTO llm_calls") and ok and failures[0] > 0:
            failures[0] -= 1
            raise OperationalError("INSERT INTO llm_calls", {}, ConnectionError("server closed"))

    event.listen(Engine, "before_cursor_execute", before_cursor_execute)
    yield failures
    event.remove(Engine, "before_cursor_execute", before_cursor_execute)


def test_an_answer_paid_before_a_database_outage_is_replayed_not_paid_again(
    deps: Deps, simulator: SimulatorServer, flaky_ledger: list[int]
) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    ctx = CallContext(Stage.CLASSIFY, batch.leads[0][0], batch.run_id, None)
    prompt = render("classify", lead={"company": "Acme Dental", "industry": "Healthcare"})
    chain = deps.routing.chain(Stage.CLASSIFY, None)
    with pytest.raises(OperationalError) as raised:
        call_model(deps, ctx, prompt, chain)
    assert is_transient(raised.value) and flaky_ledger == [0]
    paid = _stats(simulator)["requests"]
    result = call_model(deps, ctx, prompt, chain)  # the task's retry
    assert _stats(simulator)["requests"] == paid == 1  # answered from the journal
    assert result.data
    with deps.session_scope() as session:
        rows = session.scalars(select(LLMCall).where(LLMCall.status == CallStatus.OK)).all()
        assert len(rows) == 1 and rows[0].journal_key == ctx.journal_key
        assert rows[0].cost_usd > 0  # the recovered row carries the real price
    call_model(deps, ctx, prompt, chain)  # a third delivery replays from the ledger
    with deps.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(LLMCall)) == 1
    assert _stats(simulator)["requests"] == 1


def _spent(guard: BudgetGuard) -> Decimal:
    daily = {p.window.period.value: p for p in guard.status(fresh=True).periods}["daily"]
    return daily.spent_usd + daily.reserved_usd


def _budget_round_trip(client: redis.Redis, factory: sessionmaker[Session]) -> None:
    """Reconcile between the ledger commit and the settle: the call counts once."""
    guard = BudgetGuard(ReservationStore(client), factory, CONFIG)
    guard.reconcile()
    held = guard.reserve(Decimal("0.5"))
    cost = Decimal("0.25")
    with factory.begin() as session:  # the gateway's ledger row (request id = reservation id)
        session.add(
            LLMCall(
                request_id=held.rid,
                journal_key="k",
                stage="classify",
                provider="p",
                model="m",
                cost_usd=cost,
            )
        )
    guard.reconcile()  # beat's reconcile lands here
    assert _spent(guard) == cost
    guard.settle(held, cost)
    assert _spent(guard) == cost  # not 0.50: the settle does not add it a second time
    guard.reconcile()
    assert _spent(guard) == cost


def test_reconcile_between_ledger_commit_and_settle_counts_the_call_once(
    redis_client: redis.Redis, session_factory: sessionmaker[Session]
) -> None:
    _budget_round_trip(redis_client, session_factory)


@pytest.fixture
def sqlite_factory(tmp_path: Path) -> sessionmaker[Session]:
    url = f"sqlite:///{tmp_path / 'leadpipe.db'}"
    upgrade(url)
    return make_session_factory(make_engine(url))


def test_budget_paths_run_on_sqlite(
    redis_client: redis.Redis, sqlite_factory: sessionmaker[Session]
) -> None:
    _budget_round_trip(redis_client, sqlite_factory)


def test_rollover_resumes_a_budget_paused_queue_on_sqlite(
    deps: Deps, sqlite_factory: sessionmaker[Session]
) -> None:
    deps.session_factory = sqlite_factory
    deps.redis = None  # no worker to tell: the stored state is what is checked
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    with sqlite_factory.begin() as session:
        session.add(QueueState(queue="analyze", paused=True, changed_by="budget"))
        session.add(QueueState(queue="demo", paused=True, changed_by="ops"))
    with sqlite_factory.begin() as session:
        session.get_one(QueueState, "analyze").changed_at = yesterday
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    assert resume_rolled_over(deps, today) == ["analyze"]  # naive vs aware used to raise
    with sqlite_factory() as session:
        assert session.get_one(QueueState, "analyze").paused is False
        assert session.get_one(QueueState, "demo").paused is True


def test_retry_finds_failed_and_parked_leads_at_their_unfinished_stage(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW, ENTERPRISE_ROW, THIRD_ROW])
    (failed, _), (parked, _), (fine, _) = batch.leads
    run = batch.run_id
    for lead_id in (failed, parked, fine):
        classify.run(deps, lead_id=lead_id, run_id=run)
    claim(deps, lead_id=failed, run_id=run, stage=Stage.SCORE)
    mark_failed(deps, lead_id=failed, run_id=run, stage=Stage.SCORE, error="ProviderRejected: 400")
    claim(deps, lead_id=parked, run_id=run, stage=Stage.SCORE)
    mark_parked(deps, lead_id=parked, run_id=run, stage=Stage.SCORE, reason="AllRoutesFailed")
    with deps.session_scope() as session:
        found = find_retryable(session, batch_id=batch.batch_id)
        assert [(s.lead_id, s.resume_at) for s in found] == [
            (failed, Stage.SCORE),
            (parked, Stage.SCORE),
        ]
        assert find_retryable(session, campaign="nope") == []
        assert find_retryable(session, stage=Stage.ANALYZE) == []
        reopen(session, [s.lead_id for s in found])
    with deps.session_scope() as session:
        lead = session.get_one(Lead, failed)
        assert (lead.status, lead.error) == (LeadStatus.RUNNING, None)
        assert find_retryable(session) == []
    score.run(deps, lead_id=failed, run_id=run)  # the re-sent chain takes the failed stage over
    with deps.session_scope() as session:
        row = session.scalars(
            select(StageResult).where(
                StageResult.lead_id == failed, StageResult.stage == Stage.SCORE.value
            )
        ).one()
        assert row.status == StageStatus.DONE and row.attempts == 2


def test_a_lease_whose_release_failed_is_free_once_its_execution_ended(deps: Deps) -> None:
    """PostgreSQL went away mid-stage: the release failed, the worker lives, the retry runs."""
    assert deps.redis is not None
    deps.heartbeat_grace_s = 0
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    lead_id, run = batch.leads[0][0], batch.run_id
    _alive(deps.redis, "w1/task-a/1")
    token = _as("w1/task-a/1")
    claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY)
    OWNER.reset(token)
    published = {"tags": [], "owners": []}  # the execution ended; its worker still beats
    deps.redis.set(heartbeat_key("w1"), json.dumps(published), ex=60)
    token = _as("w1/task-a/2")  # the retry of the same task, on the same worker
    assert claim(deps, lead_id=lead_id, run_id=run, stage=Stage.CLASSIFY) is not None
    OWNER.reset(token)

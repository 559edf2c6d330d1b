"""Issue 4's cost rules exercised through the real stages, the simulator and PostgreSQL."""

import httpx
import pytest
from sqlalchemy import select

from db.enums import CallStatus, EmailStatus, LeadStatus, Stage
from db.models import Email, Lead, LLMCall, ReviewItem, StageResult
from pipeline.deps import Deps
from pipeline.stages import analyze, classify, demo, judge, personalize, score
from pipeline.stages._common import release
from simulator import SimulatorServer
from tests.factories import ENTERPRISE_ROW, make_batch

pytestmark = pytest.mark.integration
STAGES = (classify, score, analyze, demo, personalize, judge)
UNKNOWN_ROW = "Zeta Holdings,,ops@zeta.test,Sam,Manager,,40,DE,,"


def _run_all(deps: Deps, lead_id: int, run_id: str) -> None:
    for stage in STAGES:
        stage.run(deps, lead_id=lead_id, run_id=run_id)


def _output(deps: Deps, lead_id: int, stage: str) -> dict:
    with deps.session_scope() as session:
        return session.scalars(
            select(StageResult.output).where(
                StageResult.lead_id == lead_id, StageResult.stage == stage
            )
        ).one()


def test_unclear_lead_is_classified_by_a_cheap_model(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [UNKNOWN_ROW])
    lead_id = batch.leads[0][0]
    classify.run(deps, lead_id=lead_id, run_id=batch.run_id)
    output = _output(deps, lead_id, "classify")
    assert output["source"] == "llm" and output["rules_confidence"] < 0.8
    assert deps.routing.is_cheap(output["model"])


def test_enterprise_council_keeps_the_best_of_three(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [ENTERPRISE_ROW])
    lead_id = batch.leads[0][0]
    _run_all(deps, lead_id, batch.run_id)
    drafted = _output(deps, lead_id, "personalize")
    assert drafted["level"] == "enhanced"
    models = [c["model"] for c in drafted["candidates"]]
    assert len(models) == 3 and models[0] == "template" and len(set(models)) == 3
    verdict = _output(deps, lead_id, "judge")
    assert verdict["gate"] == 0.85
    best = max(c["overall"] for c in verdict["candidates"])
    assert verdict["overall"] >= best or verdict["escalated"]
    with deps.session_scope() as session:
        email = session.scalars(select(Email)).one()
        assert float(email.quality) == verdict["overall"]
        assert email.variant in ("A", "B") and email.template.startswith("emails/software_")


def test_personalize_outage_is_retried_and_recorded_at_no_cost(
    deps: Deps, simulator: SimulatorServer
) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [ENTERPRISE_ROW])
    lead_id = batch.leads[0][0]
    for stage in STAGES[:4]:
        stage.run(deps, lead_id=lead_id, run_id=batch.run_id)
    ladder = deps.routing.stages[Stage.PERSONALIZE].ladder
    fail = {ref.partition(":")[2]: 1.0 for ref in ladder}
    httpx.post(simulator.url.removesuffix("/v1") + "/_sim/config", json={"fail_models": fail})
    with pytest.raises(Exception, match="every model failed"):
        personalize.run(deps, lead_id=lead_id, run_id=batch.run_id)
    httpx.post(simulator.url.removesuffix("/v1") + "/_sim/config", json={"fail_models": {}})
    # the task base releases a failed stage's lease before Celery retries it
    release(deps, lead_id=lead_id, run_id=batch.run_id, stage=Stage.PERSONALIZE)
    personalize.run(deps, lead_id=lead_id, run_id=batch.run_id)  # the retry succeeds
    judge.run(deps, lead_id=lead_id, run_id=batch.run_id)
    with deps.session_scope() as session:
        lead = session.get_one(Lead, lead_id)
        email = session.scalars(select(Email)).one()
        held = session.scalars(select(ReviewItem)).all()
        assert (lead.status == LeadStatus.HELD) == (email.status == EmailStatus.HELD)
        assert len(held) == (1 if email.status == EmailStatus.HELD else 0)
        failed = session.scalars(
            select(LLMCall).where(
                LLMCall.stage == "personalize", LLMCall.status == CallStatus.ERROR
            )
        ).all()
        assert len(failed) >= len(ladder)  # the outage is in the ledger, at no cost
        assert all(row.cost_usd == 0 for row in failed)

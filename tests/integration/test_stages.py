import pytest
from sqlalchemy import func, select

from db.enums import EmailStatus, LeadStatus, StageStatus
from db.models import Email, Lead, LLMCall, ReviewItem, StageResult
from pipeline.deps import Deps
from pipeline.stages import analyze, classify, demo, judge, personalize, score
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = pytest.mark.integration
STAGES = (classify, score, analyze, demo, personalize, judge)


def _run_all(deps: Deps, lead_id: int, run_id: str) -> None:
    for stage in STAGES:
        stage.run(deps, lead_id=lead_id, run_id=run_id)


def test_whole_chain_for_smb_and_enterprise(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW, ENTERPRISE_ROW])
    for lead_id, _ in batch.leads:
        _run_all(deps, lead_id, batch.run_id)
    with deps.session_scope() as session:
        leads = {lead.company: lead for lead in session.scalars(select(Lead))}
        smb, ent = leads["Corner Bakery"], leads["Globex Software"]
        assert (smb.tier, ent.tier) == ("smb", "enterprise")
        assert ent.estimated_value_usd == 351000
        assert {smb.status, ent.status} <= {LeadStatus.COMPLETED, LeadStatus.HELD}
        demo_status = dict(
            session.execute(
                select(StageResult.lead_id, StageResult.status).where(StageResult.stage == "demo")
            ).all()
        )
        assert demo_status == {smb.id: StageStatus.SKIPPED, ent.id: StageStatus.DONE}
        emails = {e.lead_id: e for e in session.scalars(select(Email))}
        assert set(emails) == {smb.id, ent.id}
        assert "Corner Bakery" in emails[smb.id].body or emails[smb.id].status == EmailStatus.HELD
        # the injected note did not leak the system prompt into the email
        assert "leadpipe-task" not in emails[smb.id].body
        held = session.scalars(select(ReviewItem)).all()
        assert len(held) == sum(e.status == EmailStatus.HELD for e in emails.values())
        # Rules classify and score both (CRM industry given, fit outside the ambiguous band);
        # no website, so the analysis is made without a model call; enterprise gets a demo.
        stages = set(session.scalars(select(LLMCall.stage).where(LLMCall.lead_id == ent.id)))
        assert stages == {"demo", "personalize", "judge"}
        analysis = session.scalars(
            select(StageResult.output).where(StageResult.stage == "analyze")
        ).first()
        assert analysis is not None and analysis["source"] == "none"
        assert session.scalar(select(func.min(LLMCall.cost_usd))) > 0


def test_rerunning_a_finished_chain_calls_nothing(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    lead_id = batch.leads[0][0]
    _run_all(deps, lead_id, batch.run_id)
    with deps.session_scope() as session:
        before = session.scalar(select(func.count()).select_from(LLMCall))
    _run_all(deps, lead_id, batch.run_id)  # every task redelivered
    with deps.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(LLMCall)) == before
        assert session.scalar(select(func.count()).select_from(Email)) == 1


def test_crash_after_model_call_replays_instead_of_paying_again(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    lead_id = batch.leads[0][0]
    classify.run(deps, lead_id=lead_id, run_id=batch.run_id)
    # Simulate a worker killed after the personalize call was paid but before the result
    # was stored: run the stage, then reset its result row to "running".
    score.run(deps, lead_id=lead_id, run_id=batch.run_id)
    with deps.session_scope() as session:
        row = session.scalars(select(StageResult).where(StageResult.stage == "score")).one()
        row.status = StageStatus.RUNNING
        paid = session.scalar(select(func.count()).select_from(LLMCall))
    deps.stage_lease_s = 0  # the killed task's lease has expired when Redis redelivers
    score.run(deps, lead_id=lead_id, run_id=batch.run_id)
    with deps.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(LLMCall)) == paid
        row = session.scalars(select(StageResult).where(StageResult.stage == "score")).one()
        assert (row.status, row.attempts) == (StageStatus.DONE, 2)

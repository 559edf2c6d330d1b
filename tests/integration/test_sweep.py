import datetime as dt

import pytest
from sqlalchemy import select, update

from db.enums import Stage, StageStatus
from db.models import Lead, QueueState, StageResult
from pipeline.campaigns.sweep import find_stalled
from pipeline.deps import Deps
from pipeline.stages import classify, score
from pipeline.stages._common import StageBusy, claim, release
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = pytest.mark.integration
LATER = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)


def test_a_live_lease_refuses_a_second_delivery_until_released(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    lead_id = batch.leads[0][0]
    assert claim(deps, lead_id=lead_id, run_id=batch.run_id, stage=Stage.CLASSIFY) is not None
    with pytest.raises(StageBusy):
        claim(deps, lead_id=lead_id, run_id=batch.run_id, stage=Stage.CLASSIFY)
    release(deps, lead_id=lead_id, run_id=batch.run_id, stage=Stage.CLASSIFY)
    view = claim(deps, lead_id=lead_id, run_id=batch.run_id, stage=Stage.CLASSIFY)
    assert view is not None
    with deps.session_scope() as session:
        row = session.scalars(select(StageResult)).one()
        assert (row.status, row.attempts) == (StageStatus.RUNNING, 2)


def test_an_expired_lease_is_taken_over(deps: Deps) -> None:
    deps.stage_lease_s = 0
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    lead_id = batch.leads[0][0]
    claim(deps, lead_id=lead_id, run_id=batch.run_id, stage=Stage.CLASSIFY)
    assert claim(deps, lead_id=lead_id, run_id=batch.run_id, stage=Stage.CLASSIFY) is not None


def test_sweep_finds_idle_leads_and_where_they_resume(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW, ENTERPRISE_ROW])
    (smb, _), (ent, _) = batch.leads
    classify.run(deps, lead_id=smb, run_id=batch.run_id)
    score.run(deps, lead_id=smb, run_id=batch.run_id)
    with deps.session_scope() as session:
        found = {s.lead_id: s for s in find_stalled(session, older_than=LATER)}
        assert {k: v.resume_at for k, v in found.items()} == {
            smb: Stage.ANALYZE,
            ent: Stage.CLASSIFY,
        }
        assert found[ent].priority == 5 and found[ent].run_id == batch.run_id
        # nothing is stalled yet by a realistic threshold
        assert find_stalled(session, older_than=dt.datetime.now(dt.UTC) - dt.timedelta(60)) == []
        # a lead whose next stage is on a paused queue waits on purpose
        session.add(QueueState(queue="analyze", paused=True, reason="budget"))
        session.flush()
        assert [s.lead_id for s in find_stalled(session, older_than=LATER)] == [ent]
        session.execute(update(Lead).where(Lead.id == ent).values(status="completed"))
        assert find_stalled(session, older_than=LATER) == []

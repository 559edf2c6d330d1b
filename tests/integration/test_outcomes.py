import pytest
from sqlalchemy import select

from db.models import Outcome
from pipeline.campaigns.outcomes import import_outcomes
from pipeline.deps import Deps
from pipeline.reporting.report import build_report
from pipeline.stages import analyze, classify, demo, judge, personalize, score
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = pytest.mark.integration


def test_outcomes_import_feeds_reply_rates(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW, ENTERPRISE_ROW])
    for lead_id, _ in batch.leads:
        for stage in (classify, score, analyze, demo, personalize, judge):
            stage.run(deps, lead_id=lead_id, run_id=batch.run_id)
    csv_text = (
        "Email,Replied,Meeting\n"
        "ANNA@cornerbakery.test,yes,no\n"
        "cto@globex.test,no,no\n"
        "nobody@else.test,yes,yes\n"
        ",yes,no\n"
    )
    with deps.session_scope() as session:
        result = import_outcomes(session, csv_text, fmt="csv", source="crm.csv")
    assert result.imported == 2
    assert [r["row"] for r in result.rejects] == [4, 5]
    assert "no email was sent to nobody@else.test" in str(result.rejects[0]["reason"])
    with deps.session_scope() as session:  # importing again updates, it does not duplicate
        import_outcomes(session, csv_text, fmt="csv", source="crm.csv")
        assert len(session.scalars(select(Outcome)).all()) == 2
        report = build_report(session, catalog=deps.routing.catalog, is_cheap=deps.routing.is_cheap)
    levels = report["reply_rates"]["level"]
    assert levels["minimal"] == {"sent": 1, "replied": 1, "meetings": 0, "reply_rate": 1.0}
    assert levels["enhanced"]["reply_rate"] == 0.0
    assert sum(v["sent"] for v in report["reply_rates"]["variant"].values()) == 2
    assert set(report["cost_vs_value"]) == {"smb", "enterprise"}
    assert report["cost_vs_value"]["enterprise"]["avg_value_usd"] == "351000"
    assert 0 < report["cheap_call_share"] <= 1
    assert report["by_stage"]["judge"]["llm_call_rate"] >= 1.0


def test_outcomes_import_rejects_a_bad_jsonl_line_and_goes_on(deps: Deps) -> None:
    with deps.session_scope() as session:
        batch = make_batch(session, [SMB_ROW])
    for lead_id, _ in batch.leads:
        for stage in (classify, score, analyze, demo, personalize, judge):
            stage.run(deps, lead_id=lead_id, run_id=batch.run_id)
    jsonl = (
        '{"email": "nobody@else.test", "replied": "yes"}\n'
        '{"email": "anna@cornerbakery.test", "replied": \n'
        '["not", "an", "object"]\n'
        "\n"
        '{"Email": "ANNA@cornerbakery.test", "replied": true, "meeting": "yes"}\n'
    )
    with deps.session_scope() as session:
        result = import_outcomes(session, jsonl, fmt="jsonl", source="crm.jsonl")
    assert result.imported == 1
    reasons = {r["row"]: str(r["reason"]) for r in result.rejects}
    assert sorted(reasons) == [1, 2, 3]
    assert reasons[2].startswith("not valid JSON") and reasons[3] == "not a JSON object: list"
    with deps.session_scope() as session:
        outcome = session.scalars(select(Outcome)).one()
        assert outcome.replied and outcome.meeting

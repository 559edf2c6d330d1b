"""Quality gates, borderline verification and escalation, with scripted judge scores.

The provider here is a scripted stand-in (like STYLE's FakeLLM): it lets a test decide what the
judge says, which the simulator's heuristics cannot be told to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from db.enums import EmailStatus, LeadStatus, Stage
from db.models import Email, Lead, LLMCall, ReviewItem, StageResult
from pipeline.deps import Deps
from pipeline.models import LLMRequest, LLMResponse, Usage
from pipeline.stages import analyze, classify, demo, judge, personalize, score
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = pytest.mark.integration
CANNED = {
    "classify": {"industry": "software", "intent": "high", "segment": "smb", "confidence": 0.9},
    "score": {"fit_score": 60, "rationale": "A software company of a good size."},
    "analyze": {"summary": "A software company selling tools to small teams.", "products": []},
    "demo": {"title": "Demo", "outline": ["Intro"], "html": "<h1>Demo</h1>"},
}


@dataclass
class ScriptedLLM:
    name: str
    scores: list[float]
    seen: list[tuple[str, str]] = field(default_factory=list)

    def complete(self, request: LLMRequest) -> LLMResponse:
        task = request.system.split("\n", 1)[0].removeprefix("leadpipe-task: ")
        self.seen.append((task, request.model))
        if task == "judge":
            value = self.scores.pop(0)
            text = json.dumps(
                {
                    "professionalism": value,
                    "personalization": value,
                    "relevance": value,
                    "spam_risk": 0.1,
                    "overall": value,
                }
            )
        elif task == "personalize":
            body = f"Hello there, a short note written by {request.model} for your team today."
            text = json.dumps({"subject": f"For you ({request.model})", "body": body})
        else:  # every other stage gets a well-formed answer: this file is about the judge
            text = json.dumps(CANNED[task])
        return LLMResponse(text, Usage(500, 200), self.name, request.model)


def _scripted(deps: Deps, scores: list[float]) -> ScriptedLLM:
    fake = ScriptedLLM("scripted", scores)
    deps.providers = dict.fromkeys(deps.providers, fake)
    return fake


def _through_personalize(deps: Deps, row: str) -> tuple[int, str]:
    with deps.session_scope() as session:
        batch = make_batch(session, [row])
    lead_id = batch.leads[0][0]
    for stage in (classify, score, analyze, demo, personalize):
        stage.run(deps, lead_id=lead_id, run_id=batch.run_id)
    return lead_id, batch.run_id


def _verdict(deps: Deps, lead_id: int) -> dict:
    with deps.session_scope() as session:
        return session.scalars(
            select(StageResult.output).where(
                StageResult.lead_id == lead_id, StageResult.stage == "judge"
            )
        ).one()


def test_below_gate_escalates_once_then_holds(deps: Deps) -> None:
    fake = _scripted(deps, [])
    lead_id, run_id = _through_personalize(deps, SMB_ROW)  # minimal level, gate 0.65
    fake.scores[:] = [0.40, 0.50]  # the candidate, then the escalated draft
    judge.run(deps, lead_id=lead_id, run_id=run_id)
    verdict = _verdict(deps, lead_id)
    assert (verdict["gate"], verdict["escalated"], verdict["passed"]) == (0.65, True, False)
    assert verdict["overall"] == 0.5
    escalations = [m for t, m in fake.seen if t == "personalize"]
    assert len(escalations) == 2  # the original candidate and exactly one escalation
    ladder = deps.routing.stages[Stage.PERSONALIZE].ladder
    assert ladder.index(next(r for r in ladder if r.endswith(escalations[1]))) > ladder.index(
        next(r for r in ladder if r.endswith(escalations[0]))
    )
    with deps.session_scope() as session:
        assert session.get_one(Lead, lead_id).status == LeadStatus.HELD
        item = session.scalars(select(ReviewItem)).one()
        assert "below gate 0.65 after one escalation" in item.reason
        assert session.scalars(select(Email)).one().status == EmailStatus.HELD


def test_escalation_that_passes_is_approved(deps: Deps) -> None:
    fake = _scripted(deps, [])
    lead_id, run_id = _through_personalize(deps, SMB_ROW)
    fake.scores[:] = [0.30, 0.90]
    judge.run(deps, lead_id=lead_id, run_id=run_id)
    verdict = _verdict(deps, lead_id)
    assert verdict["passed"] and verdict["escalated"] and verdict["overall"] == 0.9
    with deps.session_scope() as session:
        assert session.get_one(Lead, lead_id).status == LeadStatus.COMPLETED
        rows = session.scalars(select(LLMCall).where(LLMCall.journal_key.like("%:escalation")))
        assert [float(r.quality_score or 0) for r in rows] == [0.9]


def test_borderline_score_is_verified_by_the_strongest_judge(deps: Deps) -> None:
    fake = _scripted(deps, [])
    lead_id, run_id = _through_personalize(deps, ENTERPRISE_ROW)  # enhanced, gate 0.85
    # three candidates: 0.70, 0.83 (borderline -> verified at 0.88), 0.60
    fake.scores[:] = [0.70, 0.83, 0.88, 0.60]
    judge.run(deps, lead_id=lead_id, run_id=run_id)
    verdict = _verdict(deps, lead_id)
    assert verdict["passed"] and verdict["verified"] and verdict["overall"] == 0.88
    judges = [m for t, m in fake.seen if t == "judge"]
    top = deps.routing.stages[Stage.JUDGE].ladder[-1]
    assert judges[2] == top.partition(":")[2] and judges[0] != judges[2]

"""When every model breaks a stage's contract: the deterministic answer, never a made-up one.

A scripted provider answers some tasks well and others in the wrong shape; each test checks the
fallback the user would expect and that no wrong-shaped answer is stored as a success.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from db.enums import CallStatus, EmailStatus, LeadStatus, Stage, StageStatus
from db.models import Email, Lead, LLMCall, ReviewItem, StageResult
from pipeline.deps import Deps
from pipeline.models import LLMRequest, LLMResponse, Usage
from pipeline.stages import analyze, classify, demo, judge, personalize, score
from pipeline.web.fetch import WebPolicy
from tests.factories import ENTERPRISE_ROW, make_batch

pytestmark = pytest.mark.integration
# No industry, a neutral name: the keyword classifier is unsure, so classify asks a model.
UNSURE_ROW = "Northwind Group,,joe@northwind.test,Joe,Manager,,120,US,,"
BODY = "Hello Hank, a short note about outbound tooling for Globex and its team this quarter."
GOOD: dict[str, Any] = {
    "classify": {"industry": "software", "intent": "high", "segment": "smb", "confidence": 0.9},
    "score": {"fit_score": 60, "rationale": "A software company of a good size."},
    "analyze": {"summary": "A software company selling tools to small teams."},
    "demo": {"title": "Demo", "outline": ["Intro"], "html": "<h1>Demo</h1>"},
    "personalize": {"subject": "An idea for Globex", "body": BODY},
    "judge": {
        "professionalism": 0.95,
        "personalization": 0.95,
        "relevance": 0.95,
        "spam_risk": 0.05,
        "overall": 0.95,
    },
}


@dataclass
class ShapedLLM:
    """Answers each task with ``GOOD`` unless ``bad`` gives it a wrong-shaped answer."""

    name: str
    bad: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    def complete(self, request: LLMRequest) -> LLMResponse:
        task = request.system.split("\n", 1)[0].removeprefix("leadpipe-task: ")
        self.seen.append(task)
        text = self.bad.get(task) or json.dumps(GOOD[task])
        return LLMResponse(text, Usage(400, 60), self.name, request.model)


def _shaped(deps: Deps, **bad: str) -> ShapedLLM:
    fake = ShapedLLM("shaped", bad)
    deps.providers = dict.fromkeys(deps.providers, fake)
    return fake


def _run(deps: Deps, row: str, stages: tuple[Any, ...]) -> tuple[int, str]:
    with deps.session_scope() as session:
        batch = make_batch(session, [row])
    lead_id = batch.leads[0][0]
    for stage in stages:
        stage.run(deps, lead_id=lead_id, run_id=batch.run_id)
    return lead_id, batch.run_id


def _output(deps: Deps, lead_id: int, stage: Stage) -> tuple[str, dict[str, Any]]:
    with deps.session_scope() as session:
        row = session.scalars(
            select(StageResult).where(
                StageResult.lead_id == lead_id, StageResult.stage == stage.value
            )
        ).one()
        return row.status, dict(row.output)


def _ok_calls(deps: Deps, stage: Stage) -> list[LLMCall]:
    with deps.session_scope() as session:
        query = select(LLMCall).where(LLMCall.stage == stage.value)
        return [c for c in session.scalars(query) if c.status == CallStatus.OK]


def test_classify_and_score_fall_back_to_the_rules(deps: Deps) -> None:
    fake = _shaped(deps, classify='{"category": "tech"}', score="It fits well, maybe 70.")
    lead_id, _ = _run(deps, UNSURE_ROW, (classify, score))
    assert "classify" in fake.seen
    status, classified = _output(deps, lead_id, Stage.CLASSIFY)
    assert status == StageStatus.DONE and classified["source"] == "rules-fallback"
    assert "no valid answer" in classified["fallback_reason"]
    assert not _ok_calls(deps, Stage.CLASSIFY)  # every answer was invalid: none stored as ok
    _, scored = _output(deps, lead_id, Stage.SCORE)
    if "score" in fake.seen:  # only an ambiguous rule score asks a model
        assert scored["source"] == "rules-fallback" and 0 <= scored["fit_score"] <= 100


def test_a_malformed_council_draft_keeps_the_template_and_the_lead(deps: Deps) -> None:
    bad_draft = json.dumps({"subject": "Hi", "body": {"text": "a dict, not an email"}})
    _shaped(deps, personalize=bad_draft)
    stages = (classify, score, analyze, demo, personalize, judge)
    lead_id, _ = _run(deps, ENTERPRISE_ROW, stages)
    _, drafted = _output(deps, lead_id, Stage.PERSONALIZE)
    assert [c["model"] for c in drafted["candidates"]] == ["template"]
    assert drafted["failed_drafts"] and "body" in drafted["failed_drafts"][0]["reason"]
    with deps.session_scope() as session:
        email = session.scalars(select(Email).where(Email.lead_id == lead_id)).one()
        assert email.model == "template" and "{'text'" not in email.body
        lead = session.get_one(Lead, lead_id)
        assert lead.status in (LeadStatus.COMPLETED, LeadStatus.HELD)


def test_no_valid_verdict_holds_for_review_instead_of_scoring_zero(deps: Deps) -> None:
    _shaped(deps, judge='{"overall": 0.9, "feedback": "nice"}')  # metrics missing
    lead_id, _ = _run(deps, ENTERPRISE_ROW, (classify, score, analyze, demo, personalize, judge))
    with deps.session_scope() as session:
        email = session.scalars(select(Email).where(Email.lead_id == lead_id)).one()
        assert email.status == EmailStatus.HELD and email.quality is None
        review = session.scalars(select(ReviewItem).where(ReviewItem.lead_id == lead_id)).one()
        assert review.reason.startswith("no valid verdict")
        assert session.get_one(Lead, lead_id).status == LeadStatus.HELD


@pytest.fixture
def sites() -> Iterator[WebPolicy]:
    """The sample company sites on a loopback server, as the demo serves them."""
    root = Path(__file__).resolve().parents[2] / "samples" / "sites"
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    yield WebPolicy(allow_hosts=frozenset({host}), mirror_url=f"http://{host}")
    server.shutdown()


def test_wrong_shaped_analysis_and_demo_are_never_stored_as_success(
    deps: Deps, sites: WebPolicy
) -> None:
    deps.web_policy = sites
    _shaped(
        deps,
        analyze='{"summary": "", "products": "many"}',
        demo='{"title": "Demo", "outline": [], "html": ""}',
    )
    row = ENTERPRISE_ROW.replace(
        "Globex Software,,", "Globex Software,https://apex-freight.example,"
    )
    lead_id, _ = _run(deps, row, (classify, score, analyze, demo))
    _, analysis = _output(deps, lead_id, Stage.ANALYZE)
    assert analysis["source"] == "fallback" and analysis["fallback_reason"]
    status, page = _output(deps, lead_id, Stage.DEMO)
    if status != StageStatus.SKIPPED or "tier" not in page.get("reason", ""):
        assert status == StageStatus.SKIPPED and page["reason"].startswith("no valid demo page")
    assert not _ok_calls(deps, Stage.ANALYZE) and not _ok_calls(deps, Stage.DEMO)


def test_an_email_the_guard_refuses_is_held_with_the_reason(deps: Deps) -> None:
    link = BODY + " Book at https://totally-not-phishing.biz/now"
    _shaped(deps, personalize=json.dumps({"subject": "An idea for Globex", "body": link}))
    lead_id, _ = _run(deps, ENTERPRISE_ROW, (classify, score, analyze, demo, personalize, judge))
    with deps.session_scope() as session:
        email = session.scalars(select(Email).where(Email.lead_id == lead_id)).one()
        assert "phishing" not in email.body  # the template (judged 0.95) was approved instead
        assert email.status == EmailStatus.APPROVED and email.model == "template"

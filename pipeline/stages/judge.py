"""Judge: score the draft against the quality gate; below it, hold for human review."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from db.enums import EmailStatus, LeadStatus, Stage, StageStatus
from db.models import Email, Lead, LLMCall, ReviewItem, StageResult
from pipeline.deps import Deps
from pipeline.gateway import call_model
from pipeline.prompts import render
from pipeline.stages._common import LeadView, claim

# Seed 000 quality gates per personalisation level.
GATES = {"template-only": 0.0, "minimal": 0.65, "standard": 0.75, "enhanced": 0.85}
METRICS = ("professionalism", "personalization", "relevance", "spam_risk")


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Judge the drafted email and approve it or hold it for review."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.JUDGE)
    if view is None:
        return
    draft = view.outputs[Stage.PERSONALIZE.value]
    prompt = render(
        "judge",
        lead=view.prompt_data(),
        draft={"subject": draft["subject"], "body": draft["body"]},
    )
    result = call_model(
        deps, view.context(Stage.JUDGE), prompt, deps.routing.chain(Stage.JUDGE, view.tier)
    )
    verdict = parse_verdict(result.data)
    gate = GATES.get(str(draft.get("level", "standard")), 0.75)
    verdict.update(gate=gate, passed=verdict["overall"] >= gate, model=result.route.ref)
    _record(deps, view, draft, verdict)


def parse_verdict(data: dict[str, Any]) -> dict[str, Any]:
    """Metrics clamped to 0..1; ``overall`` recomputed when the model left it out."""
    out: dict[str, Any] = {}
    for key in (*METRICS, "overall"):
        try:
            out[key] = round(min(1.0, max(0.0, float(data[key]))), 3)
        except (KeyError, TypeError, ValueError):
            out[key] = None
    if out["overall"] is None:
        parts = [out[k] for k in METRICS]
        if any(p is None for p in parts):
            out["overall"] = 0.0
        else:
            p, z, r, s = parts
            out["overall"] = round(0.3 * p + 0.35 * z + 0.25 * r + 0.1 * (1 - s), 3)
    out["feedback"] = str(data.get("feedback", ""))[:2000]
    return out


def _record(deps: Deps, view: LeadView, draft: dict[str, Any], verdict: dict[str, Any]) -> None:
    """Email, review item, stage result and lead status in one transaction (idempotent)."""
    quality = Decimal(str(verdict["overall"]))
    status = EmailStatus.APPROVED if verdict["passed"] else EmailStatus.HELD
    with deps.session_scope() as session:
        email = Email(
            lead_id=view.id,
            run_id=view.run_id,
            subject=draft["subject"],
            body=draft["body"],
            template=str(draft.get("template", "")),
            variant=str(draft.get("variant", "A")),
            level=str(draft.get("level", "")),
            model=str(draft.get("model", "")),
            quality=quality,
            status=status,
        )
        session.add(email)
        session.flush()
        if status is EmailStatus.HELD:
            reason = f"quality {verdict['overall']:.2f} below gate {verdict['gate']:.2f}"
            session.add(ReviewItem(email_id=email.id, lead_id=view.id, reason=reason))
        session.execute(
            update(LLMCall)
            .where(
                LLMCall.lead_id == view.id,
                LLMCall.run_id == view.run_id,
                LLMCall.stage == Stage.PERSONALIZE.value,
            )
            .values(quality_score=quality)
        )
        row = session.scalars(
            select(StageResult).where(
                StageResult.lead_id == view.id,
                StageResult.run_id == view.run_id,
                StageResult.stage == Stage.JUDGE.value,
            )
        ).one()
        row.status, row.output = StageStatus.DONE, verdict
        row.finished_at = dt.datetime.now(dt.UTC)
        lead = session.get_one(Lead, view.id)
        lead.status = LeadStatus.COMPLETED if verdict["passed"] else LeadStatus.HELD

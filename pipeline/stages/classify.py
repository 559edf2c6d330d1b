"""Classify: industry, buying intent and segment of a lead."""

from __future__ import annotations

from typing import Any

from db.enums import Stage
from pipeline.deps import Deps
from pipeline.errors import NoValidAnswer
from pipeline.llm.gateway import call_model
from pipeline.llm.prompts import render
from pipeline.stages._common import Finished, LeadView, claim, finish
from pipeline.stages.classifier import (
    CONFIDENT,
    INDUSTRY_KEYWORDS,
    RuleClassification,
    classify_by_rules,
)
from pipeline.stages.policy import route_request

INDUSTRIES = frozenset({*INDUSTRY_KEYWORDS, "other"})
INTENTS = frozenset({"high", "medium", "low"})
SEGMENTS = frozenset({"smb", "mid_market", "enterprise"})


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Classify one lead: keyword rules when confident (seed 001), a cheap model otherwise."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.CLASSIFY, quick=_by_rules)
    if view is None:  # finished before, or by the rules in the claim's own transaction
        return
    rules, output = _rules(view)
    if rules.confidence < CONFIDENT:
        prompt = render("classify", lead=view.prompt_data())
        request = route_request(deps, view, Stage.CLASSIFY, prompt)
        chain = deps.routing.route(Stage.CLASSIFY, request)
        try:
            result = call_model(deps, view.context(Stage.CLASSIFY), prompt, chain)
        except NoValidAnswer as exc:  # every model broke the contract: the rules' answer stands
            output.update(source="rules-fallback", fallback_reason=str(exc)[:1000])
        else:
            output = parse_classification(result.data)
            output.update(source="llm", model=result.route.ref, rules_confidence=rules.confidence)
    finish(deps, view, Stage.CLASSIFY, output, lead_updates=_lead_fields(output))


def _rules(view: LeadView) -> tuple[RuleClassification, dict[str, Any]]:
    rules = classify_by_rules(
        industry_hint=view.industry,
        company=view.company,
        notes=view.notes,
        title=view.title,
        employees=view.employees,
    )
    output: dict[str, Any] = {
        "industry": rules.industry,
        "intent": rules.intent,
        "segment": rules.segment,
        "confidence": rules.confidence,
        "source": "rules",
    }
    return rules, output


def _by_rules(view: LeadView) -> Finished | None:
    """Confident keyword rules decide the stage inside its claim (no model, one transaction)."""
    rules, output = _rules(view)
    if rules.confidence < CONFIDENT:
        return None
    return Finished(output, lead_updates=_lead_fields(output))


def _lead_fields(output: dict[str, Any]) -> dict[str, Any]:
    return {k: output[k] for k in ("industry", "intent", "segment")}


def parse_classification(data: dict[str, Any]) -> dict[str, Any]:
    """Normalise a model's classification; unknown values fall back to neutral ones."""
    industry = str(data.get("industry", "other")).strip().lower()
    intent = str(data.get("intent", "medium")).strip().lower()
    segment = str(data.get("segment", "smb")).strip().lower().replace("-", "_")
    try:
        confidence = min(1.0, max(0.0, float(data.get("confidence", 0.5))))
    except (TypeError, ValueError):
        confidence = 0.5
    return {
        "industry": industry if industry in INDUSTRIES else "other",
        "intent": intent if intent in INTENTS else "medium",
        "segment": segment if segment in SEGMENTS else "smb",
        "confidence": round(confidence, 3),
    }

"""Score: fit score from a model, value and tier from seed 003's formula."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from db.enums import Stage, Tier
from pipeline.deps import Deps
from pipeline.errors import NoValidAnswer
from pipeline.llm.gateway import call_model
from pipeline.llm.prompts import render
from pipeline.stages._common import Finished, LeadView, claim, finish
from pipeline.stages.policy import AMBIGUOUS, route_request, rule_fit_score
from pipeline.value import LeadSignals, estimate_lead_value, has_enterprise_tech, tier_for


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Value and tier from seed 003's formula; fit by rules, a model only when ambiguous."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.SCORE, quick=_by_rules)
    if view is None:  # finished before, or by the rules in the claim's own transaction
        return
    classification = view.outputs.get(Stage.CLASSIFY.value, {})
    value, tier, fit, output = _rules(view)
    if fit in AMBIGUOUS:  # only the ambiguous band is worth a model call (seed 001)
        prompt = render("score", lead=view.prompt_data(), classification=classification)
        request = route_request(deps, view, Stage.SCORE, prompt)
        chain = deps.routing.route(Stage.SCORE, request)
        try:
            result = call_model(deps, view.context(Stage.SCORE), prompt, chain)
        except NoValidAnswer as exc:  # every model broke the contract: the rule score stands
            output.update(source="rules-fallback", fallback_reason=str(exc)[:1000])
        else:
            output.update(
                fit_score=parse_fit_score(result.data),
                source="llm",
                model=result.route.ref,
                rationale=str(result.data.get("rationale", ""))[:1000],
                rule_fit_score=fit,
            )
    finish(
        deps,
        view,
        Stage.SCORE,
        output,
        lead_updates={"tier": tier.value, "estimated_value_usd": value},
    )


def _rules(view: LeadView) -> tuple[Decimal, Tier, int, dict[str, Any]]:
    classification = view.outputs.get(Stage.CLASSIFY.value, {})
    signals = LeadSignals(
        employees=view.employees,
        industry=classification.get("industry") or view.industry,
        country=view.country,
        has_enterprise_tech_stack=has_enterprise_tech(view.tech_stack),
    )
    value = estimate_lead_value(signals)
    tier = tier_for(value)
    fit = rule_fit_score(view, classification)
    output: dict[str, Any] = {
        "fit_score": fit,
        "rationale": "rule-based firmographic fit",
        "source": "rules",
        "estimated_value_usd": str(value),
        "tier": tier.value,
    }
    return value, tier, fit, output


def _by_rules(view: LeadView) -> Finished | None:
    """A clear rule score decides the stage inside its claim (no model, one transaction)."""
    value, tier, fit, output = _rules(view)
    if fit in AMBIGUOUS:
        return None
    return Finished(output, lead_updates={"tier": tier.value, "estimated_value_usd": value})


def parse_fit_score(data: dict[str, Any]) -> int:
    """A fit score clamped to 0..100 (the contract already demands one; 50 for old journals)."""
    try:
        return max(0, min(100, round(float(data.get("fit_score", 50)))))
    except (TypeError, ValueError):
        return 50

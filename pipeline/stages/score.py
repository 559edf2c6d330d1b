"""Score: fit score from a model, value and tier from seed 003's formula."""

from __future__ import annotations

from typing import Any

from db.enums import Stage
from pipeline.deps import Deps
from pipeline.gateway import call_model
from pipeline.prompts import render
from pipeline.stages._common import claim, finish
from pipeline.value import LeadSignals, estimate_lead_value, has_enterprise_tech, tier_for


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Estimate the lead's value and tier, and ask a cheap model for a fit score."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.SCORE)
    if view is None:
        return
    classification = view.outputs.get(Stage.CLASSIFY.value, {})
    signals = LeadSignals(
        employees=view.employees,
        industry=classification.get("industry") or view.industry,
        country=view.country,
        has_enterprise_tech_stack=has_enterprise_tech(view.tech_stack),
    )
    value = estimate_lead_value(signals)
    tier = tier_for(value)
    prompt = render("score", lead=view.prompt_data(), classification=classification)
    result = call_model(
        deps, view.context(Stage.SCORE), prompt, deps.routing.chain(Stage.SCORE, tier.value)
    )
    output: dict[str, Any] = {
        "fit_score": parse_fit_score(result.data),
        "rationale": str(result.data.get("rationale", ""))[:1000],
        "estimated_value_usd": str(value),
        "tier": tier.value,
        "source": "llm",
        "model": result.route.ref,
    }
    finish(
        deps,
        view,
        Stage.SCORE,
        output,
        lead_updates={"tier": tier.value, "estimated_value_usd": value},
    )


def parse_fit_score(data: dict[str, Any]) -> int:
    """A fit score clamped to 0..100 (50 when the model gave none)."""
    try:
        return max(0, min(100, round(float(data.get("fit_score", 50)))))
    except (TypeError, ValueError):
        return 50

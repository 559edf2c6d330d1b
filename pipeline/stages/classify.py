"""Classify: industry, buying intent and segment of a lead."""

from __future__ import annotations

from typing import Any

from db.enums import Stage
from pipeline.deps import Deps
from pipeline.gateway import call_model
from pipeline.prompts import render
from pipeline.stages._common import claim, finish

INDUSTRIES = frozenset(
    {
        "software",
        "finance",
        "healthcare",
        "manufacturing",
        "retail",
        "hospitality",
        "logistics",
        "education",
        "legal",
        "marketing",
        "other",
    }
)
INTENTS = frozenset({"high", "medium", "low"})
SEGMENTS = frozenset({"smb", "mid_market", "enterprise"})


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Classify one lead with the model the routing table names."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.CLASSIFY)
    if view is None:
        return
    prompt = render("classify", lead=view.prompt_data())
    result = call_model(
        deps, view.context(Stage.CLASSIFY), prompt, deps.routing.chain(Stage.CLASSIFY, None)
    )
    output = parse_classification(result.data)
    output["source"] = "llm"
    output["model"] = result.route.ref
    finish(
        deps,
        view,
        Stage.CLASSIFY,
        output,
        lead_updates={k: output[k] for k in ("industry", "intent", "segment")},
    )


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

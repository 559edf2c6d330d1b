"""Personalize: the outreach email draft."""

from __future__ import annotations

from typing import Any

from db.enums import Stage, Tier
from pipeline.deps import Deps
from pipeline.errors import InvalidLLMOutput
from pipeline.gateway import call_model
from pipeline.prompts import render
from pipeline.stages._common import claim, finish

# Personalisation level per tier (seed 000): the level sets the judge's quality gate.
LEVEL_FOR_TIER = {Tier.SMB: "minimal", Tier.MID_MARKET: "standard", Tier.ENTERPRISE: "enhanced"}


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Draft the email from the lead and its website analysis."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.PERSONALIZE)
    if view is None:
        return
    analysis = view.outputs.get(Stage.ANALYZE.value, {})
    brief = {k: analysis.get(k) for k in ("summary", "products", "pain_points")}
    prompt = render("personalize", lead=view.prompt_data(), analysis=brief)
    result = call_model(
        deps,
        view.context(Stage.PERSONALIZE),
        prompt,
        deps.routing.chain(Stage.PERSONALIZE, view.tier),
    )
    draft = parse_draft(result.data)
    tier = Tier(view.tier) if view.tier else Tier.SMB
    draft.update(level=LEVEL_FOR_TIER[tier], model=result.route.ref, template="llm", variant="A")
    finish(deps, view, Stage.PERSONALIZE, draft)


def parse_draft(data: dict[str, Any]) -> dict[str, Any]:
    """Subject and body of a drafted email.

    Raises:
        InvalidLLMOutput: the answer has no subject or body.
    """
    subject = str(data.get("subject", "")).strip()
    body = str(data.get("body", "")).strip()
    if not subject or not body:
        raise InvalidLLMOutput("email draft without subject or body")
    return {"subject": subject[:300], "body": body[:10_000]}

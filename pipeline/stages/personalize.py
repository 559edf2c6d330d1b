"""Personalize: template first, a model only where the lead's level pays for it (seed 000).

Levels: ``template-only`` (no model; when the budget is gone), ``minimal`` (smb: a cheap model
polishes the template), ``standard`` (mid-market) and ``enhanced`` (enterprise). Mid-market and
enterprise leads get a council of candidates (seed 003: 2 and 3), the template among them; the
judge keeps the best. Budget throttle level 2 shrinks every council to one candidate.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from db.enums import Stage, Tier
from pipeline.deps import Deps
from pipeline.errors import InvalidLLMOutput, NoValidAnswer
from pipeline.llm.contracts import DraftAnswer
from pipeline.llm.gateway import call_model
from pipeline.llm.prompts import render
from pipeline.models import Prompt
from pipeline.stages._common import LeadView, claim, finish
from pipeline.stages.emails import EmailFacts, render_email, template_name, variant_for
from pipeline.stages.policy import route_request, throttle_level
from pipeline.value import COUNCIL_SIZE

LEVEL_FOR_TIER = {Tier.SMB: "minimal", Tier.MID_MARKET: "standard", Tier.ENTERPRISE: "enhanced"}


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Draft the email candidates for one lead."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.PERSONALIZE)
    if view is None:
        return
    level_throttle = throttle_level(deps)
    exhausted = deps.budget is not None and deps.budget.status().exhausted
    tier = Tier(view.tier) if view.tier else Tier.SMB
    level = "template-only" if exhausted else LEVEL_FOR_TIER[tier]
    variant = variant_for(
        view.content_hash,
        view.campaign_id,
        ab_testing=deps.policy.ab_testing and level_throttle < 1,
    )
    name = template_name(view.outputs.get(Stage.CLASSIFY.value, {}).get("industry"), view.title)
    subject, body = render_email(name, facts_for(deps, view, variant))
    template = {"subject": subject, "body": body, "model": "template", "call_key": None}
    size = 1 if level_throttle >= 2 else COUNCIL_SIZE[tier]
    candidates: list[dict[str, Any]] = []
    if level == "template-only" or size > 1:
        candidates.append(template)
    if level != "template-only":
        prompt = render(
            "personalize",
            lead=view.prompt_data(),
            analysis=_brief(view),
            draft={"subject": subject, "body": body},
        )
        failed = _council(deps, view, prompt, candidates, size - len(candidates))
    else:
        failed = []
    output: dict[str, Any] = {
        "level": level,
        "variant": variant,
        "template": name,
        "candidates": candidates or [dict(template, fallback_reason=_why(failed))],
    }
    if failed:
        output["failed_drafts"] = failed
    finish(deps, view, Stage.PERSONALIZE, output)


def _council(
    deps: Deps, view: LeadView, prompt: Prompt, candidates: list[dict[str, Any]], wanted: int
) -> list[dict[str, str]]:
    """Add ``wanted`` model drafts to ``candidates``; a draft no model could write within the
    contract is left out (the template is kept for the judge), and returned with its reason."""
    failed: list[dict[str, str]] = []
    for index in range(wanted):
        try:
            candidates.append(draft_with_model(deps, view, prompt, index=index))
        except NoValidAnswer as exc:
            failed.append({"call_key": f"candidate{index}", "reason": str(exc)[:1000]})
    return failed


def _why(failed: list[dict[str, str]]) -> str:
    return "template email: " + (failed[0]["reason"] if failed else "no model draft")


def draft_with_model(
    deps: Deps,
    view: LeadView,
    prompt: Prompt,
    *,
    index: int,
    min_rung: int = 0,
    call_key: str | None = None,
) -> dict[str, Any]:
    """One model-written candidate; council members step one rung down the ladder each."""
    request = route_request(deps, view, Stage.PERSONALIZE, prompt, min_rung=min_rung)
    chain = deps.routing.route(Stage.PERSONALIZE, request)
    if index:  # a second council member: the next cheaper model, for a different voice
        want = max(0, deps.routing.rung(Stage.PERSONALIZE, chain[0].ref) - index)
        chain.sort(key=lambda r: deps.routing.rung(Stage.PERSONALIZE, r.ref) != want)
    key = call_key or f"candidate{index}"
    # A second council member or an escalation exists to differ from an earlier answer: the
    # cached answer to the same prompt is exactly what it must not get back.
    fresh = index == 0 and call_key is None
    ctx = view.context(Stage.PERSONALIZE, key)
    result = call_model(deps, ctx, prompt, chain, read_cache=fresh)
    draft = parse_draft(result.data)
    draft.update(model=result.route.ref, call_key=key)
    return draft


def facts_for(deps: Deps, view: LeadView, variant: str) -> EmailFacts:
    """Template variables from the lead and its analysis (data, never instructions)."""
    analysis = view.outputs.get(Stage.ANALYZE.value, {})
    industry = view.outputs.get(Stage.CLASSIFY.value, {}).get("industry") or "other"
    return EmailFacts(
        first_name=view.first_name or "",
        company=view.company,
        title=view.title or "",
        industry=str(industry),
        pain_point=_first(analysis.get("pain_points")),
        product=_first(analysis.get("products")),
        variant=variant,
        sender_name=deps.policy.sender_name,
        sender_company=deps.policy.sender_company,
    )


def prompt_for(view: LeadView, draft: dict[str, Any]) -> Prompt:
    """The personalise prompt for ``view`` starting from ``draft``."""
    return render(
        "personalize",
        lead=view.prompt_data(),
        analysis=_brief(view),
        draft={"subject": draft["subject"], "body": draft["body"]},
    )


def _brief(view: LeadView) -> dict[str, Any]:
    analysis = view.outputs.get(Stage.ANALYZE.value, {})
    summary = str(analysis.get("summary", ""))
    return {
        "summary": summary[:800],
        "products": analysis.get("products", [])[:3],
        "pain_points": analysis.get("pain_points", [])[:3],
    }


def _first(items: object) -> str:
    return str(items[0])[:200] if isinstance(items, list) and items else ""


def parse_draft(data: dict[str, Any]) -> dict[str, Any]:
    """Subject and body of a drafted email, both plain strings (never a repr of a dict).

    Raises:
        InvalidLLMOutput: the answer breaks the draft contract (``contracts.DraftAnswer``).
    """
    try:
        draft = DraftAnswer.model_validate(data)
    except ValidationError as exc:
        raise InvalidLLMOutput(f"email draft outside its contract: {exc}") from exc
    return {"subject": draft.subject, "body": draft.body}

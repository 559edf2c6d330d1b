"""Analyze: fetch the company website (SSRF-guarded) and summarise it for the email."""

from __future__ import annotations

from typing import Any

from db.enums import Stage
from pipeline.batch.collector import divert
from pipeline.deps import Deps
from pipeline.errors import FetchRefused, NoValidAnswer
from pipeline.llm.contracts import contract_for
from pipeline.llm.gateway import call_model, request_for
from pipeline.llm.prompts import render
from pipeline.stages._common import LeadView, claim, finish
from pipeline.stages.policy import route_request
from pipeline.value import LeadSignals, estimate_lead_value, has_enterprise_tech, tier_for
from pipeline.web.fetch import fetch_site

LIST_KEYS = ("products", "pain_points", "tech_signals")


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Fetch the lead's website and summarise it; no website means no model call."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.ANALYZE)
    if view is None:
        return
    text, fetch_error, pages = _site_text(deps, view)
    if not text:
        output = _no_site_analysis(view, fetch_error)
        finish(deps, view, Stage.ANALYZE, output)
        return
    prompt = render("analyze", lead=view.prompt_data(), website_text=text)
    chain = deps.routing.route(Stage.ANALYZE, route_request(deps, view, Stage.ANALYZE, prompt))
    ctx = view.context(Stage.ANALYZE)
    divert(deps, ctx, prompt, chain[0], request_for(chain[0], prompt, contract_for(Stage.ANALYZE)))
    try:
        result = call_model(deps, ctx, prompt, chain)
    except NoValidAnswer as exc:
        # No model summarised the site within the contract: the email goes on from the lead's
        # own facts (as for a lead without a website), and the output says why.
        output = _no_site_analysis(view, None)
        output.update(
            summary=f"No valid analysis of {view.company}'s website.",
            source="fallback",
            fallback_reason=str(exc)[:1000],
            pages=pages,
        )
        finish(deps, view, Stage.ANALYZE, output)
        return
    output = parse_analysis(result.data)
    output.update(source="llm", model=result.route.ref, pages=pages, fetch_error=fetch_error)
    finish(deps, view, Stage.ANALYZE, output, lead_updates=revalue(view, output))


def _site_text(deps: Deps, view: LeadView) -> tuple[str, str | None, list[str]]:
    if not view.website:
        return "", "no website", []
    try:
        pages = fetch_site(view.website, deps.web_policy, client=deps.web_client)
    except FetchRefused as exc:  # a forbidden or missing site is a fact about the lead
        return "", str(exc), []
    text = "\n\n".join(p.text for p in pages if p.text)
    return text[: deps.web_policy.max_text_chars], None, [p.url for p in pages]


def _no_site_analysis(view: LeadView, fetch_error: str | None) -> dict[str, Any]:
    return {
        "summary": f"No website content was available for {view.company}.",
        "products": [],
        "pain_points": [],
        "tech_signals": list(view.tech_stack),
        "has_career_page": False,
        "has_enterprise_tech_stack": False,
        "source": "none",
        "fetch_error": fetch_error,
        "pages": [],
    }


def parse_analysis(data: dict[str, Any]) -> dict[str, Any]:
    """Normalise a model's site analysis."""
    out: dict[str, Any] = {"summary": str(data.get("summary", ""))[:20_000]}
    for key in LIST_KEYS:
        value = data.get(key, [])
        out[key] = [str(v)[:300] for v in value][:10] if isinstance(value, list) else []
    out["has_career_page"] = bool(data.get("has_career_page", False))
    out["has_enterprise_tech_stack"] = bool(data.get("has_enterprise_tech_stack", False))
    return out


def revalue(view: LeadView, analysis: dict[str, Any]) -> dict[str, Any]:
    """Seed 003's value formula again, now with the website's career page and tech signals.

    The tier can only rise here (a lead scored smb that turns out to run an enterprise stack
    gets the routing of its new tier for demo and personalize).
    """
    classification = view.outputs.get(Stage.CLASSIFY.value, {})
    signals = LeadSignals(
        employees=view.employees,
        industry=classification.get("industry") or view.industry,
        country=view.country,
        has_enterprise_tech_stack=bool(analysis.get("has_enterprise_tech_stack"))
        or has_enterprise_tech(view.tech_stack),
        has_career_page=bool(analysis.get("has_career_page")),
    )
    value = estimate_lead_value(signals)
    if view.estimated_value is not None and value <= view.estimated_value:
        return {}
    return {"estimated_value_usd": value, "tier": tier_for(value).value}

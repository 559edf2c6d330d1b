"""Demo: a personalised demo page, for high-value leads only."""

from __future__ import annotations

from db.enums import Stage, StageStatus
from pipeline.deps import Deps
from pipeline.errors import NoValidAnswer
from pipeline.llm.gateway import call_model
from pipeline.llm.prompts import render
from pipeline.stages._common import Finished, LeadView, claim, finish
from pipeline.stages.policy import route_request


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Write a demo page when the lead's tier is one of ``deps.demo_tiers``; else skip."""

    def skip(view: LeadView) -> Finished | None:  # decided inside the claim's transaction
        if view.tier in deps.demo_tiers:
            return None
        return Finished({"reason": f"tier {view.tier}"}, status=StageStatus.SKIPPED)

    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.DEMO, quick=skip)
    if view is None:
        return
    analysis = view.outputs.get(Stage.ANALYZE.value, {})
    prompt = render("demo", lead=view.prompt_data(), analysis=_brief(analysis))
    chain = deps.routing.route(Stage.DEMO, route_request(deps, view, Stage.DEMO, prompt))
    try:
        result = call_model(deps, view.context(Stage.DEMO), prompt, chain)
    except NoValidAnswer as exc:  # no demo page is better than an empty or broken one
        reason = f"no valid demo page: {exc}"[:1000]
        finish(deps, view, Stage.DEMO, {"reason": reason}, status=StageStatus.SKIPPED)
        return
    outline = result.data.get("outline", [])
    finish(
        deps,
        view,
        Stage.DEMO,
        {
            "title": str(result.data.get("title", ""))[:300],
            "outline": [str(x)[:300] for x in outline][:10] if isinstance(outline, list) else [],
            "html": str(result.data.get("html", ""))[:50_000],
            "model": result.route.ref,
        },
    )


def _brief(analysis: dict[str, object]) -> dict[str, object]:
    keys = ("summary", "products", "pain_points", "tech_signals")
    return {k: analysis.get(k) for k in keys}

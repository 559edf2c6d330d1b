"""Judge: score every candidate, keep the best, gate it (seed 000); escalate once, then hold.

Cheap judge first, strongest judge only where it decides something (FrugalGPT-style cascade): a
score within ``borderline_margin`` of the gate is checked again on the top rung of the judge
ladder. A best candidate below its gate gets ONE escalation (a draft from the next stronger
model, judged again); below the gate after that, the email is held for human review.
"""

from __future__ import annotations

from typing import Any

from db.enums import Stage
from pipeline.deps import Deps
from pipeline.llm.gateway import call_model
from pipeline.llm.prompts import render
from pipeline.llm.routing import RouteRequest
from pipeline.stages._common import LeadView, claim
from pipeline.stages.judge_record import record_verdict
from pipeline.stages.personalize import draft_with_model, prompt_for
from pipeline.stages.policy import route_request

# Seed 000 quality gates per personalisation level.
GATES = {"template-only": 0.0, "minimal": 0.65, "standard": 0.75, "enhanced": 0.85}
METRICS = ("professionalism", "personalization", "relevance", "spam_risk")


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Judge the candidates and approve the best one or hold it for review."""
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.JUDGE)
    if view is None:
        return
    drafted = view.outputs[Stage.PERSONALIZE.value]
    gate = GATES.get(str(drafted.get("level")), 0.75)
    scored = [
        (judge_candidate(deps, view, cand, key=f"judge{i}", gate=gate), cand)
        for i, cand in enumerate(drafted["candidates"])
    ]
    verdict, best = max(scored, key=lambda pair: pair[0]["overall"])
    escalated = None
    if verdict["overall"] < gate:
        escalated = _escalate(deps, view, best)
        esc_verdict = judge_candidate(deps, view, escalated, key="judge-escalation", gate=gate)
        if esc_verdict["overall"] > verdict["overall"]:
            verdict, best = esc_verdict, escalated
    verdict.update(
        gate=gate,
        passed=verdict["overall"] >= gate,
        escalated=escalated is not None,
        candidates=[{"model": c["model"], "overall": v["overall"]} for v, c in scored],
    )
    record_verdict(deps, view, drafted, best, verdict)


def judge_candidate(
    deps: Deps, view: LeadView, candidate: dict[str, Any], *, key: str, gate: float
) -> dict[str, Any]:
    """One verdict for one candidate; borderline scores are re-checked by the top judge."""
    prompt = render(
        "judge",
        lead=view.prompt_data(),
        draft={"subject": candidate["subject"], "body": candidate["body"]},
    )
    chain = deps.routing.route(Stage.JUDGE, route_request(deps, view, Stage.JUDGE, prompt))
    result = call_model(deps, view.context(Stage.JUDGE, key), prompt, chain)
    verdict = parse_verdict(result.data)
    verdict["judge"] = result.route.ref
    top = deps.routing.top_rung(Stage.JUDGE)
    if (
        gate
        and abs(verdict["overall"] - gate) < deps.policy.borderline_margin
        and (deps.routing.rung(Stage.JUDGE, result.route.ref) < top)
    ):
        strong = deps.routing.route(Stage.JUDGE, RouteRequest(tier=view.tier, min_rung=top))
        check = call_model(deps, view.context(Stage.JUDGE, f"{key}-verify"), prompt, strong)
        verdict = parse_verdict(check.data)
        verdict.update(judge=check.route.ref, verified=True)
    return verdict


def _escalate(deps: Deps, view: LeadView, best: dict[str, Any]) -> dict[str, Any]:
    """A new draft from the next stronger model than the one that wrote ``best``."""
    rung = deps.routing.rung(Stage.PERSONALIZE, best["model"])
    start = deps.routing.route(Stage.PERSONALIZE, RouteRequest(tier=view.tier))[0].ref
    floor = max(rung, deps.routing.rung(Stage.PERSONALIZE, start) - 1) + 1
    floor = min(floor, deps.routing.top_rung(Stage.PERSONALIZE))
    return draft_with_model(
        deps, view, prompt_for(view, best), index=0, min_rung=floor, call_key="escalation"
    )


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

"""Judge: score every candidate, keep the best, gate it (seed 000); escalate once, then hold.

Cheap judge first, strongest judge only where it decides something (FrugalGPT-style cascade): a
score within ``borderline_margin`` of the gate is checked again on the top rung of the judge
ladder. A best candidate below its gate gets ONE escalation (a draft from the next stronger
model, judged again); below the gate after that, the email is held for human review. No valid
verdict, or an email the output guard (``stages.guard``) refuses, is held with that reason.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from db.enums import Stage
from pipeline.deps import Deps
from pipeline.errors import InvalidLLMOutput, NoValidAnswer
from pipeline.llm.contracts import VerdictAnswer
from pipeline.llm.gateway import call_model
from pipeline.llm.prompts import render
from pipeline.llm.routing import RouteRequest
from pipeline.stages._common import LeadView, claim
from pipeline.stages.guard import email_problem
from pipeline.stages.judge_record import record_verdict
from pipeline.stages.personalize import draft_with_model, prompt_for
from pipeline.stages.policy import route_request

# Seed 000 quality gates per personalisation level.
GATES = {"template-only": 0.0, "minimal": 0.65, "standard": 0.75, "enhanced": 0.85}
METRICS = ("professionalism", "personalization", "relevance", "spam_risk")


def run(deps: Deps, *, lead_id: int, run_id: str) -> None:
    """Judge the candidates and approve the best one or hold it for review.

    Only a candidate with a valid verdict that passes the output guard can be approved. When no
    judge gives a valid verdict the email is held with reason "no valid verdict", never scored
    0.0; when the guard refuses the best email, it is held with the guard's reason.
    """
    view = claim(deps, lead_id=lead_id, run_id=run_id, stage=Stage.JUDGE)
    if view is None:
        return
    drafted = view.outputs[Stage.PERSONALIZE.value]
    gate = GATES.get(str(drafted.get("level")), 0.75)
    scored = [
        (judge_candidate(deps, view, cand, key=f"judge{i}", gate=gate), cand)
        for i, cand in enumerate(drafted["candidates"])
    ]
    verdict, best = _best(deps, view, scored)
    escalated = None
    if verdict["overall"] is not None and verdict["overall"] < gate:
        escalated = _try_escalate(deps, view, best)
    if escalated is not None:
        esc_verdict = judge_candidate(deps, view, escalated, key="judge-escalation", gate=gate)
        better = (esc_verdict["overall"] or 0.0) > verdict["overall"]
        if better and _problem(deps, view, escalated) is None:
            verdict, best = esc_verdict, escalated
    passed = verdict["overall"] is not None and verdict["overall"] >= gate
    verdict.update(
        gate=gate,
        passed=passed and not verdict.get("hold_reason"),
        escalated=escalated is not None,
        candidates=[{"model": c["model"], "overall": v["overall"]} for v, c in scored],
    )
    record_verdict(deps, view, drafted, best, verdict)


def _best(
    deps: Deps, view: LeadView, scored: list[tuple[dict[str, Any], dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The best-scored candidate that the output guard lets through, or a held one and why."""
    problems = [_problem(deps, view, cand) for _, cand in scored]
    eligible = [
        pair
        for pair, problem in zip(scored, problems, strict=True)
        if pair[0]["overall"] is not None and problem is None
    ]
    if eligible:
        verdict, best = max(eligible, key=lambda pair: pair[0]["overall"])
        return dict(verdict), best
    # Nothing approvable: keep the template when there is one (it is our own text).
    index = next((i for i, (_, c) in enumerate(scored) if c.get("model") == "template"), 0)
    verdict, best = dict(scored[index][0]), scored[index][1]
    if problems[index] is not None:
        verdict["hold_reason"] = f"output guard: {problems[index]}"
    elif verdict["overall"] is None:
        verdict["hold_reason"] = f"no valid verdict: {verdict.get('error', 'judge failed')}"
    else:
        verdict["hold_reason"] = "output guard: " + "; ".join(p for p in problems if p)
    return verdict, best


def _problem(deps: Deps, view: LeadView, candidate: dict[str, Any]) -> str | None:
    return email_problem(
        str(candidate.get("subject", "")),
        str(candidate.get("body", "")),
        lead_website=view.website,
        sender_website=deps.policy.sender_website,
        notes=view.notes,
    )


def judge_candidate(
    deps: Deps, view: LeadView, candidate: dict[str, Any], *, key: str, gate: float
) -> dict[str, Any]:
    """One verdict for one candidate; borderline scores are re-checked by the top judge.

    A candidate no judge could score within the contract gets ``overall`` None and the reason.
    """
    prompt = render(
        "judge",
        lead=view.prompt_data(),
        draft={"subject": candidate["subject"], "body": candidate["body"]},
    )
    chain = deps.routing.route(Stage.JUDGE, route_request(deps, view, Stage.JUDGE, prompt))
    try:
        result = call_model(deps, view.context(Stage.JUDGE, key), prompt, chain)
    except NoValidAnswer as exc:
        return {"overall": None, "error": str(exc)[:1000], "judge": None}
    verdict = parse_verdict(result.data)
    verdict["judge"] = result.route.ref
    top = deps.routing.top_rung(Stage.JUDGE)
    if (
        gate
        and abs(verdict["overall"] - gate) < deps.policy.borderline_margin
        and (deps.routing.rung(Stage.JUDGE, result.route.ref) < top)
    ):
        strong = deps.routing.route(Stage.JUDGE, RouteRequest(tier=view.tier, min_rung=top))
        try:
            check = call_model(deps, view.context(Stage.JUDGE, f"{key}-verify"), prompt, strong)
        except NoValidAnswer as exc:  # the cheap verdict stands; say the check failed
            verdict["verify_error"] = str(exc)[:500]
            return verdict
        verdict = parse_verdict(check.data)
        verdict.update(judge=check.route.ref, verified=True)
    return verdict


def _try_escalate(deps: Deps, view: LeadView, best: dict[str, Any]) -> dict[str, Any] | None:
    """The one escalation draft, or None when no stronger model wrote a valid one."""
    try:
        return _escalate(deps, view, best)
    except NoValidAnswer:
        return None


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
    """Every metric in 0..1; ``overall`` recomputed from them when the model left it out.

    Raises:
        InvalidLLMOutput: a metric is missing or out of range (never read as 0.0).
    """
    try:
        answer = VerdictAnswer.model_validate(data)
    except ValidationError as exc:
        raise InvalidLLMOutput(f"verdict outside its contract: {exc}") from exc
    out: dict[str, Any] = {key: round(getattr(answer, key), 3) for key in METRICS}
    overall = answer.overall
    if overall is None:
        p, z, r, s = (out[k] for k in METRICS)
        overall = 0.3 * p + 0.35 * z + 0.25 * r + 0.1 * (1 - s)
    out["overall"] = round(overall, 3)
    out["feedback"] = answer.feedback[:2000]
    return out

"""Cost policy applied by the stages: rule-based scoring, route requests, value-capped spend.

Issue 4's rules, in one place: deterministic answers first (seed 001), the lead's value tier and
its spend cap, the budget's throttle level (seed 003 section 4.2) and prompt complexity (seed
004) decide which rung of a stage's ladder serves a call.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from db.enums import Stage
from pipeline.deps import Deps
from pipeline.llm.routing import RouteRequest, Strategy, complexity_shift
from pipeline.models import Prompt
from pipeline.stages import store
from pipeline.stages._common import LeadView
from pipeline.value import has_enterprise_tech

# Rule-based fit scores inside this band are ambiguous and go to a model (seed 001).
AMBIGUOUS = range(45, 56)
ICP_INDUSTRIES = frozenset({"software", "finance", "healthcare", "logistics", "manufacturing"})


def rule_fit_score(view: LeadView, classification: dict[str, Any]) -> int:
    """A 0-100 fit score from firmographics, intent and seniority alone."""
    score = 30
    employees = view.employees or 0
    score += 25 if employees > 1000 else 15 if employees > 100 else 5 if employees > 10 else 0
    score += 15 if classification.get("industry") in ICP_INDUSTRIES else 0
    score += {"high": 20, "medium": 10}.get(str(classification.get("intent")), 0)
    score += 10 if has_enterprise_tech(view.tech_stack) else 0
    return max(0, min(100, score))


def throttle_level(deps: Deps) -> int:
    """The budget's current throttle level (0 when no budget guard is configured)."""
    if deps.budget is None:
        return 0
    return int(deps.budget.status().throttle_level)


def lead_spent(deps: Deps, view: LeadView) -> Decimal:
    """What this lead's run has cost so far: the ledger at the claim plus this stage's calls."""
    if view.spent_at_claim is not None:
        return view.spent_at_claim + view.pending.spent
    with deps.session_scope() as session:
        return store.lead_spent(session, view.id, view.run_id)


def spend_cap(deps: Deps, view: LeadView) -> Decimal | None:
    """The lead's value-derived spend cap, or None before its value is known."""
    if view.estimated_value is None:
        return None
    return view.estimated_value * deps.policy.spend_cap_ratio


def route_request(
    deps: Deps, view: LeadView, stage: Stage, prompt: Prompt, *, min_rung: int = 0
) -> RouteRequest:
    """Everything the router weighs for this lead's call at ``stage``."""
    try:
        strategy = Strategy(view.strategy)
    except ValueError:
        strategy = Strategy.BALANCED
    base = RouteRequest(
        tier=view.tier,
        strategy=strategy,
        complexity=complexity_shift(len(prompt.system) + len(prompt.user)),
        throttle_level=throttle_level(deps),
        min_rung=min_rung,
    )
    cap = spend_cap(deps, view)
    if cap is None:
        return base
    primary = deps.routing.route(stage, base)[0]
    estimate = deps.routing.catalog.price(primary.ref).cost_of_tokens(
        (len(prompt.system) + len(prompt.user)) // 4, primary.max_output_tokens // 2
    )
    over = lead_spent(deps, view) + estimate > cap
    return RouteRequest(
        tier=base.tier,
        strategy=base.strategy,
        complexity=base.complexity,
        throttle_level=base.throttle_level,
        over_cap=over,
        min_rung=min_rung,
    )

"""Cost and quality reports from the ledger (the source of truth for spend)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from db.enums import CallStatus, LeadStatus
from pipeline.llm.catalog import BASELINE_REF, Catalog
from pipeline.models import Usage
from pipeline.reporting import store
from pipeline.reporting.outcomes import lead_outcomes
from pipeline.reporting.paths import batch_vs_sync
from pipeline.reporting.quality import cost_vs_value, quality_distribution, reply_rates

CENT = Decimal("0.000001")  # reports round to micro-dollars; the ledger keeps 12 places


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT))


def build_report(
    session: Session,
    *,
    catalog: Catalog,
    campaign: str | None = None,
    is_cheap: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """The ``leadpipe report --json`` document (DESIGN.md section 4).

    The baseline prices the same tokens as if every call had run on Claude Sonnet 4. The outcome
    fields (``approved``, ``held``, ``parked``, ``failed``, ``cost_per_approved_email_usd``,
    ``top_failure_reasons``) come first: a savings percentage means nothing without the emails
    it paid for.
    """
    campaign_id = None
    if campaign is not None:
        campaign_id = store.campaign_id(session, campaign)
        if campaign_id is None:
            raise LookupError(f"no campaign named {campaign!r}")
    statuses = store.lead_status_counts(session, store.Scope(campaign_id=campaign_id))
    leads = sum(statuses.values())
    rows = store.call_groups(session, campaign_id=campaign_id)
    baseline_price = catalog.price(BASELINE_REF)
    by_stage: dict[str, dict[str, Any]] = {}
    by_model: dict[str, dict[str, Any]] = {}
    total = base_total = Decimal(0)
    calls = ok_calls = cache_hits = cheap_calls = 0
    simulated = False
    for stage, provider, model, status, n, p_tok, c_tok, cost, hits, sim in rows:
        cost = Decimal(cost or 0)
        baseline = baseline_price.cost(Usage(int(p_tok or 0), int(c_tok or 0)))
        total += cost
        base_total += baseline
        calls += n
        ok_calls += n if status == CallStatus.OK else 0
        if status == CallStatus.OK and is_cheap is not None and is_cheap(f"{provider}:{model}"):
            cheap_calls += n
        cache_hits += int(hits or 0)
        simulated = simulated or bool(sim)
        for key, bucket in ((stage, by_stage), (f"{provider}:{model}", by_model)):
            entry = bucket.setdefault(
                key,
                {
                    "calls": 0,
                    "failed_calls": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cost_usd": Decimal(0),
                    "baseline_cost_usd": Decimal(0),
                },
            )
            entry["calls"] += n
            entry["failed_calls"] += 0 if status == CallStatus.OK else n
            entry["prompt_tokens"] += int(p_tok or 0)
            entry["completion_tokens"] += int(c_tok or 0)
            entry["cost_usd"] += cost
            entry["baseline_cost_usd"] += baseline
    for entry in by_stage.values():
        ok = entry["calls"] - entry["failed_calls"]
        entry["llm_call_rate"] = round(ok / leads, 4) if leads else 0.0
    for bucket in (by_stage, by_model):
        for entry in bucket.values():
            entry["cost_usd"] = _money(entry["cost_usd"])
            entry["baseline_cost_usd"] = _money(entry["baseline_cost_usd"])
    quality = store.average_quality(session, campaign_id=campaign_id)
    savings = (Decimal(1) - total / base_total) * 100 if base_total else Decimal(0)
    outcomes = lead_outcomes(session, campaign_id=campaign_id)
    per_approved = _money(total / outcomes.approved) if outcomes.approved else None
    return {
        "campaign": campaign,
        "simulated": simulated,
        "leads": leads,
        **outcomes.to_dict(),
        "cost_per_approved_email_usd": per_approved,
        "completed": statuses.get(LeadStatus.COMPLETED, 0),
        "held_for_review": statuses.get(LeadStatus.HELD, 0),
        "failed": statuses.get(LeadStatus.FAILED, 0),
        "in_progress": statuses.get(LeadStatus.QUEUED, 0) + statuses.get(LeadStatus.RUNNING, 0),
        "llm_calls": calls,
        "failed_llm_calls": calls - ok_calls,
        "cost_usd": _money(total),
        "baseline_cost_usd": _money(base_total),
        "baseline_model": BASELINE_REF,
        "savings_pct": str(savings.quantize(Decimal("0.1"))),
        "cost_per_lead_usd": _money(total / leads) if leads else "0.000000",
        "cache_hit_rate": round(cache_hits / calls, 4) if calls else 0.0,
        "avg_quality": round(quality, 3) if quality is not None else None,
        "cheap_call_share": round(cheap_calls / ok_calls, 4) if ok_calls else 0.0,
        "by_stage": by_stage,
        "by_model": by_model,
        "quality_distribution": quality_distribution(session, campaign_id),
        "reply_rates": reply_rates(session, campaign_id),
        "cost_vs_value": cost_vs_value(session, campaign_id),
        "batch_vs_sync": batch_vs_sync(session, catalog=catalog, campaign_id=campaign_id),
    }

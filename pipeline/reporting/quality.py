"""Report sections on quality and outcomes: score distribution, reply rates, cost vs value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from pipeline.reporting import store

BUCKETS = (0.0, 0.5, 0.65, 0.75, 0.85, 0.95)


def quality_distribution(session: Session, campaign_id: int | None) -> dict[str, int]:
    """Count of chosen emails per judge-score bucket (bucket edges are the seed 000 gates)."""
    scores = store.email_qualities(session, campaign_id=campaign_id)
    labels = [f"{lo:.2f}-{hi:.2f}" for lo, hi in zip(BUCKETS, (*BUCKETS[1:], 1.0), strict=True)]
    counts = dict.fromkeys(labels, 0)
    for score in scores:
        if score is None:
            continue
        index = max(i for i, lo in enumerate(BUCKETS) if float(score) >= lo)
        counts[labels[index]] += 1
    return counts


def reply_rates(session: Session, campaign_id: int | None) -> dict[str, dict[str, Any]]:
    """Sent/replied/meeting counts and reply rate per variant, model and level."""
    out: dict[str, dict[str, Any]] = {}
    for dimension in ("variant", "model", "level"):
        rows = store.reply_counts(session, dimension, campaign_id=campaign_id)
        out[dimension] = {
            str(key): {
                "sent": n,
                "replied": int(r or 0),
                "meetings": int(m or 0),
                "reply_rate": round(int(r or 0) / n, 4) if n else 0.0,
            }
            for key, n, r, m in rows
        }
    return out


def cost_vs_value(session: Session, campaign_id: int | None) -> dict[str, dict[str, str]]:
    """Per tier: leads, average estimated value, average cost and cost as a share of value."""
    rows = store.tier_costs(session, campaign_id=campaign_id)
    out = {}
    for tier, n, value, cost in rows:
        value_d, cost_d = Decimal(value or 0), Decimal(cost or 0)
        share = cost_d / value_d * 1_000_000 if value_d else Decimal(0)
        out[str(tier)] = {
            "leads": str(n),
            "avg_value_usd": str(value_d.quantize(Decimal(1))),
            "avg_cost_usd": str(cost_d.quantize(Decimal("0.000001"))),
            "cost_per_million_of_value_usd": str(share.quantize(Decimal("0.01"))),
        }
    return out

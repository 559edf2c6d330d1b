"""Report sections on quality and outcomes: score distribution, reply rates, cost vs value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session

from db.models import Email, Lead, LLMCall, Outcome

BUCKETS = (0.0, 0.5, 0.65, 0.75, 0.85, 0.95)


def _scoped(stmt: Any, campaign_id: int | None) -> Any:
    return stmt if campaign_id is None else stmt.where(Lead.campaign_id == campaign_id)


def quality_distribution(session: Session, campaign_id: int | None) -> dict[str, int]:
    """Count of chosen emails per judge-score bucket (bucket edges are the seed 000 gates)."""
    scores = session.scalars(
        _scoped(select(Email.quality).join(Lead, Lead.id == Email.lead_id), campaign_id)
    ).all()
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
    for dimension, column in (
        ("variant", Email.variant),
        ("model", Email.model),
        ("level", Email.level),
    ):
        rows = session.execute(
            _scoped(
                select(
                    column,
                    func.count(Outcome.id),
                    func.sum(func.cast(Outcome.replied, Integer)),
                    func.sum(func.cast(Outcome.meeting, Integer)),
                )
                .select_from(Outcome)
                .join(Email, (Email.lead_id == Outcome.lead_id) & (Email.run_id == Outcome.run_id))
                .join(Lead, Lead.id == Email.lead_id)
                .group_by(column),
                campaign_id,
            )
        ).all()
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
    spent = (
        select(LLMCall.lead_id, func.sum(LLMCall.cost_usd).label("cost"))
        .group_by(LLMCall.lead_id)
        .subquery()
    )
    rows = session.execute(
        _scoped(
            select(
                Lead.tier,
                func.count(Lead.id),
                func.avg(Lead.estimated_value_usd),
                func.avg(func.coalesce(spent.c.cost, 0)),
            )
            .outerjoin(spent, spent.c.lead_id == Lead.id)
            .where(Lead.tier.is_not(None))
            .group_by(Lead.tier),
            campaign_id,
        )
    ).all()
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

"""The charts of the HTML report, drawn from the report document and the ledger series.

Inputs are plain values (``Decimal`` money, counts); :mod:`pipeline.reporting.html` gathers them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from db.enums import STAGE_ORDER
from pipeline.reporting.svg import LinePlot, Series, bar_chart, column_chart, line_chart

QUALITY_BINS = 20
STAGE_COLORS = {
    "classify": "#4e79a7",
    "score": "#f28e2b",
    "analyze": "#e15759",
    "demo": "#76b7b2",
    "personalize": "#59a14f",
    "judge": "#b07aa1",
}
ACTUAL, BASELINE = "#3e6bb3", "#c5cbd3"


@dataclass(frozen=True, slots=True)
class DayCost:
    """Spend of one UTC day: per stage, in total, and as the all-premium baseline."""

    day: str
    by_stage: dict[str, Decimal]
    cost: Decimal
    baseline: Decimal


@dataclass(frozen=True, slots=True)
class BudgetUse:
    """Cumulative spend within each UTC day as a percentage of the daily limit."""

    limit_usd: Decimal
    plot: LinePlot
    peak_pct: Decimal
    events: list[dict[str, Any]]


def money(value: Decimal) -> str:
    """Dollars for labels: cents above $1, four decimals below (LLM calls are cheap)."""
    if value >= 1000:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    return "$0" if value == 0 else f"${value:.4f}"


def tick_money(value: Decimal) -> str:
    """Dollars for axis ticks (no trailing zeros)."""
    return f"${value.normalize():,f}"


def stage_names(doc: dict[str, Any]) -> list[str]:
    """The report's stages in pipeline order (unknown names last, sorted)."""
    known = [s.value for s in STAGE_ORDER if s.value in doc["by_stage"]]
    return known + sorted(set(doc["by_stage"]) - set(known))


def build_charts(
    doc: dict[str, Any], days: Sequence[DayCost], quality: Sequence[int], budget: BudgetUse
) -> dict[str, Markup]:
    """Every chart of the page, keyed by its ``data-chart`` name."""
    stages = stage_names(doc)
    charts = {
        "cost-per-day": column_chart(
            [d.day for d in days],
            [
                Series(
                    s, STAGE_COLORS.get(s, "#9c755f"), [d.by_stage.get(s, Decimal(0)) for d in days]
                )
                for s in stages
            ],
            y_label="cost (USD)",
            fmt=tick_money,
            title="Cost per day, stacked by stage",
            value_fmt=money,
            x_label="day (UTC)",
            size=(1160, 300),
        ),
    }
    charts.update(_stage_charts(doc, stages))
    charts["model-mix"] = _model_mix(doc)
    charts["quality"] = _quality_chart(quality)
    charts["budget-use"] = line_chart(
        budget.plot,
        y_label="% of daily budget used",
        fmt=lambda v: f"{v.normalize():f} %" if v < 1 else f"{v:.1f} %",
        title="Budget use over time",
        x_label="time (UTC)",
    )
    return charts


def _stage_charts(doc: dict[str, Any], stages: list[str]) -> dict[str, Markup]:
    cost = [Decimal(doc["by_stage"][s]["cost_usd"]) for s in stages]
    base = [Decimal(doc["by_stage"][s]["baseline_cost_usd"]) for s in stages]
    calls = [doc["by_stage"][s]["calls"] for s in stages]
    total = sum(cost, Decimal(0)) or Decimal(1)
    per_stage = bar_chart(
        stages,
        [Series("cost", ACTUAL, cost)],
        x_label="cost (USD)",
        fmt=tick_money,
        title="Cost per stage",
        value_labels=[
            [
                f"{money(c)} · {n} calls · {c / total * 100:.0f} %"
                for c, n in zip(cost, calls, strict=True)
            ]
        ],
        label_width=96,
    )
    saved = [
        f"{(1 - c / b) * 100:.0f} % saved" if b else "" for c, b in zip(cost, base, strict=True)
    ]
    savings = bar_chart(
        stages,
        [
            Series("actual routing", ACTUAL, cost),
            Series(f"all on {doc['baseline_model']}", BASELINE, base),
        ],
        x_label="cost (USD)",
        fmt=tick_money,
        title="Savings against the all-premium baseline, per stage",
        value_labels=[
            [f"{money(c)} ({s})" for c, s in zip(cost, saved, strict=True)],
            [money(b) for b in base],
        ],
        label_width=96,
    )
    return {"cost-per-stage": per_stage, "savings": savings}


def _model_mix(doc: dict[str, Any]) -> Markup:
    models = sorted(doc["by_model"], key=lambda m: -Decimal(doc["by_model"][m]["cost_usd"]))
    calls = sum(doc["by_model"][m]["calls"] for m in models) or 1
    cost = sum((Decimal(doc["by_model"][m]["cost_usd"]) for m in models), Decimal(0)) or Decimal(1)
    call_share = [Decimal(doc["by_model"][m]["calls"] * 100) / calls for m in models]
    cost_share = [Decimal(doc["by_model"][m]["cost_usd"]) * 100 / cost for m in models]
    return bar_chart(
        models,
        [
            Series("share of calls", "#59a14f", call_share),
            Series("share of cost", ACTUAL, cost_share),
        ],
        x_label="share (%)",
        fmt=lambda v: f"{v.normalize():f} %",
        title="Model mix: share of calls and of cost per model",
        value_labels=[
            [
                f"{s:.1f} % · {doc['by_model'][m]['calls']} calls"
                for s, m in zip(call_share, models, strict=True)
            ],
            [
                f"{s:.1f} % · {money(Decimal(doc['by_model'][m]['cost_usd']))}"
                for s, m in zip(cost_share, models, strict=True)
            ],
        ],
        label_width=300,
        width=1160,
    )


def _quality_chart(counts: Sequence[int]) -> Markup:
    edges = [Decimal(i) / QUALITY_BINS for i in range(QUALITY_BINS)]
    bands = (
        ("below 0.65 (held for review)", "#e15759", Decimal(0), Decimal("0.65")),
        ("0.65 to 0.85", "#edc948", Decimal("0.65"), Decimal("0.85")),
        ("0.85 and above", "#59a14f", Decimal("0.85"), Decimal(2)),
    )
    series = [
        Series(
            name,
            color,
            [
                Decimal(c) if lo <= e < hi else Decimal(0)
                for e, c in zip(edges, counts, strict=True)
            ],
        )
        for name, color, lo, hi in bands
    ]
    return column_chart(
        [f"{e:.2f}" for e in edges],
        series,
        y_label="emails",
        x_label="judge quality score (bin start)",
        fmt=lambda v: f"{v:.0f}",
        title="Judge quality distribution",
    )

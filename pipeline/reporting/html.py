"""``leadpipe report --html``: one self-contained page with server-drawn SVG charts.

The page fetches nothing (no CDN, no script): the machines that run leadpipe may have no internet,
and a report mailed around must look the same everywhere. Figures come from the ledger
(``llm_calls``), ``emails.quality``, ``budgets`` and ``budget_events``; the headline numbers are
exactly :func:`pipeline.reporting.report.build_report`'s.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pipeline.budget import store as budget_db
from pipeline.llm.catalog import BASELINE_REF, Catalog
from pipeline.llm.prompts import render_text
from pipeline.models import Usage
from pipeline.reporting import store
from pipeline.reporting.charts import (
    QUALITY_BINS,
    BudgetUse,
    DayCost,
    build_charts,
    money,
    stage_names,
)
from pipeline.reporting.report import build_report
from pipeline.reporting.svg import LinePlot

DAY = 86_400
# Buckets for the budget line, smallest first: aim for at most ~48 points on the chart.
_BUCKETS = (1, 5, 10, 30, 60, 300, 900, 3600, 6 * 3600, DAY)


def _campaign_id(session: Session, campaign: str | None) -> int | None:
    if campaign is None:
        return None
    found = store.campaign_id(session, campaign)
    if found is None:
        raise LookupError(f"no campaign named {campaign!r}")
    return found


def cost_by_day(session: Session, *, catalog: Catalog, campaign_id: int | None) -> list[DayCost]:
    """Spend per UTC day and stage, days without calls included (zero), oldest first."""
    price = catalog.price(BASELINE_REF)
    days: dict[int, dict[str, Decimal]] = {}
    baselines: dict[int, Decimal] = {}
    for start, stage, cost, p_tok, c_tok in store.stage_costs(
        session, bucket_s=DAY, campaign_id=campaign_id
    ):
        days.setdefault(int(start), {})[stage] = Decimal(cost or 0)
        base = price.cost(Usage(int(p_tok or 0), int(c_tok or 0)))
        baselines[int(start)] = baselines.get(int(start), Decimal(0)) + base
    if not days:
        return []
    out = []
    for start in range(min(days), max(days) + DAY, DAY):
        stages = days.get(start, {})
        label = dt.datetime.fromtimestamp(start, dt.UTC).strftime("%Y-%m-%d")
        total = sum(stages.values(), Decimal(0))
        out.append(DayCost(label, stages, total, baselines.get(start, Decimal(0))))
    return out


def quality_histogram(session: Session, *, campaign_id: int | None) -> list[int]:
    """Count of emails per judge-quality bin of width 1/QUALITY_BINS over [0, 1]."""
    counts = [0] * QUALITY_BINS
    for quality, n in store.quality_counts(session, campaign_id=campaign_id):
        index = min(int(Decimal(quality or 0) * QUALITY_BINS), QUALITY_BINS - 1)
        counts[max(index, 0)] += int(n)
    return counts


def daily_limit(session: Session, default: Decimal) -> Decimal:
    """The global daily limit stored by ``leadpipe budget set``, else the configured default."""
    stored = budget_db.stored_limit(session, period="daily")
    return Decimal(stored) if stored is not None else default


def _x_ticks(first: int, last: int) -> list[tuple[float, str]]:
    span = max(last - first, 1)
    fmt = "%H:%M:%S" if span < 600 else "%H:%M" if span < DAY else "%m-%d %H:%M"
    if span >= 7 * DAY:
        fmt = "%Y-%m-%d"
    count = 5
    return [
        (
            first + span * i / count,
            dt.datetime.fromtimestamp(first + span * i / count, dt.UTC).strftime(fmt),
        )
        for i in range(count + 1)
    ]


def budget_use(session: Session, *, limit_usd: Decimal) -> BudgetUse:
    """Spend so far in each UTC day as % of the daily limit (all campaigns: budgets are global)."""
    span = store.call_time_span(session)
    events = _budget_events(session)
    if span is None or limit_usd <= 0:
        return BudgetUse(limit_usd, LinePlot([], []), Decimal(0), events)
    first, last = span
    size = next((b for b in _BUCKETS if (last - first) / b <= 48), DAY)
    rows = store.spend_by_bucket(session, bucket_s=size)
    points: list[tuple[float, Decimal]] = []
    day, running = -1, Decimal(0)
    for start, cost in rows:
        if int(start) // DAY != day:
            day, running = int(start) // DAY, Decimal(0)
            points.append((float(start), Decimal(0)))
        running += Decimal(cost or 0)
        points.append((float(int(start) + size), running / limit_usd * 100))
    x0, x1 = int(points[0][0]), int(points[-1][0])
    markers = [
        (e["epoch"], e["pct"], f"{e['kind']} (level {e['level']}): {e['message']}")
        for e in events
        if x0 <= e["epoch"] <= x1
    ]
    plot = LinePlot(points, _x_ticks(x0, x1), markers, (Decimal(100), "daily limit"))
    return BudgetUse(limit_usd, plot, max(p for _, p in points), events)


def _budget_events(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    out = []
    for e in budget_db.recent_events(session, limit):
        at = e.created_at if e.created_at.tzinfo else e.created_at.replace(tzinfo=dt.UTC)
        pct = Decimal(e.spent_usd) / Decimal(e.limit_usd) * 100 if e.limit_usd else Decimal(0)
        out.append(
            {
                "at": at.strftime("%Y-%m-%d %H:%M:%S"),
                "epoch": at.timestamp(),
                "period": e.period,
                "kind": e.kind,
                "level": e.level,
                "pct": pct,
                "spent": money(Decimal(e.spent_usd)),
                "limit": money(Decimal(e.limit_usd)),
                "message": e.message,
            }
        )
    return out


def build_html_report(
    session: Session,
    *,
    catalog: Catalog,
    campaign: str | None = None,
    default_daily_limit_usd: Decimal = Decimal(50),
    now: dt.datetime | None = None,
) -> str:
    """The whole page as one HTML string (inline CSS and SVG only).

    Args:
        session: a read-only session on the ledger's database.
        catalog: prices, for the all-premium baseline.
        campaign: one campaign's name, or None for all.
        default_daily_limit_usd: the configured daily limit, used when none is stored.
        now: the generation time shown on the page (default: the current UTC time).
    """
    doc = build_report(session, catalog=catalog, campaign=campaign)
    campaign_id = _campaign_id(session, campaign)
    days = cost_by_day(session, catalog=catalog, campaign_id=campaign_id)
    quality = quality_histogram(session, campaign_id=campaign_id)
    budget = budget_use(session, limit_usd=daily_limit(session, default_daily_limit_usd))
    charts = build_charts(doc, days, quality, budget)
    return render_text(
        "report/report.html.j2",
        doc=doc,
        days=days,
        quality_total=sum(quality),
        budget=budget,
        charts=charts,
        stages=stage_names(doc),
        money=money,
        dec=Decimal,
        generated_at=(now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_html_report(
    session: Session,
    path: Path,
    *,
    catalog: Catalog,
    campaign: str | None,
    daily_limit_usd: Decimal,
) -> None:
    """Render the page (see :func:`build_html_report`) and write it to ``path``."""
    page = build_html_report(
        session, catalog=catalog, campaign=campaign, default_daily_limit_usd=daily_limit_usd
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")

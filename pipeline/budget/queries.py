"""Budget rows in the database: configured limits, alert/throttle events and ledger sums."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Budget, BudgetEvent, Campaign, LLMCall
from pipeline.budget.throttle import Window


def load_limits(session: Session) -> dict[tuple[int | None, str], Decimal]:
    """Limits stored with ``leadpipe budget set``: ``(campaign_id or None, period) -> USD``."""
    rows = session.scalars(select(Budget)).all()
    return {(row.campaign_id, row.period): row.limit_usd for row in rows}


def save_limit(session: Session, *, period: str, campaign_id: int | None, limit: Decimal) -> None:
    """Insert or update one limit."""
    row = session.scalars(
        select(Budget).where(Budget.period == period, Budget.campaign_id.is_(campaign_id))
        if campaign_id is None
        else select(Budget).where(Budget.period == period, Budget.campaign_id == campaign_id)
    ).first()
    if row is None:
        session.add(Budget(period=period, campaign_id=campaign_id, limit_usd=limit))
    else:
        row.limit_usd = limit


def campaign_id(session: Session, name: str) -> int | None:
    """The id of the campaign called ``name``, if it exists."""
    return session.scalars(select(Campaign.id).where(Campaign.name == name)).first()


def ledger_spent(session: Session, win: Window, *, campaign: int | None = None) -> Decimal:
    """Everything the ledger billed inside ``win`` (one campaign's calls when given)."""
    query = select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(
        LLMCall.created_at >= win.start.astimezone(dt.UTC),
        LLMCall.created_at < win.end.astimezone(dt.UTC),
    )
    if campaign is not None:
        query = query.where(LLMCall.campaign_id == campaign)
    return Decimal(session.scalar(query) or 0)


def add_event(
    session: Session,
    *,
    win: Window,
    kind: str,
    level: int,
    spent: Decimal,
    limit: Decimal,
    message: str,
) -> None:
    """Append one ``budget_events`` row (an alert crossing or a throttle change)."""
    session.add(
        BudgetEvent(
            period=win.period.value,
            period_start=win.start,
            kind=kind,
            level=level,
            spent_usd=spent,
            limit_usd=limit,
            message=message,
        )
    )


def recorded_request_ids(session: Session, request_ids: list[str]) -> list[str]:
    """Which of these reservation ids already have their ledger row (the gateway uses the
    reservation id as the row's request id)."""
    if not request_ids:
        return []
    query = select(LLMCall.request_id).where(LLMCall.request_id.in_(request_ids))
    return list(session.scalars(query))

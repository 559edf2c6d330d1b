"""The budget's data access: every SQL statement of the capability lives here.

Configured limits (``budgets``), alert/throttle events (``budget_events``), ledger sums for a
period, and the queue pauses (``queue_state``) that throttle level 5 and ``leadpipe queues``
store. Functions take a ``Session`` and never commit (the caller owns the transaction).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Budget, BudgetEvent, Campaign, LLMCall, QueueState
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


def stored_limit(
    session: Session, *, period: str, campaign_id: int | None = None
) -> Decimal | None:
    """The limit stored for one period (and campaign, None = global), if any."""
    query = select(Budget.limit_usd).where(Budget.period == period)
    query = query.where(
        Budget.campaign_id.is_(None) if campaign_id is None else Budget.campaign_id == campaign_id
    )
    return session.scalars(query).first()


def recent_events(session: Session, limit: int = 50) -> Sequence[BudgetEvent]:
    """The newest ``budget_events`` rows, newest first."""
    query = select(BudgetEvent).order_by(BudgetEvent.created_at.desc()).limit(limit)
    return session.scalars(query).all()


def queue_states(session: Session) -> dict[str, QueueState]:
    """Every stored queue state by queue name (queues never paused have no row)."""
    return {row.queue: row for row in session.scalars(select(QueueState)).all()}


def save_queue_state(
    session: Session, queue: str, *, paused: bool, reason: str | None, by: str
) -> None:
    """Store one queue's pause (or resume), who did it and when."""
    row = session.get(QueueState, queue) or QueueState(queue=queue)
    row.paused, row.reason, row.changed_by = paused, reason, by
    row.changed_at = dt.datetime.now(dt.UTC)
    session.add(row)


def queue_paused_flags(session: Session) -> dict[str, bool]:
    """Queue name -> paused, for every stored queue state."""
    rows = session.execute(select(QueueState.queue, QueueState.paused))
    return dict(rows.tuples().all())


def paused_queue_reasons(session: Session) -> dict[str, str | None]:
    """Queue name -> the stored reason, for every paused queue."""
    rows = session.execute(
        select(QueueState.queue, QueueState.reason).where(QueueState.paused.is_(True))
    )
    return dict(rows.tuples().all())


def paused_queue_names(session: Session) -> set[str]:
    """The names of the paused queues."""
    return set(session.scalars(select(QueueState.queue).where(QueueState.paused)))

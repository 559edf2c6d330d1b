"""Approved emails out (CSV / JSONL), and the human-review queue."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import EmailStatus, LeadStatus, ReviewStatus
from db.models import Campaign, Email, Lead, LLMCall, ReviewItem

FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "tier",
    "subject",
    "body",
    "quality",
    "model",
    "level",
    "variant",
    "cost_usd",
)


def export_emails(session: Session, *, campaign: str, fmt: str) -> tuple[str, int]:
    """Approved emails of ``campaign`` as CSV or JSONL text, and how many there are."""
    cost = (
        select(LLMCall.lead_id, func.sum(LLMCall.cost_usd).label("cost"))
        .group_by(LLMCall.lead_id)
        .subquery()
    )
    rows = session.execute(
        select(Lead, Email, cost.c.cost)
        .join(Email, Email.lead_id == Lead.id)
        .join(Campaign, Campaign.id == Lead.campaign_id)
        .outerjoin(cost, cost.c.lead_id == Lead.id)
        .where(Campaign.name == campaign, Email.status == EmailStatus.APPROVED)
        .order_by(Lead.id)
    ).all()
    records = [
        {
            "email": lead.email,
            "first_name": lead.first_name,
            "last_name": lead.last_name,
            "company": lead.company,
            "tier": lead.tier,
            "subject": email.subject,
            "body": email.body,
            "quality": str(email.quality),
            "model": email.model,
            "level": email.level,
            "variant": email.variant,
            "cost_usd": str(spent or 0),
        }
        for lead, email, spent in rows
    ]
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), len(records)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(records)
    return buf.getvalue(), len(records)


def review_items(
    session: Session, *, status: ReviewStatus | None = ReviewStatus.PENDING
) -> list[dict[str, Any]]:
    """Held emails with their lead and reason."""
    stmt = (
        select(ReviewItem, Email, Lead)
        .join(Email, Email.id == ReviewItem.email_id)
        .join(Lead, Lead.id == ReviewItem.lead_id)
        .order_by(ReviewItem.id)
    )
    if status is not None:
        stmt = stmt.where(ReviewItem.status == status)
    return [
        {
            "id": item.id,
            "lead_id": lead.id,
            "company": lead.company,
            "reason": item.reason,
            "status": item.status,
            "subject": email.subject,
            "body": email.body,
            "quality": str(email.quality),
            "model": email.model,
        }
        for item, email, lead in session.execute(stmt)
    ]


def review_decide(session: Session, item_id: int, *, approve: bool, by: str) -> None:
    """Approve or reject a held email.

    Raises:
        LookupError: no pending review item with that id.
    """
    item = session.get(ReviewItem, item_id)
    if item is None or item.status != ReviewStatus.PENDING:
        raise LookupError(f"no pending review item {item_id}")
    item.status = ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED
    item.decided_by, item.decided_at = by, dt.datetime.now(dt.UTC)
    email = session.get_one(Email, item.email_id)
    email.status = EmailStatus.APPROVED if approve else EmailStatus.REJECTED
    lead = session.get_one(Lead, item.lead_id)
    lead.status = LeadStatus.COMPLETED

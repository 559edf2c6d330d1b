"""Where the planner's deadlines come from: each lead's campaign send-by time and batch window."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import Batch, Campaign, Lead
from pipeline.batch.planner import lead_deadline


def deadlines(session: Session, lead_ids: Iterable[int]) -> dict[int, dt.datetime | None]:
    """Lead id -> its deadline (None: none), from ``campaigns.send_by`` / ``send_within_s``."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Lead.id, Campaign.send_by, Campaign.send_within_s, Batch.created_at)
        .join(Campaign, Campaign.id == Lead.campaign_id)
        .join(Batch, Batch.id == Lead.batch_id)
        .where(Lead.id.in_(ids))
    ).all()
    return {
        lead: lead_deadline(send_by, within, created) for lead, send_by, within, created in rows
    }


def earliest(found: Iterable[dt.datetime | None]) -> dt.datetime | None:
    """The earliest of several deadlines (a group waits only as long as its most urgent lead)."""
    moments = [d for d in found if d is not None]
    return min(moments) if moments else None

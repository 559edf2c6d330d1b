"""Where the planner's deadlines come from: each lead's campaign send-by time and batch window."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy.orm import Session

from pipeline.batch import store
from pipeline.batch.planner import lead_deadline


def deadlines(session: Session, lead_ids: Iterable[int]) -> dict[int, dt.datetime | None]:
    """Lead id -> its deadline (None: none), from ``campaigns.send_by`` / ``send_within_s``."""
    ids = sorted(set(lead_ids))
    if not ids:
        return {}
    return {
        row.lead_id: lead_deadline(row.send_by, row.send_within_s, row.batch_created_at)
        for row in store.lead_windows(session, ids)
    }


def earliest(found: Iterable[dt.datetime | None]) -> dt.datetime | None:
    """The earliest of several deadlines (a group waits only as long as its most urgent lead)."""
    moments = [d for d in found if d is not None]
    return min(moments) if moments else None

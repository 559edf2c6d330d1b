"""A campaign's send-by time, read by the deadline planner (``pipeline/batch/planner.py``).

``send_by`` is one moment every email of the campaign is due by; ``send_within_s`` gives each
enqueued batch its own deadline (the batch's creation plus that many seconds), for scheduled
campaigns that enqueue every night. Either, both (the earlier counts) or neither (no deadline:
work may always wait for a provider batch).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from pipeline.campaigns.batches import get_or_create_campaign
from pipeline.campaigns.store import campaign_by_name


@dataclass(frozen=True, slots=True)
class SendBy:
    """A campaign's deadline settings."""

    campaign: str
    send_by: dt.datetime | None
    send_within_s: int | None
    created: bool = False
    """No campaign had that name: it was created (a deadline may come before the first batch)."""


def set_send_by(
    session: Session,
    name: str,
    *,
    send_by: dt.datetime | None,
    send_within_s: int | None,
) -> SendBy:
    """Set (or, with both None, clear) the deadline of campaign ``name``, created if new.

    Raises:
        ValueError: ``send_within_s`` is not positive.
    """
    if send_within_s is not None and send_within_s <= 0:
        raise ValueError("the per-batch window must be a positive number of seconds")
    campaign = campaign_by_name(session, name)
    created = campaign is None
    if campaign is None:
        campaign = get_or_create_campaign(session, name)
    campaign.send_by = send_by
    campaign.send_within_s = send_within_s
    session.flush()
    return SendBy(campaign.name, send_by, send_within_s, created)

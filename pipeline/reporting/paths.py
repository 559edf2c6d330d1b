"""Batch vs sync per campaign: what went each way, what the batch path saved, deadline held.

Read from the ledger: a row answered through a batch (self-hosted group or provider batch API)
has ``batch`` as the last part of its routing reason (the collector writes it), every other row
ran on the sync path. The saving of a batch row is what its tokens cost at the model's list
price (the sync path's price) minus what the batch cost. A campaign's deadline is its send-by
time and/or per-batch window (``campaigns.send_by``, ``send_within_s``); it held when every
lead with a deadline finished (completed, held for review or failed) by it, and none is still
open past it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from db.enums import LeadStatus
from pipeline.batch.planner import deadline_held, lead_deadline
from pipeline.llm.catalog import Catalog
from pipeline.models import Usage
from pipeline.reporting import store

CENT = Decimal("0.000001")
FINISHED = (LeadStatus.COMPLETED, LeadStatus.HELD, LeadStatus.FAILED)


def batch_vs_sync(
    session: Session,
    *,
    catalog: Catalog,
    campaign_id: int | None = None,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """One entry per campaign with ledger rows or a deadline (``report --json``
    ``batch_vs_sync``)."""
    moment = now or dt.datetime.now(dt.UTC)
    found = []
    for campaign in store.campaign_deadlines(session, campaign_id=campaign_id):
        paths = _paths(session, catalog, campaign.id)
        due = _deadline(session, campaign, moment)
        if paths["batch"]["calls"] or paths["sync"]["calls"] or due["leads_due"]:
            found.append(
                {
                    "campaign": campaign.name,
                    "send_by": campaign.send_by.isoformat() if campaign.send_by else None,
                    "send_within_s": campaign.send_within_s,
                    **paths,
                    "flipped_to_sync": store.flipped_request_count(session, campaign.id),
                    "deadline": due,
                }
            )
    return found


def _paths(session: Session, catalog: Catalog, campaign_id: int) -> dict[str, Any]:
    calls = {True: 0, False: 0}
    cost = {True: Decimal(0), False: Decimal(0)}
    listed = Decimal(0)
    for is_batch, provider, model, n, p_tok, c_tok, spent in store.path_calls(session, campaign_id):
        key = bool(is_batch)
        calls[key] += int(n)
        cost[key] += Decimal(spent or 0)
        if key:
            ref = f"{provider}:{model}"
            usage = Usage(int(p_tok or 0), int(c_tok or 0))
            listed += catalog.price(ref).cost(usage) if catalog.knows(ref) else Decimal(spent or 0)
    return {
        "batch": {
            "calls": calls[True],
            "cost_usd": _money(cost[True]),
            "sync_price_usd": _money(listed),
            "saved_usd": _money(listed - cost[True]),
        },
        "sync": {"calls": calls[False], "cost_usd": _money(cost[False])},
    }


def _deadline(
    session: Session, campaign: store.CampaignDeadline, now: dt.datetime
) -> dict[str, Any]:
    counts = {"leads_due": 0, "on_time": 0, "late": 0, "open_past_deadline": 0}
    if campaign.send_by is None and campaign.send_within_s is None:
        return {**counts, "held": None}
    for status, updated, created in store.lead_timings(session, campaign.id):
        deadline = lead_deadline(campaign.send_by, campaign.send_within_s, created)
        if deadline is None:
            continue
        counts["leads_due"] += 1
        held = deadline_held(deadline, updated if status in FINISHED else None)
        if held is True:
            counts["on_time"] += 1
        elif held is False:
            counts["late"] += 1
        elif now > deadline:
            counts["open_past_deadline"] += 1
    verdict = None
    if counts["leads_due"]:
        verdict = counts["late"] == 0 and counts["open_past_deadline"] == 0
    return {**counts, "held": verdict}


def _money(value: Decimal | int) -> str:
    return str(Decimal(value).quantize(CENT))

"""Turning a parsed lead file into a campaign batch, and reading its progress."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from db.enums import LeadStatus, Tier
from db.models import Batch, Campaign, Lead
from pipeline.campaigns import store
from pipeline.ingest.leads import LeadRecord, LeadStream, ParseResult
from pipeline.reporting.outcomes import PARKED, lead_outcomes
from pipeline.value import LeadSignals, estimate_lead_value, has_enterprise_tech, tier_for

TERMINAL = (LeadStatus.COMPLETED, LeadStatus.HELD, LeadStatus.FAILED, PARKED)


@dataclass(frozen=True, slots=True)
class NewBatch:
    """What ``enqueue`` reports and dispatches."""

    batch_id: str
    run_id: str
    leads: list[tuple[int, int]]  # (lead id, message priority)


def hash_file(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def get_or_create_campaign(
    session: Session, name: str, *, priority: int = 5, strategy: str | None = None
) -> Campaign:
    """The campaign called ``name``, created on first use; ``strategy`` updates it when given."""
    campaign = store.campaign_by_name(session, name)
    if campaign is None:
        campaign = Campaign(name=name, priority=priority, strategy=strategy or "balanced")
        session.add(campaign)
        session.flush()
    elif strategy is not None:
        campaign.strategy = strategy
    return campaign


def create_batch(
    session: Session,
    parsed: ParseResult,
    *,
    campaign: str,
    priority: int,
    source: str,
    source_hash: str,
    strategy: str | None = None,
) -> NewBatch:
    """Store a batch and its good leads; priorities favour likely enterprise leads.

    Priority 0 is the highest (Celery on Redis). A lead that already looks enterprise from its
    CRM fields goes one step ahead of the campaign's priority.
    """
    batch = _new_batch(
        session,
        campaign,
        priority=priority,
        source=source,
        source_hash=source_hash,
        strategy=strategy,
        accepted=len(parsed.leads),
        rejected=len(parsed.rejects),
        rejects=[{"row": r.row, "reason": r.reason} for r in parsed.rejects],
    )
    rows = [_lead_row(rec, batch) for rec in parsed.leads]
    session.add_all(rows)
    session.flush()
    out = [(row.id, _priority(rec, priority)) for row, rec in zip(rows, parsed.leads, strict=True)]
    return NewBatch(batch_id=batch.id, run_id=batch.run_id, leads=out)


def _new_batch(
    session: Session,
    campaign: str,
    *,
    priority: int,
    source: str,
    source_hash: str,
    strategy: str | None,
    **counts: Any,
) -> Batch:
    """A new batch row (flushed, so it has its id) in ``campaign``, created on first use."""
    camp = get_or_create_campaign(session, campaign, priority=priority, strategy=strategy)
    batch = Batch(
        id=str(uuid.uuid4()),
        campaign_id=camp.id,
        run_id=str(uuid.uuid4()),
        source=source,
        source_hash=source_hash,
        priority=priority,
        **counts,
    )
    session.add(batch)
    session.flush()
    return batch


INSERT_CHUNK = 2000
"""Leads per multi-row INSERT when a file is stored as it streams in."""


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """A batch stored from a lead stream: what ``enqueue`` reports (its chains go out later)."""

    batch_id: str
    run_id: str
    accepted: int
    rejected: int


def store_stream(
    session: Session,
    stream: LeadStream,
    leads: Iterable[LeadRecord],
    *,
    campaign: str,
    priority: int,
    source: str,
    source_hash: str,
    strategy: str | None = None,
    chunk_size: int = INSERT_CHUNK,
) -> StoredBatch:
    """Store a batch while its file is read: leads go in ``chunk_size`` rows per INSERT.

    ``leads`` is ``stream`` itself or what is left of it (the caller may have looked at the first
    lead already). Memory stays bounded: no lead is kept once its chunk is inserted. Accepted and
    rejected counts and the rejects are written on the batch row once the stream ends. The whole
    batch is one transaction, the caller's: a file error raised half-way stores nothing.
    """
    batch = _new_batch(
        session,
        campaign,
        priority=priority,
        source=source,
        source_hash=source_hash,
        strategy=strategy,
    )
    rows = iter(leads)
    while chunk := list(itertools.islice(rows, chunk_size)):
        store.insert_leads(session, [_lead_values(rec, batch) for rec in chunk])
    store.set_batch_counts(
        session,
        batch.id,
        accepted=stream.accepted,
        rejects=[{"row": r.row, "reason": r.reason} for r in stream.rejects],
    )
    return StoredBatch(batch.id, batch.run_id, stream.accepted, len(stream.rejects))


def _lead_values(rec: LeadRecord, batch: Batch) -> dict[str, Any]:
    """The column values of one new lead (an ORM row or one row of a bulk INSERT/COPY)."""
    return {
        "batch_id": batch.id,
        "campaign_id": batch.campaign_id,
        "run_id": batch.run_id,
        "row_number": rec.row,
        "company": rec.company,
        "website": rec.website,
        "email": rec.email,
        "first_name": rec.first_name,
        "last_name": rec.last_name,
        "title": rec.title,
        "industry_hint": rec.industry,
        "employees": rec.employees,
        "revenue_usd": rec.revenue_usd,
        "country": rec.country,
        "tech_stack": list(rec.tech_stack),
        "notes": rec.notes,
        "raw": dict(rec.raw),
        "content_hash": rec.content_hash,
    }


def _priority(rec: LeadRecord, base: int) -> int:
    return _lead_priority(rec.employees, rec.industry, rec.country, rec.tech_stack, base)


def _lead_priority(
    employees: int | None,
    industry: str | None,
    country: str | None,
    tech_stack: Sequence[Any],
    base: int,
) -> int:
    value = estimate_lead_value(
        LeadSignals(
            employees=employees,
            industry=industry,
            country=country,
            has_enterprise_tech_stack=has_enterprise_tech([str(t) for t in tech_stack]),
        )
    )
    return max(0, base - 1) if tier_for(value) is Tier.ENTERPRISE else base


def find_enqueued(session: Session, *, campaign: str, source_hash: str) -> Batch | None:
    """The latest batch of this campaign made from the same file bytes, if any.

    ``enqueue`` re-run after a failure must finish that batch, not store a second one (every
    lead would be processed and paid twice).
    """
    return store.latest_batch_from(session, campaign=campaign, source_hash=source_hash)


def claim_dispatch(session: Session, batch_id: str) -> NewBatch | None:
    """Mark a stored batch dispatched and return the chains to send; None if already marked.

    The outbox step: the caller sends the chains inside the same transaction, so the mark only
    commits once every chain was handed to the broker, and a failed send rolls it back (the batch
    stays pending for a re-run or the sweep). The conditional UPDATE row-locks the batch, so two
    finishers racing on one batch dispatch it once.
    """
    if not store.mark_dispatched(session, batch_id):
        return None
    batch = session.get_one(Batch, batch_id)
    rows = store.queued_leads(session, batch_id)
    base = batch.priority
    leads = [
        (r.id, _lead_priority(r.employees, r.industry_hint, r.country, r.tech_stack, base))
        for r in rows
    ]
    return NewBatch(batch_id=batch.id, run_id=batch.run_id, leads=leads)


def _lead_row(rec: LeadRecord, batch: Batch) -> Lead:
    return Lead(**_lead_values(rec, batch))


def batch_progress(session: Session, batch_id: str) -> dict[str, Any]:
    """Lead counts by status and outcome, the top reasons, and stage-result counts by stage.

    ``done`` counts every lead no worker will touch again without help (approved, held, parked,
    failed); ``approved``/``held``/``parked``/``failed`` say what they came to, so a failed lead
    is never mistaken for a finished one.
    """
    outcomes = lead_outcomes(session, batch_id=batch_id)
    stages: dict[str, dict[str, int]] = {}
    for stage, status, count in store.stage_result_counts(session, batch_id):
        stages.setdefault(stage, {})[status] = count
    return {
        "batch_id": batch_id,
        "leads": outcomes.leads,
        "done": outcomes.finished,
        "by_status": outcomes.by_status,
        "by_stage": stages,
        **outcomes.to_dict(),
    }

"""The reporting capability's data access: every read the report, its quality sections, the
outcome counts, the HTML page and the batch-vs-sync section make of the ledger (``llm_calls``),
leads, emails, review items, outcomes, campaigns and batch requests. Read-only; functions take
a ``Session`` and return plain tuples and numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Integer, cast, extract, func, or_, select
from sqlalchemy.orm import Session

from db.enums import EmailStatus, LeadStatus, ReviewStatus
from db.models import Batch, BatchRequest, Campaign, Email, Lead, LLMCall, Outcome, ReviewItem
from pipeline.liveness import PARKED_PREFIX

IN_PROGRESS = (LeadStatus.QUEUED, LeadStatus.RUNNING)
# A parked lead keeps an in-progress status; its error says ``stage: parked: ...``.
_PARKED_LEAD = Lead.status.in_(IN_PROGRESS) & Lead.error.contains(PARKED_PREFIX)
BATCH_MARK = "batch"
"""The last part of the routing reason of a ledger row answered through a batch."""
FLIP_MARK = "flipped to sync: "
"""How ``pipeline/batch/awaiting.py`` marks a request taken back from a provider batch."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which leads a count covers: one campaign, one batch, both, or every lead (both None)."""

    campaign_id: int | None = None
    batch_id: str | None = None

    def apply(self, stmt: Any) -> Any:
        """``stmt`` (which reads ``leads``) narrowed to this scope."""
        if self.campaign_id is not None:
            stmt = stmt.where(Lead.campaign_id == self.campaign_id)
        if self.batch_id is not None:
            stmt = stmt.where(Lead.batch_id == self.batch_id)
        return stmt


class CallGroup(NamedTuple):
    """Ledger rows of one (stage, provider, model, status), summed."""

    stage: str
    provider: str
    model: str
    status: str
    calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: Decimal | None
    cache_hits: int | None
    simulated: int | None


class ReplyCounts(NamedTuple):
    """Outcomes of the emails sharing one value of a dimension (variant, model or level)."""

    key: Any
    sent: int
    replied: int | None
    meetings: int | None


class TierCosts(NamedTuple):
    """Leads of one value tier: how many, their average estimated value and average spend."""

    tier: str
    leads: int
    avg_value_usd: Decimal | None
    avg_cost_usd: Decimal | None


class StageCost(NamedTuple):
    """Spend and tokens of one stage inside one time bucket (epoch seconds at its start)."""

    start: int
    stage: str
    cost_usd: Decimal | None
    prompt_tokens: int | None
    completion_tokens: int | None


class CampaignDeadline(NamedTuple):
    """A campaign and its deadline terms (send-by time and/or per-batch window)."""

    id: int
    name: str
    send_by: dt.datetime | None
    send_within_s: int | None


class PathCalls(NamedTuple):
    """Ledger rows of one campaign on one path (batch or sync) and model, summed."""

    batch: bool
    provider: str
    model: str
    calls: int
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: Decimal | None


class LeadTiming(NamedTuple):
    """A lead's status, when it last changed and when its batch came in."""

    status: str
    updated_at: dt.datetime
    batch_created_at: dt.datetime


def campaign_id(session: Session, name: str) -> int | None:
    """The id of the campaign called ``name``, if it exists."""
    return session.scalars(select(Campaign.id).where(Campaign.name == name)).first()


# --- lead outcomes --------------------------------------------------------------------------------


def lead_status_counts(session: Session, scope: Scope) -> dict[str, int]:
    """Leads per status."""
    rows = session.execute(scope.apply(select(Lead.status, func.count()).group_by(Lead.status)))
    return {str(status): int(n) for status, n in rows.all()}


def approved_lead_count(session: Session, scope: Scope) -> int:
    """Leads whose current run has an approved email."""
    stmt = (
        select(func.count(func.distinct(Email.lead_id)))
        .join(Lead, Lead.id == Email.lead_id)
        .where(Email.status == EmailStatus.APPROVED, Email.run_id == Lead.run_id)
    )
    return int(session.execute(scope.apply(stmt)).scalar_one())


def parked_lead_count(session: Session, scope: Scope) -> int:
    """Leads parked by an outage while their task keeps retrying (status still in progress)."""
    stmt = select(func.count()).select_from(Lead).where(_PARKED_LEAD)
    return int(session.execute(scope.apply(stmt)).scalar_one())


def stopped_lead_errors(
    session: Session, scope: Scope, *, statuses: Sequence[str]
) -> list[tuple[str, str | None]]:
    """(status, error) of every lead with one of ``statuses`` or parked by an outage."""
    stmt = select(Lead.status, Lead.error).where(Lead.status.in_(statuses) | _PARKED_LEAD)
    return [(status, error) for status, error in session.execute(scope.apply(stmt))]


def held_reasons(session: Session, scope: Scope) -> list[str | None]:
    """The pending review reason of every held lead."""
    stmt = (
        select(ReviewItem.reason)
        .join(Lead, Lead.id == ReviewItem.lead_id)
        .where(Lead.status == LeadStatus.HELD, ReviewItem.status == ReviewStatus.PENDING)
    )
    return [reason for (reason,) in session.execute(scope.apply(stmt))]


# --- the report -----------------------------------------------------------------------------------


def call_groups(session: Session, *, campaign_id: int | None) -> list[CallGroup]:
    """The ledger grouped by stage, provider, model and status (one campaign's calls if given)."""
    stmt = select(
        LLMCall.stage,
        LLMCall.provider,
        LLMCall.model,
        LLMCall.status,
        func.count(),
        func.sum(LLMCall.prompt_tokens),
        func.sum(LLMCall.completion_tokens),
        func.sum(LLMCall.cost_usd),
        func.sum(func.cast(LLMCall.cache_hit, Integer())),
        func.max(func.cast(LLMCall.simulated, Integer())),
    ).group_by(LLMCall.stage, LLMCall.provider, LLMCall.model, LLMCall.status)
    if campaign_id is not None:
        stmt = stmt.where(LLMCall.campaign_id == campaign_id)
    return [CallGroup(*row) for row in session.execute(stmt).all()]


def average_quality(session: Session, *, campaign_id: int | None) -> float | None:
    """The mean judge quality of the chosen emails, None when there are none."""
    stmt = select(func.avg(Email.quality)).join(Lead, Lead.id == Email.lead_id)
    value = session.execute(Scope(campaign_id).apply(stmt)).scalar()
    return None if value is None else float(value)


def email_qualities(session: Session, *, campaign_id: int | None) -> list[Decimal | None]:
    """The judge quality of every chosen email."""
    stmt = select(Email.quality).join(Lead, Lead.id == Email.lead_id)
    return list(session.scalars(Scope(campaign_id).apply(stmt)).all())


_REPLY_DIMENSIONS = {"variant": Email.variant, "model": Email.model, "level": Email.level}


def reply_counts(session: Session, dimension: str, *, campaign_id: int | None) -> list[ReplyCounts]:
    """Sent, replied and meeting counts per value of ``dimension`` (variant, model or level)."""
    column = _REPLY_DIMENSIONS[dimension]
    stmt = (
        select(
            column,
            func.count(Outcome.id),
            func.sum(func.cast(Outcome.replied, Integer)),
            func.sum(func.cast(Outcome.meeting, Integer)),
        )
        .select_from(Outcome)
        .join(Email, (Email.lead_id == Outcome.lead_id) & (Email.run_id == Outcome.run_id))
        .join(Lead, Lead.id == Email.lead_id)
        .group_by(column)
    )
    return [ReplyCounts(*row) for row in session.execute(Scope(campaign_id).apply(stmt)).all()]


def tier_costs(session: Session, *, campaign_id: int | None) -> list[TierCosts]:
    """Per value tier: leads, average estimated value and average ledger spend per lead."""
    spent = (
        select(LLMCall.lead_id, func.sum(LLMCall.cost_usd).label("cost"))
        .group_by(LLMCall.lead_id)
        .subquery()
    )
    stmt = (
        select(
            Lead.tier,
            func.count(Lead.id),
            func.avg(Lead.estimated_value_usd),
            func.avg(func.coalesce(spent.c.cost, 0)),
        )
        .outerjoin(spent, spent.c.lead_id == Lead.id)
        .where(Lead.tier.is_not(None))
        .group_by(Lead.tier)
    )
    return [TierCosts(*row) for row in session.execute(Scope(campaign_id).apply(stmt)).all()]


# --- the HTML page --------------------------------------------------------------------------------


def _epoch() -> Any:
    return cast(extract("epoch", LLMCall.created_at), BigInteger)


def stage_costs(session: Session, *, bucket_s: int, campaign_id: int | None) -> list[StageCost]:
    """Spend and tokens per stage and time bucket of ``bucket_s`` seconds (unordered)."""
    epoch = _epoch()
    start = epoch - epoch % bucket_s
    stmt = select(
        start,
        LLMCall.stage,
        func.sum(LLMCall.cost_usd),
        func.sum(LLMCall.prompt_tokens),
        func.sum(LLMCall.completion_tokens),
    ).group_by(start, LLMCall.stage)
    if campaign_id is not None:
        stmt = stmt.where(LLMCall.campaign_id == campaign_id)
    return [StageCost(*row) for row in session.execute(stmt).tuples()]


def quality_counts(
    session: Session, *, campaign_id: int | None
) -> list[tuple[Decimal | None, int]]:
    """How many emails have each judge quality (emails without one left out)."""
    stmt = select(Email.quality, func.count()).where(Email.quality.is_not(None))
    if campaign_id is not None:
        stmt = stmt.join(Lead, Lead.id == Email.lead_id).where(Lead.campaign_id == campaign_id)
    return [(q, n) for q, n in session.execute(stmt.group_by(Email.quality)).tuples()]


def call_time_span(session: Session) -> tuple[int, int] | None:
    """Epoch seconds of the first and the last ledger row, None when the ledger is empty."""
    epoch = _epoch()
    first, last = session.execute(select(func.min(epoch), func.max(epoch))).one()
    return None if first is None else (int(first), int(last))


def spend_by_bucket(session: Session, *, bucket_s: int) -> list[tuple[int, Decimal | None]]:
    """Ledger spend (all campaigns) per time bucket of ``bucket_s`` seconds, oldest first."""
    epoch = _epoch()
    start = epoch - epoch % bucket_s
    stmt = select(start, func.sum(LLMCall.cost_usd)).group_by(start).order_by(start)
    return [(s, cost) for s, cost in session.execute(stmt).tuples()]


# --- batch vs sync --------------------------------------------------------------------------------


def _is_batch() -> Any:
    reason = LLMCall.routing_reason
    return or_(reason == BATCH_MARK, reason.like(f"%;{BATCH_MARK}"))


def campaign_deadlines(session: Session, *, campaign_id: int | None) -> list[CampaignDeadline]:
    """Every campaign (or the one given) with its deadline terms, by id."""
    stmt = select(Campaign.id, Campaign.name, Campaign.send_by, Campaign.send_within_s).order_by(
        Campaign.id
    )
    if campaign_id is not None:
        stmt = stmt.where(Campaign.id == campaign_id)
    return [CampaignDeadline(*row) for row in session.execute(stmt).all()]


def path_calls(session: Session, campaign_id: int) -> list[PathCalls]:
    """A campaign's ledger grouped by path (batch or sync), provider and model."""
    rows = session.execute(
        select(
            _is_batch().label("batch"),
            LLMCall.provider,
            LLMCall.model,
            func.count(),
            func.sum(LLMCall.prompt_tokens),
            func.sum(LLMCall.completion_tokens),
            func.sum(LLMCall.cost_usd),
        )
        .where(LLMCall.campaign_id == campaign_id)
        .group_by("batch", LLMCall.provider, LLMCall.model)
    ).all()
    return [PathCalls(*row) for row in rows]


def flipped_request_count(session: Session, campaign_id: int) -> int:
    """A campaign's requests taken back from a late provider batch (or one whose deadline came
    near)."""
    found = session.scalar(
        select(func.count(BatchRequest.id)).where(
            BatchRequest.campaign_id == campaign_id,
            BatchRequest.error.like(f"{FLIP_MARK}%"),
        )
    )
    return int(found or 0)


def lead_timings(session: Session, campaign_id: int) -> list[LeadTiming]:
    """Status, last change and batch arrival of every lead of a campaign."""
    rows = session.execute(
        select(Lead.status, Lead.updated_at, Batch.created_at)
        .join(Batch, Batch.id == Lead.batch_id)
        .where(Lead.campaign_id == campaign_id)
    ).all()
    return [LeadTiming(*row) for row in rows]

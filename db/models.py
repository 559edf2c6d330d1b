"""Tables (DESIGN.md section 3). Money columns are NUMERIC(12, 6), never float."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from db.base import Base, utcnow
from db.enums import CallStatus, EmailStatus, LeadStatus, ReviewStatus, StageStatus


class Deployment(Base):
    """The one row naming this database: every task message carries its id (issue 13)."""

    __tablename__ = "deployment"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Campaign(Base):
    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    priority: Mapped[int] = mapped_column(default=5)
    strategy: Mapped[str] = mapped_column(String(20), default="balanced")
    source: Mapped[str | None] = mapped_column(Text)
    cron: Mapped[str | None] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(default=True)
    last_run_at: Mapped[dt.datetime | None]
    deadline: Mapped[dt.datetime | None]
    """A scheduled campaign stops running after this moment (None: no end)."""
    send_by: Mapped[dt.datetime | None]
    """Every email of the campaign is due by then: the deadline planner's send-by time."""
    send_within_s: Mapped[int | None]
    """Each enqueued batch's emails are due this many seconds after the batch was created."""
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CampaignSource(Base):
    """A source file a scheduled campaign has processed; the same bytes never run twice."""

    __tablename__ = "campaign_sources"
    __table_args__ = (UniqueConstraint("campaign_id", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    run_id: Mapped[str] = mapped_column(String(36))
    source: Mapped[str] = mapped_column(Text)
    source_hash: Mapped[str] = mapped_column(String(64), index=True)
    priority: Mapped[int] = mapped_column(default=5)
    accepted: Mapped[int] = mapped_column(default=0)
    rejected: Mapped[int] = mapped_column(default=0)
    rejects: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[dt.datetime | None]
    """When its chains were sent (None: stored, not yet dispatched; the outbox finishes it)."""


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("batch_id", "content_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), index=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(36))
    row_number: Mapped[int]
    company: Mapped[str] = mapped_column(Text)
    website: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(String(320))
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    title: Mapped[str | None] = mapped_column(Text)
    industry_hint: Mapped[str | None] = mapped_column(Text)
    employees: Mapped[int | None]
    revenue_usd: Mapped[Decimal | None] = mapped_column()
    country: Mapped[str | None] = mapped_column(String(100))
    tech_stack: Mapped[list[Any]] = mapped_column(default=list)
    notes: Mapped[str | None] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_hash: Mapped[str] = mapped_column(String(64))
    # Filled in by the stages.
    industry: Mapped[str | None] = mapped_column(String(50))
    intent: Mapped[str | None] = mapped_column(String(20))
    segment: Mapped[str | None] = mapped_column(String(20))
    tier: Mapped[str | None] = mapped_column(String(20))
    estimated_value_usd: Mapped[Decimal | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default=LeadStatus.QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class StageResult(Base):
    """One row per (lead, stage, run): the idempotency key of every task."""

    __tablename__ = "stage_results"
    __table_args__ = (UniqueConstraint("lead_id", "stage", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20), default=StageStatus.RUNNING)
    output: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=1)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]
    owner: Mapped[str | None] = mapped_column(String(200))
    """``<worker id>/<task id>`` holding the running stage's lease (pipeline/liveness.py)."""


class LLMCall(Base):
    """The cost ledger: one row per model call attempt (seed 004 schema)."""

    __tablename__ = "llm_calls"
    __table_args__ = (Index("ix_llm_calls_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(120), unique=True)
    journal_key: Mapped[str] = mapped_column(String(120), index=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36))
    stage: Mapped[str] = mapped_column(String(20))
    provider: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(120))
    routing_reason: Mapped[str] = mapped_column(Text, default="")
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    cost_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    price_version: Mapped[str] = mapped_column(String(80), default="")
    prompt_version: Mapped[str] = mapped_column(String(16), default="")
    latency_ms: Mapped[int] = mapped_column(default=0)
    cache_hit: Mapped[bool] = mapped_column(default=False)
    simulated: Mapped[bool] = mapped_column(default=False)
    fallback_from: Mapped[str | None] = mapped_column(String(120))
    attempt: Mapped[int] = mapped_column(default=1)
    quality_score: Mapped[Decimal | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default=CallStatus.OK)
    error: Mapped[str | None] = mapped_column(Text)
    response: Mapped[dict[str, Any] | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Email(Base):
    __tablename__ = "emails"
    __table_args__ = (UniqueConstraint("lead_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(36))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(100), default="")
    variant: Mapped[str] = mapped_column(String(20), default="A")
    level: Mapped[str] = mapped_column(String(20), default="standard")
    model: Mapped[str] = mapped_column(String(120), default="")
    quality: Mapped[Decimal | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default=EmailStatus.APPROVED)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ReviewItem(Base):
    __tablename__ = "review_queue"

    id: Mapped[int] = mapped_column(primary_key=True)
    email_id: Mapped[int] = mapped_column(ForeignKey("emails.id"), unique=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default=ReviewStatus.PENDING, index=True)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Budget(Base):
    __tablename__ = "budgets"
    __table_args__ = (UniqueConstraint("period", "campaign_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(10))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    limit_usd: Mapped[Decimal]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class BudgetEvent(Base):
    __tablename__ = "budget_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    period: Mapped[str] = mapped_column(String(10))
    period_start: Mapped[dt.datetime]
    kind: Mapped[str] = mapped_column(String(20))
    level: Mapped[int] = mapped_column(default=0)
    spent_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    limit_usd: Mapped[Decimal] = mapped_column(default=Decimal(0))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class QueueState(Base):
    __tablename__ = "queue_state"

    queue: Mapped[str] = mapped_column(String(50), primary_key=True)
    paused: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str | None] = mapped_column(String(100))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Outcome(Base):
    """What happened after sending: imported from the sending tool (replied, meeting booked)."""

    __tablename__ = "outcomes"
    __table_args__ = (UniqueConstraint("lead_id", "run_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    run_id: Mapped[str] = mapped_column(String(36))
    replied: Mapped[bool] = mapped_column(default=False)
    meeting: Mapped[bool] = mapped_column(default=False)
    source: Mapped[str] = mapped_column(Text, default="")
    imported_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BatchGroup(Base):
    """A group of model requests sent as one unit from the ``batch`` queue (issue 14).

    The collector that claims it holds a lease (``lease_owner`` until ``lease_until``); a group
    whose lease ran out is taken over, and only its requests without an answer are sent again.
    """

    __tablename__ = "batch_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    stage: Mapped[str] = mapped_column(String(20))
    model_ref: Mapped[str] = mapped_column(String(170))
    backend: Mapped[str] = mapped_column(String(30))
    handle: Mapped[str | None] = mapped_column(String(200))
    """The backend's external id (a provider batch id); set once submitted."""
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    size: Mapped[int] = mapped_column(default=0)
    attempts: Mapped[int] = mapped_column(default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class BatchRequest(Base):
    """One stage's model request waiting for (or answered by) the batch path.

    ``request_id`` is the sync path's journal key for the same call, so an answer is journaled and
    written to the ledger under it, and the re-run stage replays it instead of calling again.
    """

    __tablename__ = "batch_requests"
    __table_args__ = (Index("ix_batch_requests_pending", "stage", "model_ref", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(String(120), unique=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(36))
    campaign_id: Mapped[int | None] = mapped_column(ForeignKey("campaigns.id"))
    stage: Mapped[str] = mapped_column(String(20))
    model_ref: Mapped[str] = mapped_column(String(170))
    payload: Mapped[dict[str, Any]] = mapped_column()
    """The request (system, user, caps, schema), its route and prompt version."""
    status: Mapped[str] = mapped_column(String(20), default="pending")
    group_id: Mapped[str | None] = mapped_column(ForeignKey("batch_groups.id"), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]

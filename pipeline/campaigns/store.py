"""The campaigns capability's data access: every query over campaigns, their sources, batches,
leads in flight, outcomes and the review queue. Functions take a ``Session`` and never commit.

Loading a row by primary key, adding new rows and changing loaded ones stay with the logic that
owns them (the ORM's unit of work); every ``SELECT``/``UPDATE`` statement lives here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from db.base import utcnow
from db.enums import EmailStatus, LeadStatus, ReviewStatus, Stage
from db.models import (
    Batch,
    Campaign,
    CampaignSource,
    Email,
    Lead,
    LLMCall,
    Outcome,
    ReviewItem,
    StageResult,
)
from pipeline.liveness import PARKED_PREFIX


class LeadRef(NamedTuple):
    """A lead to send a chain for: its id, run and its batch's message priority."""

    lead_id: int
    run_id: str
    priority: int


class QueuedLead(NamedTuple):
    """The CRM fields of a queued lead that set its message priority."""

    id: int
    employees: int | None
    industry_hint: str | None
    country: str | None
    tech_stack: list[Any]


class EmailedRun(NamedTuple):
    """The lead and run of the latest email sent to an address."""

    lead_id: int
    run_id: str


class SourceError(NamedTuple):
    """A drop file of a campaign that could not be used, and why."""

    campaign: str
    path: str
    error: str | None


# --- campaigns and their sources ------------------------------------------------------------------


def campaign_by_name(session: Session, name: str, *, lock: bool = False) -> Campaign | None:
    """The campaign called ``name``; ``lock`` takes a row lock until the transaction ends."""
    stmt = select(Campaign).where(Campaign.name == name)
    return session.scalars(stmt.with_for_update() if lock else stmt).first()


def scheduled_campaigns(session: Session) -> Sequence[Campaign]:
    """Every campaign with a cron schedule, by name."""
    stmt = select(Campaign).where(Campaign.cron.is_not(None)).order_by(Campaign.name)
    return session.scalars(stmt).all()


def sources_per_campaign(session: Session) -> dict[int, int]:
    """Campaign id -> how many source files it has processed."""
    stmt = select(CampaignSource.campaign_id, func.count()).group_by(CampaignSource.campaign_id)
    return dict(session.execute(stmt).tuples().all())


def source_errors(session: Session) -> list[SourceError]:
    """Every source file recorded with an error, newest first."""
    stmt = (
        select(Campaign.name, CampaignSource.path, CampaignSource.error)
        .join(Campaign, Campaign.id == CampaignSource.campaign_id)
        .where(CampaignSource.error.is_not(None))
        .order_by(CampaignSource.processed_at.desc())
    )
    return [SourceError(*row) for row in session.execute(stmt).all()]


def source_seen(session: Session, campaign_id: int, sha256: str) -> bool:
    """Whether the campaign has processed a source with these bytes before."""
    stmt = select(CampaignSource.id).where(
        CampaignSource.campaign_id == campaign_id, CampaignSource.sha256 == sha256
    )
    return session.scalar(stmt) is not None


# --- batches --------------------------------------------------------------------------------------


def latest_batch_from(session: Session, *, campaign: str, source_hash: str) -> Batch | None:
    """The newest batch of ``campaign`` made from a file with this SHA-256, if any."""
    return session.scalars(
        select(Batch)
        .join(Campaign, Campaign.id == Batch.campaign_id)
        .where(Campaign.name == campaign, Batch.source_hash == source_hash)
        .order_by(Batch.created_at.desc())
        .limit(1)
    ).first()


def mark_dispatched(session: Session, batch_id: str) -> bool:
    """Set the batch's ``dispatched_at`` unless already set; True when this call set it.

    The conditional UPDATE row-locks the batch until the transaction ends.
    """
    marked = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.dispatched_at.is_(None))
        .values(dispatched_at=utcnow())
    )
    return isinstance(marked, CursorResult) and marked.rowcount == 1


def queued_leads(session: Session, batch_id: str) -> list[QueuedLead]:
    """The batch's leads still ``queued``, by id."""
    stmt = (
        select(Lead.id, Lead.employees, Lead.industry_hint, Lead.country, Lead.tech_stack)
        .where(Lead.batch_id == batch_id, Lead.status == LeadStatus.QUEUED)
        .order_by(Lead.id)
    )
    return [QueuedLead(*row) for row in session.execute(stmt).all()]


def stage_result_counts(session: Session, batch_id: str) -> list[tuple[str, str, int]]:
    """(stage, status, count) of the stage results of the batch's leads."""
    stmt = (
        select(StageResult.stage, StageResult.status, func.count())
        .join(Lead, Lead.id == StageResult.lead_id)
        .where(Lead.batch_id == batch_id)
        .group_by(StageResult.stage, StageResult.status)
    )
    return [(stage, status, n) for stage, status, n in session.execute(stmt).tuples()]


def undispatched_batches(session: Session, *, older_than: dt.datetime) -> list[str]:
    """Ids of batches stored before ``older_than`` and never marked dispatched, oldest first."""
    stmt = (
        select(Batch.id)
        .where(Batch.dispatched_at.is_(None), Batch.created_at < older_than)
        .order_by(Batch.created_at)
    )
    return list(session.scalars(stmt))


# --- leads in flight: the sweep and retry ---------------------------------------------------------


def idle_leads(session: Session, *, older_than: dt.datetime, limit: int) -> list[LeadRef]:
    """Queued or running leads of dispatched batches with no stage activity since ``older_than``.

    Idle means since the lead's last stage, or since its batch's dispatch when it has none (a
    batch finished by the outbox late must not look stalled the moment it is sent).
    """
    last = (
        select(
            StageResult.lead_id,
            StageResult.run_id,
            func.max(func.coalesce(StageResult.finished_at, StageResult.started_at)).label("at"),
        )
        .group_by(StageResult.lead_id, StageResult.run_id)
        .subquery()
    )
    stmt = (
        select(Lead.id, Lead.run_id, Batch.priority)
        .join(Batch, Batch.id == Lead.batch_id)
        .outerjoin(last, (last.c.lead_id == Lead.id) & (last.c.run_id == Lead.run_id))
        .where(
            Lead.status.in_((LeadStatus.QUEUED, LeadStatus.RUNNING)),
            Batch.dispatched_at.is_not(None),  # an undispatched batch is the outbox's to finish
            func.coalesce(last.c.at, Batch.dispatched_at) < older_than,
        )
        .order_by(Lead.id)
        .limit(limit)
    )
    return [LeadRef(*row) for row in session.execute(stmt).all()]


def stopped_leads(
    session: Session, *, batch_id: str | None = None, campaign: str | None = None
) -> list[LeadRef]:
    """Failed leads and leads parked by an outage (optionally of one batch or campaign), by id."""
    stmt = (
        select(Lead.id, Lead.run_id, Batch.priority)
        .join(Batch, Batch.id == Lead.batch_id)
        .where(
            or_(
                Lead.status == LeadStatus.FAILED,
                Lead.status.in_((LeadStatus.QUEUED, LeadStatus.RUNNING))
                & Lead.error.contains(PARKED_PREFIX),
            )
        )
        .order_by(Lead.id)
    )
    if batch_id is not None:
        stmt = stmt.where(Lead.batch_id == batch_id)
    if campaign is not None:
        stmt = stmt.join(Campaign, Campaign.id == Lead.campaign_id).where(Campaign.name == campaign)
    return [LeadRef(*row) for row in session.execute(stmt).all()]


def finished_stages(
    session: Session, lead_id: int, run_id: str, *, statuses: Sequence[str]
) -> set[str]:
    """The stages of one lead's run whose result has one of ``statuses``."""
    stmt = select(StageResult.stage).where(
        StageResult.lead_id == lead_id,
        StageResult.run_id == run_id,
        StageResult.status.in_(statuses),
    )
    return set(session.scalars(stmt))


def leads_by_id(session: Session, lead_ids: Sequence[int]) -> Sequence[Lead]:
    """The lead rows with these ids."""
    return session.scalars(select(Lead).where(Lead.id.in_(lead_ids))).all()


# --- outcomes, exports and review -----------------------------------------------------------------


def latest_emailed_run(session: Session, address: str) -> EmailedRun | None:
    """The lead and run of the newest email to a lead with this (lower-case) address."""
    row = session.execute(
        select(Email.lead_id, Email.run_id)
        .join(Lead, Lead.id == Email.lead_id)
        .where(Lead.email == address)
        .order_by(Email.id.desc())
        .limit(1)
    ).first()
    return None if row is None else EmailedRun(row.lead_id, row.run_id)


def outcome_of(session: Session, lead_id: int, run_id: str) -> Outcome | None:
    """The recorded outcome of one lead's run, if any."""
    stmt = select(Outcome).where(Outcome.lead_id == lead_id, Outcome.run_id == run_id)
    return session.scalars(stmt).first()


def approved_emails(session: Session, campaign: str) -> list[tuple[Lead, Email, Decimal | None]]:
    """(lead, approved email, the lead's ledger spend) of ``campaign``, by lead and email id."""
    cost = (
        select(LLMCall.lead_id, func.sum(LLMCall.cost_usd).label("cost"))
        .group_by(LLMCall.lead_id)
        .subquery()
    )
    stmt = (
        select(Lead, Email, cost.c.cost)
        .join(Email, Email.lead_id == Lead.id)
        .join(Campaign, Campaign.id == Lead.campaign_id)
        .outerjoin(cost, cost.c.lead_id == Lead.id)
        .where(Campaign.name == campaign, Email.status == EmailStatus.APPROVED)
        .order_by(Lead.id, Email.id)
    )
    return [(lead, email, spent) for lead, email, spent in session.execute(stmt).tuples()]


def review_rows(
    session: Session, *, status: ReviewStatus | None
) -> list[tuple[ReviewItem, Email, Lead, dict[str, Any] | None]]:
    """Review items (of one status, or all) with their email, lead and the judge's verdict."""
    stmt = (
        select(ReviewItem, Email, Lead, StageResult.output)
        .join(Email, Email.id == ReviewItem.email_id)
        .join(Lead, Lead.id == ReviewItem.lead_id)
        .outerjoin(
            StageResult,
            (StageResult.lead_id == Lead.id)
            & (StageResult.run_id == Email.run_id)
            & (StageResult.stage == Stage.JUDGE.value),
        )
        .order_by(ReviewItem.id)
    )
    if status is not None:
        stmt = stmt.where(ReviewItem.status == status)
    return [(item, email, lead, verdict) for item, email, lead, verdict in session.execute(stmt)]


def insert_leads(session: Session, values: list[dict[str, Any]]) -> None:
    """Insert one chunk of new leads (``Lead`` column -> value dicts) in the caller's transaction.

    On PostgreSQL through psycopg the chunk goes as ``COPY leads FROM STDIN``: one stream instead
    of an INSERT per row. Elsewhere (SQLite) a Core ``executemany``.
    """
    if not values:
        return
    connection = session.connection()
    if connection.dialect.name != "postgresql" or connection.dialect.driver != "psycopg":
        connection.execute(insert(Lead), values)
        return
    # COPY applies no SQLAlchemy defaults: the ones a new lead needs are given here, and JSON
    # columns go as their text.
    now = utcnow()
    columns = [*values[0], "status", "created_at", "updated_at"]
    raw: Any = connection.connection.driver_connection
    statement = f"COPY leads ({', '.join(columns)}) FROM STDIN"
    with raw.cursor() as cursor, cursor.copy(statement) as copy:
        for row in values:
            row["tech_stack"] = json.dumps(row["tech_stack"])
            row["raw"] = json.dumps(row["raw"])
            copy.write_row([*row.values(), LeadStatus.QUEUED.value, now, now])


def set_batch_counts(
    session: Session, batch_id: str, *, accepted: int, rejects: list[dict[str, Any]]
) -> None:
    """A streamed batch's accepted and rejected counts and its rejects, once the file ended."""
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id)
        .values(accepted=accepted, rejected=len(rejects), rejects=rejects)
    )

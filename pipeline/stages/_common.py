"""Claim / record helpers shared by every stage (STYLE R2, R8).

A stage claims its ``stage_results`` row in one short transaction, calls models with no
transaction open, and records its output in a second one. A row already ``done`` or ``skipped``
means a redelivered task: the stage returns at once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from db.enums import LeadStatus, Stage, StageStatus
from db.models import Campaign, Lead, StageResult
from pipeline.deps import Deps
from pipeline.errors import LeadNotFound, TransientError
from pipeline.liveness import OWNER, PARKED_PREFIX, is_running
from pipeline.llm.gateway import CallContext

FINAL = (StageStatus.DONE, StageStatus.SKIPPED)


@dataclass(frozen=True, slots=True)
class LeadView:
    """A read-only snapshot of a lead and the outputs of its earlier stages in this run."""

    id: int
    campaign_id: int
    run_id: str
    company: str
    website: str | None
    first_name: str | None
    last_name: str | None
    title: str | None
    industry: str | None
    employees: int | None
    country: str | None
    tech_stack: tuple[str, ...]
    notes: str | None
    tier: str | None
    estimated_value: Decimal | None
    strategy: str
    content_hash: str
    outputs: dict[str, dict[str, Any]]

    def prompt_data(self) -> dict[str, Any]:
        """The lead facts a prompt may show (data, never instructions)."""
        return {
            "company": self.company,
            "website": self.website,
            "industry": self.industry,
            "employees": self.employees,
            "country": self.country,
            "title": self.title,
            "first_name": self.first_name,
            "notes": self.notes,
            "tech_stack": list(self.tech_stack),
        }

    def context(self, stage: Stage, call_key: str = "main") -> CallContext:
        """The gateway context for a call made by ``stage`` for this lead."""
        return CallContext(stage, self.id, self.run_id, self.campaign_id, call_key, self.tier)


def claim(deps: Deps, *, lead_id: int, run_id: str, stage: Stage) -> LeadView | None:
    """Mark ``stage`` running for (lead, run); None when it already finished.

    Raises:
        LeadNotFound: the lead id does not exist.
    """
    try:
        with deps.session_scope() as session:
            lead = session.get(Lead, lead_id)
            if lead is None:
                raise LeadNotFound(f"lead {lead_id} does not exist")
            # Row locks serialise two deliveries taking over the same expired lease.
            rows = session.scalars(
                select(StageResult)
                .where(StageResult.lead_id == lead_id, StageResult.run_id == run_id)
                .with_for_update()
            ).all()
            mine = next((r for r in rows if r.stage == stage.value), None)
            if mine is not None and mine.status in FINAL:
                return None
            now = dt.datetime.now(dt.UTC)
            if mine is None:
                session.add(
                    StageResult(
                        lead_id=lead_id, stage=stage.value, run_id=run_id, owner=OWNER.get()
                    )
                )
            elif mine.status == StageStatus.RUNNING and _held(deps, mine, now):
                # Another delivery of this task is running right now (a redelivery after the
                # visibility timeout, or a sweep): two copies must never both call a model.
                raise StageBusy(f"{stage.value} for lead {lead_id} is running elsewhere")
            else:
                mine.attempts += 1
                mine.status = StageStatus.RUNNING
                mine.started_at = now
                mine.owner = OWNER.get()
            if lead.status == LeadStatus.QUEUED:
                lead.status = LeadStatus.RUNNING
            outputs = {r.stage: dict(r.output) for r in rows if r.status in FINAL}
            strategy = session.get_one(Campaign, lead.campaign_id).strategy
            return _view(lead, run_id, outputs, strategy)
    except IntegrityError as exc:  # a duplicate delivery claimed the row a moment ago
        raise TransientError(f"{stage.value} for lead {lead_id} claimed concurrently") from exc


class StageBusy(TransientError):
    """A live lease on the stage: retry after it ends."""


def _held(deps: Deps, row: StageResult, now: dt.datetime) -> bool:
    """Is a running row's lease held by someone else?

    An owned row is held while its execution runs in a live worker (a dead worker's lease, or
    one whose release failed during a database outage, is free at once; the heartbeat's
    publish delay is covered by a grace from the claim). A row without an owner, or when
    heartbeats cannot be checked, falls back to the time lease.
    """
    if row.owner is not None and row.owner == OWNER.get():
        return False
    if row.owner is not None and deps.redis is not None:
        return is_running(deps.redis, row.owner) or _leased(row, now, deps.heartbeat_grace_s)
    return _leased(row, now, deps.stage_lease_s)


def _leased(row: StageResult, now: dt.datetime, lease_s: int) -> bool:
    started = row.started_at
    if started.tzinfo is None:  # SQLite hands back naive datetimes
        started = started.replace(tzinfo=dt.UTC)
    return now - started < dt.timedelta(seconds=lease_s)


def release(
    deps: Deps, *, lead_id: int, run_id: str, stage: Stage, owner: str | None = None
) -> bool:
    """End a running stage's lease early (its task failed or was parked and will run again).

    Only the lease's own holder may end it: ``owner`` (default: the current task's) must match
    the row's. A delivery that lost a concurrent first claim, or found the stage busy, therefore
    never frees the winner's lease. Outside a task (tests, the CLI) only an ownerless lease is
    released. Returns True when a lease was released.
    """
    owner = owner or OWNER.get()
    mine = StageResult.owner.is_(None) if owner is None else StageResult.owner == owner
    with deps.session_scope() as session:
        row = session.scalars(
            select(StageResult).where(
                StageResult.lead_id == lead_id,
                StageResult.run_id == run_id,
                StageResult.stage == stage.value,
                StageResult.status == StageStatus.RUNNING,
                mine,
            )
        ).first()
        if row is None:
            return False
        row.started_at = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        row.owner = None
        return True


def _view(lead: Lead, run_id: str, outputs: dict[str, dict[str, Any]], strategy: str) -> LeadView:
    return LeadView(
        id=lead.id,
        campaign_id=lead.campaign_id,
        run_id=run_id,
        company=lead.company,
        website=lead.website,
        first_name=lead.first_name,
        last_name=lead.last_name,
        title=lead.title,
        industry=lead.industry or lead.industry_hint,
        employees=lead.employees,
        country=lead.country,
        tech_stack=tuple(lead.tech_stack or ()),
        notes=lead.notes,
        tier=lead.tier,
        estimated_value=lead.estimated_value_usd,
        strategy=strategy,
        content_hash=lead.content_hash,
        outputs=outputs,
    )


def finish(
    deps: Deps,
    view: LeadView,
    stage: Stage,
    output: dict[str, Any],
    *,
    status: StageStatus = StageStatus.DONE,
    lead_updates: dict[str, Any] | None = None,
) -> None:
    """Store a stage's output (and any lead fields it decided) in one transaction."""
    with deps.session_scope() as session:
        row = session.scalars(
            select(StageResult).where(
                StageResult.lead_id == view.id,
                StageResult.run_id == view.run_id,
                StageResult.stage == stage.value,
            )
        ).one()
        row.status = status
        row.output = output
        row.error = None
        row.finished_at = dt.datetime.now(dt.UTC)
        row.owner = None
        lead = session.get_one(Lead, view.id)
        if lead.error and PARKED_PREFIX in lead.error:  # the outage it waited out is over
            lead.error = None
        for key, value in (lead_updates or {}).items():
            setattr(lead, key, value)


def mark_failed(deps: Deps, *, lead_id: int, run_id: str, stage: Stage, error: str) -> None:
    """Record that ``stage`` gave up on a lead (retries exhausted or a permanent error)."""
    with deps.session_scope() as session:
        lead = session.get(Lead, lead_id)
        if lead is None:
            return
        row = session.scalars(
            select(StageResult).where(
                StageResult.lead_id == lead_id,
                StageResult.run_id == run_id,
                StageResult.stage == stage.value,
            )
        ).first()
        if row is not None:
            row.status = StageStatus.FAILED
            row.error = error[:2000]
        lead.status = LeadStatus.FAILED
        lead.error = f"{stage.value}: {error}"[:2000]


def mark_parked(deps: Deps, *, lead_id: int, run_id: str, stage: Stage, reason: str) -> None:
    """Note on the stage row and the lead why it is waiting (an outage); it stays running.

    The task keeps being retried every few minutes, so the lead resumes by itself once a model
    (or the database, or Redis) is back; ``leadpipe retry`` sends it again at once.
    """
    with deps.session_scope() as session:
        lead = session.get(Lead, lead_id)
        if lead is None:
            return
        row = session.scalars(
            select(StageResult).where(
                StageResult.lead_id == lead_id,
                StageResult.run_id == run_id,
                StageResult.stage == stage.value,
            )
        ).first()
        if row is not None:
            row.error = f"{PARKED_PREFIX}{reason}"[:2000]
        lead.error = f"{stage.value}: {PARKED_PREFIX}{reason}"[:2000]

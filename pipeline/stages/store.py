"""Stage SQL (issue 10's data-access rule): claims, results and lead fields of the six stages.

Every function works inside the caller's transaction (``deps.session_scope()``); the rules (who
holds a lease, what a stage decided) stay in ``_common.py`` and the stage modules.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, func, insert, select, update
from sqlalchemy.orm import Session

from db.enums import CallStatus, LeadStatus, ReviewStatus, StageStatus
from db.models import Campaign, Email, Lead, LLMCall, ReviewItem, StageResult
from pipeline.liveness import PARKED_PREFIX

# The hot statements are built once, so SQLAlchemy computes each one's cache key once instead
# of per execution (for the join below that was ~7 % of a worker's CPU, issue 15). The claim
# reads and writes plain rows (Core): the ORM's identity map and unit of work were a fifth of a
# worker's CPU per lead and bought nothing for a row read once and updated by key.
_leads = cast(Table, Lead.__table__)
_results = cast(Table, StageResult.__table__)
_campaigns = cast(Table, Campaign.__table__)
_LEAD_COLUMNS = (
    "id",
    "campaign_id",
    "company",
    "website",
    "first_name",
    "last_name",
    "title",
    "industry",
    "industry_hint",
    "employees",
    "country",
    "tech_stack",
    "notes",
    "tier",
    "estimated_value_usd",
    "content_hash",
    "status",
    "error",
)
_LEAD = (
    select(*(_leads.c[name] for name in _LEAD_COLUMNS), _campaigns.c.strategy)
    .join(_campaigns, _campaigns.c.id == _leads.c.campaign_id)
    .where(_leads.c.id == bindparam("lead_id"))
)
_STAGE_ROWS = (
    select(
        _results.c.id,
        _results.c.stage,
        _results.c.status,
        _results.c.output,
        _results.c.started_at,
        _results.c.owner,
    )
    .where(_results.c.lead_id == bindparam("lead_id"), _results.c.run_id == bindparam("run_id"))
    .with_for_update()
)
_NEW_STAGE = insert(_results)
_RESTART = (
    update(_results)
    .where(_results.c.id == bindparam("b_id"))
    .values(
        attempts=_results.c.attempts + 1,
        status=StageStatus.RUNNING,
        started_at=bindparam("b_now", type_=_results.c.started_at.type),
        owner=bindparam("b_owner", type_=_results.c.owner.type),
    )
)
_LEAD_RUNNING = (
    update(_leads)
    .where(_leads.c.id == bindparam("b_id"), _leads.c.status == LeadStatus.QUEUED)
    .values(status=LeadStatus.RUNNING)
)
_SPENT = select(func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(
    LLMCall.lead_id == bindparam("lead_id"), LLMCall.run_id == bindparam("run_id")
)
_FINISH = (
    update(_results)
    .where(
        _results.c.lead_id == bindparam("b_lead_id"),
        _results.c.run_id == bindparam("b_run_id"),
        _results.c.stage == bindparam("b_stage"),
    )
    .values(
        status=bindparam("b_status", type_=_results.c.status.type),
        output=bindparam("b_output", type_=_results.c.output.type),
        error=None,
        finished_at=bindparam("b_finished_at", type_=_results.c.finished_at.type),
        owner=None,
    )
)
_PARKED = _leads.c.error.contains(PARKED_PREFIX, autoescape=True)
_calls = cast(Table, LLMCall.__table__)
_QUALITY = (
    update(_calls)
    .where(_calls.c.journal_key == bindparam("b_key"), _calls.c.status == CallStatus.OK)
    .values(quality_score=bindparam("b_score", type_=_calls.c.quality_score.type))
)
_emails = cast(Table, Email.__table__)
_NEW_EMAIL = insert(_emails).returning(_emails.c.id)
_NEW_REVIEW = insert(cast(Table, ReviewItem.__table__))


def lead_with_strategy(session: Session, lead_id: int) -> Any:
    """The lead's columns a stage reads (``_LEAD_COLUMNS``) and its campaign's routing
    ``strategy``, as one plain row."""
    return session.execute(_LEAD, {"lead_id": lead_id}).first()


def lock_stage_rows(session: Session, lead_id: int, run_id: str) -> Sequence[Any]:
    """Every stage row of (lead, run), locked: two deliveries taking over one lease serialise.

    Plain rows: ``id``, ``stage``, ``status``, ``output``, ``started_at``, ``owner``."""
    return session.execute(_STAGE_ROWS, {"lead_id": lead_id, "run_id": run_id}).all()


def add_stage_row(
    session: Session,
    *,
    lead_id: int,
    stage: str,
    run_id: str,
    owner: str | None,
    now: Any,
    decided: tuple[StageStatus, dict[str, Any]] | None = None,
) -> None:
    """A new running stage row (the first claim of this stage in this run), or, with
    ``decided`` (status, output), the row of a stage its claim decided, already finished."""
    status, output = decided if decided is not None else (StageStatus.RUNNING, {})
    session.execute(
        _NEW_STAGE,
        {
            "lead_id": lead_id,
            "stage": stage,
            "run_id": run_id,
            "status": status,
            "output": output,
            "attempts": 1,
            "started_at": now,
            "finished_at": now if decided is not None else None,
            "owner": owner if decided is None else None,
        },
    )


def restart_stage_row(session: Session, row_id: int, *, owner: str | None, now: Any) -> None:
    """A stage row taken over by a new execution: one more attempt, running, its owner."""
    session.execute(_RESTART, {"b_id": row_id, "b_now": now, "b_owner": owner})


def mark_lead_running(session: Session, lead_id: int) -> None:
    """A queued lead's first claimed stage: the lead is running."""
    session.execute(_LEAD_RUNNING, {"b_id": lead_id})


def lead_spent(session: Session, lead_id: int, run_id: str) -> Decimal:
    """What this lead's run has cost so far, from the ledger."""
    spent = session.scalar(_SPENT, {"lead_id": lead_id, "run_id": run_id})
    return Decimal(spent or 0)


def finish_stage(
    session: Session,
    *,
    lead_id: int,
    run_id: str,
    stage: str,
    status: StageStatus,
    output: dict[str, Any],
    finished_at: Any,
    lead_updates: dict[str, Any],
) -> bool:
    """Store a stage's result and the lead fields it decided: two UPDATEs, no reads.

    A parked note on the lead is cleared (the outage it waited out is over). Returns whether
    the stage row was there to update.
    """
    done = session.execute(
        _FINISH,
        {
            "b_lead_id": lead_id,
            "b_run_id": run_id,
            "b_stage": stage,
            "b_status": status,
            "b_output": output,
            "b_finished_at": finished_at,
        },
    )
    update_lead(session, lead_id, lead_updates)
    return bool(getattr(done, "rowcount", 1))


def update_lead(session: Session, lead_id: int, lead_updates: dict[str, Any]) -> None:
    """Set the lead fields a stage decided; a parked note on the lead is cleared."""
    session.execute(
        update(_leads)
        .where(_leads.c.id == lead_id)
        .values(error=case((_PARKED, None), else_=_leads.c.error), **lead_updates)
    )


def stage_row(
    session: Session, *, lead_id: int, run_id: str, stage: str, running_owner: Any = None
) -> StageResult | None:
    """One stage row of (lead, run); ``running_owner``: only a running row matching it."""
    query = select(StageResult).where(
        StageResult.lead_id == lead_id,
        StageResult.run_id == run_id,
        StageResult.stage == stage,
    )
    if running_owner is not None:
        query = query.where(StageResult.status == StageStatus.RUNNING, running_owner)
    return session.scalars(query).first()


def get_lead(session: Session, lead_id: int) -> Lead | None:
    return session.get(Lead, lead_id)


def add_email(session: Session, **values: Any) -> int:
    """A judged email; its id."""
    return int(session.execute(_NEW_EMAIL, values).scalar_one())


def add_review_item(session: Session, *, email_id: int, lead_id: int, reason: str) -> None:
    """A held email waiting for a reviewer."""
    session.execute(
        _NEW_REVIEW,
        {
            "email_id": email_id,
            "lead_id": lead_id,
            "reason": reason,
            "status": ReviewStatus.PENDING,
        },
    )


def set_call_qualities(session: Session, scores: Sequence[tuple[str, Decimal]]) -> None:
    """The judge's score on the paid call(s) under each journal key (the model-mix report)."""
    if scores:
        session.execute(_QUALITY, [{"b_key": key, "b_score": score} for key, score in scores])

"""Claim / record helpers shared by every stage (STYLE R2, R8); their SQL is in ``store.py``.

A stage claims its ``stage_results`` row in one short transaction, calls models with no
transaction open, and records its output in a second one, together with the ledger rows of its
successful calls (``llm/ledger.py``). A stage decided without a model call is stored by its
claim. A row already ``done`` or ``skipped`` means a redelivered task: the stage returns at once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.enums import LeadStatus, Stage, StageStatus
from db.models import StageResult
from pipeline.deps import Deps
from pipeline.errors import LeadNotFound, TransientError
from pipeline.liveness import OWNER, PARKED_PREFIX, is_running
from pipeline.llm.gateway import CallContext
from pipeline.llm.ledger import StageLedger
from pipeline.stages import store

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
    fresh: bool = False
    """This claim created the stage row: no earlier execution can have called a model."""
    spent_at_claim: Decimal | None = None
    """The lead's ledger spend in this run when the stage was claimed (None before scoring)."""
    pending: StageLedger = field(default_factory=StageLedger)
    """This execution's successful calls, written by the stage's finishing transaction."""

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
        return CallContext(
            stage,
            self.id,
            self.run_id,
            self.campaign_id,
            call_key,
            self.tier,
            replay=not self.fresh,
            pending=self.pending,
        )


Quick = Callable[[LeadView], "Finished | None"]
"""Decides a stage from the claimed view alone (no model call), or None to run it."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A stage's result: what :func:`finish` stores (or a quick claim stores at once)."""

    output: dict[str, Any]
    status: StageStatus = StageStatus.DONE
    lead_updates: dict[str, Any] = field(default_factory=dict)


_PENDING: ContextVar[StageLedger | None] = ContextVar("leadpipe_stage_ledger", default=None)


def claim(
    deps: Deps, *, lead_id: int, run_id: str, stage: Stage, quick: Quick | None = None
) -> LeadView | None:
    """Mark ``stage`` running for (lead, run); None when it already finished.

    One transaction: the lead, its campaign's strategy, the lead's spend so far and the locked
    stage rows are read together. ``quick``: when it decides the stage from the view alone
    (rules were confident, the stage does not apply), the result is stored in this same
    transaction and None is returned.

    Raises:
        LeadNotFound: the lead id does not exist.
    """
    try:
        with deps.session_scope() as session:
            lead = store.lead_with_strategy(session, lead_id)
            if lead is None:
                raise LeadNotFound(f"lead {lead_id} does not exist")
            rows = store.lock_stage_rows(session, lead_id, run_id)
            mine = next((r for r in rows if r.stage == stage.value), None)
            if mine is not None and mine.status in FINAL:
                return None
            now = dt.datetime.now(dt.UTC)
            if mine is not None and mine.status == StageStatus.RUNNING and _held(deps, mine, now):
                # Another delivery of this task is running right now (a redelivery after the
                # visibility timeout, or a sweep): two copies must never both call a model.
                raise StageBusy(f"{stage.value} for lead {lead_id} is running elsewhere")
            outputs = {r.stage: dict(r.output) for r in rows if r.status in FINAL}
            # The spend cap needs the lead's spend only once its value is known (after score).
            spent = (
                store.lead_spent(session, lead_id, run_id)
                if lead.estimated_value_usd is not None
                else None
            )
            view = _view(lead, run_id, outputs, fresh=mine is None, spent=spent)
            decided = quick(view) if quick is not None else None
            if decided is not None:
                _store_quick(session, lead, mine, stage, run_id, decided, now)
                return None
            if mine is None:
                store.add_stage_row(
                    session,
                    lead_id=lead_id,
                    stage=stage.value,
                    run_id=run_id,
                    owner=OWNER.get(),
                    now=now,
                )
            else:
                store.restart_stage_row(session, mine.id, owner=OWNER.get(), now=now)
            if lead.status == LeadStatus.QUEUED:
                store.mark_lead_running(session, lead_id)
    except IntegrityError as exc:  # a duplicate delivery claimed the row a moment ago
        raise TransientError(f"{stage.value} for lead {lead_id} claimed concurrently") from exc
    _PENDING.set(view.pending)
    return view


def _store_quick(
    session: Session,
    lead: Any,
    mine: Any,
    stage: Stage,
    run_id: str,
    decided: Finished,
    now: dt.datetime,
) -> None:
    """A stage its claim decided: its row stored finished, the lead fields it decided set (and
    a parked note cleared), in the claim's transaction."""
    updates = dict(decided.lead_updates)
    if lead.status == LeadStatus.QUEUED:
        updates.setdefault("status", LeadStatus.RUNNING)
    if mine is not None:
        store.finish_stage(
            session,
            lead_id=lead.id,
            run_id=run_id,
            stage=stage.value,
            status=decided.status,
            output=decided.output,
            finished_at=now,
            lead_updates=updates,
        )
        return
    store.add_stage_row(
        session,
        lead_id=lead.id,
        stage=stage.value,
        run_id=run_id,
        owner=None,
        now=now,
        decided=(decided.status, decided.output),
    )
    if updates or (lead.error and PARKED_PREFIX in lead.error):
        store.update_lead(session, lead.id, updates)


class StageBusy(TransientError):
    """A live lease on the stage: retry after it ends."""


def _held(deps: Deps, row: Any, now: dt.datetime) -> bool:
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


def _leased(row: Any, now: dt.datetime, lease_s: int) -> bool:
    started: dt.datetime = row.started_at
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
    abandon_pending(deps)
    mine = StageResult.owner.is_(None) if owner is None else StageResult.owner == owner
    with deps.session_scope() as session:
        row = store.stage_row(
            session, lead_id=lead_id, run_id=run_id, stage=stage.value, running_owner=mine
        )
        if row is None:
            return False
        row.started_at = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        row.owner = None
        return True


def abandon_pending(deps: Deps) -> None:
    """This thread's stage did not finish: release its pending calls' reservations."""
    pending = _PENDING.get()
    if pending is not None:
        _PENDING.set(None)
        pending.abandon(deps.budget)


def _view(
    lead: Any,
    run_id: str,
    outputs: dict[str, dict[str, Any]],
    *,
    fresh: bool = False,
    spent: Decimal | None = None,
) -> LeadView:
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
        strategy=str(lead.strategy),
        content_hash=lead.content_hash,
        outputs=outputs,
        fresh=fresh,
        spent_at_claim=spent,
        pending=StageLedger(),
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
    """Store a stage's output, the lead fields it decided and the stage's pending ledger rows
    in one transaction."""
    with finishing(deps, view.pending) as session:
        store.finish_stage(
            session,
            lead_id=view.id,
            run_id=view.run_id,
            stage=stage.value,
            status=status,
            output=output,
            finished_at=dt.datetime.now(dt.UTC),
            lead_updates=lead_updates or {},
        )


@contextmanager
def finishing(deps: Deps, pending: StageLedger) -> Iterator[Session]:
    """A stage's finishing transaction: its ``pending`` ledger rows are written in it, and their
    reservations settled after its commit (released if it fails; the retry replays the
    journal)."""
    try:
        with deps.session_scope() as session:
            pending.write(session)
            yield session
    except BaseException:
        pending.abandon(deps.budget)
        raise
    finally:
        if _PENDING.get() is pending:
            _PENDING.set(None)
    pending.settle(deps.budget)


def mark_failed(deps: Deps, *, lead_id: int, run_id: str, stage: Stage, error: str) -> None:
    """Record that ``stage`` gave up on a lead (retries exhausted or a permanent error)."""
    abandon_pending(deps)
    with deps.session_scope() as session:
        lead = store.get_lead(session, lead_id)
        if lead is None:
            return
        row = store.stage_row(session, lead_id=lead_id, run_id=run_id, stage=stage.value)
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
        lead = store.get_lead(session, lead_id)
        if lead is None:
            return
        row = store.stage_row(session, lead_id=lead_id, run_id=run_id, stage=stage.value)
        if row is not None:
            row.error = f"{PARKED_PREFIX}{reason}"[:2000]
        lead.error = f"{stage.value}: {PARKED_PREFIX}{reason}"[:2000]

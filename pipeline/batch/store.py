"""SQL of the batch path: pending requests, groups and their leases (tables in db/models.py),
the ledger look-ups of the collector and the provider-batch poll, and each lead's deadline terms.
Adding rows and changing loaded ones (the ORM's unit of work) stay with the collector's logic.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.enums import CallStatus
from db.models import Batch, BatchGroup, BatchRequest, Campaign, Lead, LLMCall

PENDING = "pending"
GROUPED = "grouped"
DONE = "done"
SYNC = "sync"
"""Sent back to the sync path (endpoint down, per-request error, late, too few to group)."""
WAITING = (PENDING, GROUPED)

OPEN = "open"
SUBMITTED = "submitted"
FINISHED = "done"
FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Resume:
    """A lead whose chain continues at ``stage`` now that its request has an answer (or not)."""

    lead_id: int
    run_id: str
    stage: str
    priority: int


@dataclass(frozen=True, slots=True)
class Backlog:
    """Pending (ungrouped) requests of one stage and model."""

    count: int
    oldest: dt.datetime | None


@dataclass(frozen=True, slots=True)
class LeadWindow:
    """What a lead's deadline is made of: its campaign's send-by time and per-batch window, and
    when its batch came in."""

    lead_id: int
    send_by: dt.datetime | None
    send_within_s: int | None
    batch_created_at: dt.datetime


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive datetimes (stored as UTC)."""
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def find(session: Session, request_id: str) -> BatchRequest | None:
    return session.scalars(
        select(BatchRequest).where(BatchRequest.request_id == request_id)
    ).first()


def requests_by_id(session: Session, request_ids: Sequence[str]) -> list[BatchRequest]:
    """The requests with these ids (any status)."""
    if not request_ids:
        return []
    return list(
        session.scalars(select(BatchRequest).where(BatchRequest.request_id.in_(request_ids)))
    )


def grouped_requests(session: Session, group_id: str) -> list[BatchRequest]:
    """The requests of a group still waiting in it (``grouped``)."""
    return list(
        session.scalars(
            select(BatchRequest).where(
                BatchRequest.group_id == group_id, BatchRequest.status == GROUPED
            )
        ).all()
    )


def grouped_lead_ids(session: Session, group_id: str) -> list[int]:
    """The leads of the requests still waiting in a group."""
    leads = session.scalars(
        select(BatchRequest.lead_id).where(
            BatchRequest.group_id == group_id, BatchRequest.status == GROUPED
        )
    ).all()
    return [lead for lead in leads if lead is not None]


def answered_in_ledger(session: Session, request_id: str) -> bool:
    """An earlier successful call under this journal key (the sync path answered it)."""
    found = session.scalar(
        select(LLMCall.id)
        .where(LLMCall.journal_key == request_id, LLMCall.status == CallStatus.OK)
        .limit(1)
    )
    return found is not None


def in_ledger(session: Session, request_ids: Sequence[str]) -> set[str]:
    """Which of these request ids already have a ledger row (any status)."""
    return set(
        session.scalars(select(LLMCall.request_id).where(LLMCall.request_id.in_(request_ids)))
    )


def lead_windows(session: Session, lead_ids: Sequence[int]) -> list[LeadWindow]:
    """Each lead's campaign send-by time and window, and its batch's arrival."""
    rows = session.execute(
        select(Lead.id, Campaign.send_by, Campaign.send_within_s, Batch.created_at)
        .join(Campaign, Campaign.id == Lead.campaign_id)
        .join(Batch, Batch.id == Lead.batch_id)
        .where(Lead.id.in_(lead_ids))
    ).all()
    return [LeadWindow(*row) for row in rows]


def in_flight(session: Session, row: BatchRequest) -> bool:
    """Is the request's group being sent right now (a live lease)?"""
    if row.status != GROUPED or row.group_id is None:
        return False
    until = session.scalar(select(BatchGroup.lease_until).where(BatchGroup.id == row.group_id))
    return until is not None and aware(until) > now()


def backlog(session: Session, stage: str, ref: str) -> Backlog:
    count, oldest = session.execute(
        select(func.count(BatchRequest.id), func.min(BatchRequest.created_at)).where(
            BatchRequest.stage == stage,
            BatchRequest.model_ref == ref,
            BatchRequest.status == PENDING,
        )
    ).one()
    return Backlog(int(count or 0), aware(oldest) if oldest is not None else None)


@dataclass(frozen=True, slots=True)
class Waiting:
    """Requests of one stage and model on the batch path, not answered yet."""

    stage: str
    model_ref: str
    pending: int
    """Waiting for a group to form."""
    grouped: int
    """In a group: being sent to the endpoint, or at a provider's batch API."""
    oldest: dt.datetime


def waiting(session: Session) -> list[Waiting]:
    """Per stage and model, the requests that wait on the batch path (``queues status``)."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    oldest: dict[tuple[str, str], dt.datetime] = {}
    rows = session.execute(
        select(
            BatchRequest.stage,
            BatchRequest.model_ref,
            BatchRequest.status,
            func.count(BatchRequest.id),
            func.min(BatchRequest.created_at),
        )
        .where(BatchRequest.status.in_(WAITING))
        .group_by(BatchRequest.stage, BatchRequest.model_ref, BatchRequest.status)
    ).all()
    for stage, ref, status, count, first in rows:
        key = (stage, ref)
        counts.setdefault(key, {})[status] = int(count)
        first = aware(first)
        oldest[key] = min(first, oldest.get(key, first))
    return [
        Waiting(stage, ref, c.get(PENDING, 0), c.get(GROUPED, 0), oldest[(stage, ref)])
        for (stage, ref), c in sorted(counts.items())
    ]


def waiting_keys(session: Session) -> list[tuple[str, str]]:
    """Every (stage, model) with pending requests or an unfinished group."""
    pending = session.execute(
        select(BatchRequest.stage, BatchRequest.model_ref)
        .where(BatchRequest.status == PENDING)
        .distinct()
    ).all()
    groups = session.execute(
        select(BatchGroup.stage, BatchGroup.model_ref)
        .where(BatchGroup.status.in_((OPEN, SUBMITTED)))
        .distinct()
    ).all()
    return sorted({(s, m) for s, m in (*pending, *groups)})


def groups_with_status(session: Session, status: str) -> list[BatchGroup]:
    """Every group in ``status``, oldest id first."""
    return list(
        session.scalars(
            select(BatchGroup).where(BatchGroup.status == status).order_by(BatchGroup.id)
        ).all()
    )


def group_formed_since(session: Session, stage: str, ref: str, since: dt.datetime) -> bool:
    """Was a group of (stage, model) formed at or after ``since``?"""
    found = session.scalar(
        select(BatchGroup.id)
        .where(
            BatchGroup.stage == stage,
            BatchGroup.model_ref == ref,
            BatchGroup.created_at >= since,
        )
        .limit(1)
    )
    return found is not None


def new_group(
    session: Session, stage: str, ref: str, backend: str, owner: str, limit: int, lease_s: float
) -> tuple[BatchGroup, list[BatchRequest]] | None:
    """Claim up to ``limit`` oldest pending requests into a new group we hold the lease on."""
    rows = list(
        session.scalars(
            select(BatchRequest)
            .where(
                BatchRequest.stage == stage,
                BatchRequest.model_ref == ref,
                BatchRequest.status == PENDING,
            )
            .order_by(BatchRequest.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not rows:
        return None
    group = BatchGroup(
        id=str(uuid.uuid4()),
        stage=stage,
        model_ref=ref,
        backend=backend,
        status=OPEN,
        size=len(rows),
        attempts=1,
        lease_owner=owner,
        lease_until=now() + dt.timedelta(seconds=lease_s),
    )
    session.add(group)
    session.flush()
    for row in rows:
        row.status = GROUPED
        row.group_id = group.id
    return group, rows


def expire_dead_leases(session: Session, stage: str, ref: str, dead: Callable[[str], bool]) -> int:
    """End the lease of unfinished groups whose holder is known dead (its worker was killed)."""
    groups = session.scalars(
        select(BatchGroup).where(
            BatchGroup.stage == stage,
            BatchGroup.model_ref == ref,
            BatchGroup.status.in_((OPEN, SUBMITTED)),
            BatchGroup.lease_until >= now(),
        )
    ).all()
    ended = 0
    for group in groups:
        if group.lease_owner is not None and dead(group.lease_owner):
            group.lease_until = now() - dt.timedelta(seconds=1)
            ended += 1
    return ended


def take_over(
    session: Session, stage: str, ref: str, owner: str, lease_s: float
) -> list[tuple[BatchGroup, list[BatchRequest]]]:
    """Unfinished groups whose lease ran out (their collector died): ours now."""
    groups = list(
        session.scalars(
            select(BatchGroup)
            .where(
                BatchGroup.stage == stage,
                BatchGroup.model_ref == ref,
                BatchGroup.status.in_((OPEN, SUBMITTED)),
                BatchGroup.lease_until < now(),
            )
            .with_for_update(skip_locked=True)
        )
    )
    taken = []
    for group in groups:
        group.lease_owner = owner
        group.lease_until = now() + dt.timedelta(seconds=lease_s)
        group.attempts += 1
        rows = list(
            session.scalars(
                select(BatchRequest).where(
                    BatchRequest.group_id == group.id, BatchRequest.status == GROUPED
                )
            )
        )
        taken.append((group, rows))
    return taken


def release_pending(session: Session, stage: str, ref: str, reason: str) -> list[BatchRequest]:
    """Send every pending request of (stage, model) back to the sync path."""
    rows = list(
        session.scalars(
            select(BatchRequest)
            .where(
                BatchRequest.stage == stage,
                BatchRequest.model_ref == ref,
                BatchRequest.status == PENDING,
            )
            .with_for_update(skip_locked=True)
        )
    )
    for row in rows:
        row.status = SYNC
        row.error = reason
        row.finished_at = now()
    return rows


def finish_request(session: Session, request_id: str, status: str, error: str | None) -> bool:
    """Mark one grouped request answered (``done``) or sent to sync; False if already final."""
    return finish_requests(session, [request_id], status, error) == 1


def finish_requests(
    session: Session, request_ids: Sequence[str], status: str, error: str | None
) -> int:
    """Mark waiting requests answered (``done``) or sent to sync; how many were still waiting."""
    changed = 0
    for start in range(0, len(request_ids), 1000):
        result = session.execute(
            update(BatchRequest)
            .where(
                BatchRequest.request_id.in_(request_ids[start : start + 1000]),
                BatchRequest.status.in_(WAITING),
            )
            .values(status=status, error=error, finished_at=now())
        )
        changed += int(getattr(result, "rowcount", 0) or 0)
    return changed


def renew_lease(session: Session, group_id: str, lease_s: float) -> None:
    session.execute(
        update(BatchGroup)
        .where(BatchGroup.id == group_id, BatchGroup.status.in_((OPEN, SUBMITTED)))
        .values(lease_until=now() + dt.timedelta(seconds=lease_s))
    )


def mark_submitted(session: Session, group_id: str, handle: str, backend: str) -> None:
    session.execute(
        update(BatchGroup)
        .where(BatchGroup.id == group_id)
        .values(status=SUBMITTED, handle=handle, backend=backend, submitted_at=now())
    )


def hand_to_provider(
    session: Session, group_id: str, status: str, handle: str, backend: str
) -> None:
    """A group submitted to a provider batch API: ``status`` (awaiting), no lease holder (the
    beat's poll collects it, never the take-over)."""
    session.execute(
        update(BatchGroup)
        .where(BatchGroup.id == group_id)
        .values(
            status=status,
            handle=handle,
            backend=backend,
            submitted_at=now(),
            lease_owner=None,
        )
    )


def finish_group(
    session: Session, group_id: str, status: str, *, error: str | None = None, **extra: Any
) -> None:
    session.execute(
        update(BatchGroup)
        .where(BatchGroup.id == group_id)
        .values(status=status, error=error, finished_at=now(), lease_owner=None, **extra)
    )


def resumes(session: Session, rows: Sequence[BatchRequest]) -> list[Resume]:
    """Where each request's lead continues, with its batch's priority."""
    leads = [row.lead_id for row in rows if row.lead_id is not None and row.run_id is not None]
    priority: dict[int, int] = {}
    for start in range(0, len(leads), 1000):
        chunk = leads[start : start + 1000]
        found = session.execute(
            select(Lead.id, Batch.priority)
            .join(Batch, Lead.batch_id == Batch.id)
            .where(Lead.id.in_(chunk))
        ).all()
        priority.update((row[0], row[1]) for row in found)
    return [
        Resume(row.lead_id, row.run_id, row.stage, int(priority.get(row.lead_id, 5)))
        for row in rows
        if row.lead_id is not None and row.run_id is not None
    ]

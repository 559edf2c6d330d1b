"""Honest lead outcomes: emails approved, held for review, parked, failed, and why.

``report``, ``status`` and ``enqueue --wait`` all lead with these numbers, so a batch that
approved nothing can never hide behind a savings figure or a "done" count. One query path for
all three keeps them in agreement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.enums import EmailStatus, LeadStatus, ReviewStatus
from db.models import Email, Lead, ReviewItem
from pipeline.liveness import PARKED_PREFIX

PARKED = "parked"
"""The outcome name of a parked lead: one set aside by an outage (every model down, a long
database outage) whose task keeps retrying by itself. Its status stays ``running``; its error
starts with ``stage: parked: `` (``pipeline.liveness.PARKED_PREFIX``)."""
IN_PROGRESS = (LeadStatus.QUEUED, LeadStatus.RUNNING)
PARKED_LEAD = Lead.status.in_(IN_PROGRESS) & Lead.error.contains(PARKED_PREFIX)
TOP_REASONS = 5
_REASON_CHARS = 160


@dataclass(frozen=True, slots=True)
class Outcomes:
    """What a set of leads came to; ``approved`` counts leads with an approved email."""

    leads: int = 0
    approved: int = 0
    held: int = 0
    parked: int = 0
    failed: int = 0
    in_progress: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    top_reasons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished(self) -> int:
        """Leads that reached an end state (approved, held, parked, failed or other)."""
        return self.leads - self.in_progress

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields shared by ``report --json`` and ``status --json``."""
        return {
            "approved": self.approved,
            "held": self.held,
            "parked": self.parked,
            "failed": self.failed,
            "in_progress": self.in_progress,
            "top_failure_reasons": self.top_reasons,
        }


def short_reason(text: str | None) -> str:
    """One line of at most 160 characters: reasons are grouped and counted by this text."""
    line = " ".join((text or "").strip().splitlines()[:1]).strip() or "no reason recorded"
    return line if len(line) <= _REASON_CHARS else line[: _REASON_CHARS - 1] + "…"


def lead_outcomes(
    session: Session,
    *,
    campaign_id: int | None = None,
    batch_id: str | None = None,
    top: int = TOP_REASONS,
) -> Outcomes:
    """Count the outcomes of one batch, one campaign, or every lead (both filters None)."""

    def scoped(stmt: Any) -> Any:
        if campaign_id is not None:
            stmt = stmt.where(Lead.campaign_id == campaign_id)
        if batch_id is not None:
            stmt = stmt.where(Lead.batch_id == batch_id)
        return stmt

    statuses: dict[str, int] = {
        str(status): int(n)
        for status, n in session.execute(
            scoped(select(Lead.status, func.count()).group_by(Lead.status))
        ).all()
    }
    approved = session.execute(
        scoped(
            select(func.count(func.distinct(Email.lead_id)))
            .join(Lead, Lead.id == Email.lead_id)
            .where(Email.status == EmailStatus.APPROVED, Email.run_id == Lead.run_id)
        )
    ).scalar_one()
    parked = session.execute(
        scoped(select(func.count()).select_from(Lead).where(PARKED_LEAD))
    ).scalar_one()
    return Outcomes(
        leads=sum(statuses.values()),
        approved=int(approved),
        held=statuses.get(LeadStatus.HELD, 0),
        parked=int(parked) + statuses.get(PARKED, 0),
        failed=statuses.get(LeadStatus.FAILED, 0),
        in_progress=sum(statuses.get(s, 0) for s in IN_PROGRESS) - int(parked),
        by_status=statuses,
        top_reasons=_top_reasons(session, scoped, top),
    )


def _top_reasons(session: Session, scoped: Any, top: int) -> list[dict[str, Any]]:
    # Failed and parked leads carry their reason on the lead; held ones on the review item.
    counts: Counter[tuple[str, str]] = Counter()
    stopped = scoped(
        select(Lead.status, Lead.error).where(
            Lead.status.in_((LeadStatus.FAILED, PARKED)) | PARKED_LEAD
        )
    )
    for status, error in session.execute(stopped):
        outcome = str(LeadStatus.FAILED) if status == LeadStatus.FAILED else PARKED
        counts[(outcome, short_reason(error))] += 1
    held = scoped(
        select(ReviewItem.reason)
        .join(Lead, Lead.id == ReviewItem.lead_id)
        .where(Lead.status == LeadStatus.HELD, ReviewItem.status == ReviewStatus.PENDING)
    )
    for (reason,) in session.execute(held):
        counts[(str(LeadStatus.HELD), short_reason(reason))] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"outcome": o, "reason": r, "count": n} for (o, r), n in ranked]

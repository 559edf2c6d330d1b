"""Honest lead outcomes: emails approved, held for review, parked, failed, and why.

``report``, ``status`` and ``enqueue --wait`` all lead with these numbers, so a batch that
approved nothing can never hide behind a savings figure or a "done" count. One query path for
all three keeps them in agreement.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from db.enums import LeadStatus
from pipeline.reporting import store
from pipeline.reporting.store import IN_PROGRESS, Scope

PARKED = "parked"
"""The outcome name of a parked lead: one set aside by an outage (every model down, a long
database outage) whose task keeps retrying by itself. Its status stays ``running``; its error
starts with ``stage: parked: `` (``pipeline.liveness.PARKED_PREFIX``)."""
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
    scope = Scope(campaign_id=campaign_id, batch_id=batch_id)
    statuses = store.lead_status_counts(session, scope)
    approved = store.approved_lead_count(session, scope)
    parked = store.parked_lead_count(session, scope)
    return Outcomes(
        leads=sum(statuses.values()),
        approved=approved,
        held=statuses.get(LeadStatus.HELD, 0),
        parked=parked + statuses.get(PARKED, 0),
        failed=statuses.get(LeadStatus.FAILED, 0),
        in_progress=sum(statuses.get(s, 0) for s in IN_PROGRESS) - parked,
        by_status=statuses,
        top_reasons=_top_reasons(session, scope, top),
    )


def _top_reasons(session: Session, scope: Scope, top: int) -> list[dict[str, Any]]:
    # Failed and parked leads carry their reason on the lead; held ones on the review item.
    counts: Counter[tuple[str, str]] = Counter()
    stopped = store.stopped_lead_errors(session, scope, statuses=(LeadStatus.FAILED, PARKED))
    for status, error in stopped:
        outcome = str(LeadStatus.FAILED) if status == LeadStatus.FAILED else PARKED
        counts[(outcome, short_reason(error))] += 1
    for reason in store.held_reasons(session, scope):
        counts[(str(LeadStatus.HELD), short_reason(reason))] += 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return [{"outcome": o, "reason": r, "count": n} for (o, r), n in ranked]

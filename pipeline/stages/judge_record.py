"""Storing a judge verdict: email, review item, ledger quality, stage result, lead status."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from db.enums import EmailStatus, LeadStatus, Stage, StageStatus
from db.models import Email, Lead, ReviewItem
from pipeline.deps import Deps
from pipeline.stages import store
from pipeline.stages._common import LeadView, finishing


def record_verdict(
    deps: Deps,
    view: LeadView,
    drafted: dict[str, Any],
    best: dict[str, Any],
    verdict: dict[str, Any],
) -> None:
    """Everything the verdict decides, in one transaction (so a redelivery is harmless)."""
    overall = verdict["overall"]
    quality = Decimal(str(overall)) if overall is not None else None
    status = EmailStatus.APPROVED if verdict["passed"] else EmailStatus.HELD
    with finishing(deps, view) as session:
        email = Email(
            lead_id=view.id,
            run_id=view.run_id,
            subject=best["subject"],
            body=best["body"],
            template=str(drafted.get("template", "")),
            variant=str(drafted.get("variant", "A")),
            level=str(drafted.get("level", "")),
            model=str(best.get("model", "")),
            quality=quality,
            status=status,
        )
        session.add(email)
        session.flush()  # the email's id, and the stage's pending ledger rows for _set_quality
        if status is EmailStatus.HELD:
            reason = _hold_reason(verdict)
            session.add(ReviewItem(email_id=email.id, lead_id=view.id, reason=reason))
        for candidate, scored in zip(drafted["candidates"], verdict["candidates"], strict=False):
            _set_quality(session, view, candidate.get("call_key"), scored["overall"])
        if verdict.get("escalated"):
            _set_quality(session, view, "escalation", verdict["overall"])
        row = store.stage_row(session, lead_id=view.id, run_id=view.run_id, stage=Stage.JUDGE.value)
        if row is None:  # claimed in this run by the judge itself: cannot be missing
            raise LookupError(f"lead {view.id}: no judge stage row in run {view.run_id}")
        row.status, row.output = StageStatus.DONE, verdict
        row.finished_at = dt.datetime.now(dt.UTC)
        lead = session.get_one(Lead, view.id)
        lead.status = LeadStatus.COMPLETED if verdict["passed"] else LeadStatus.HELD


def _hold_reason(verdict: dict[str, Any]) -> str:
    """What a reviewer needs to know: no verdict, the output guard, or the score and gate."""
    if verdict.get("hold_reason"):
        return str(verdict["hold_reason"])[:2000]
    reason = f"quality {verdict['overall']:.2f} below gate {verdict['gate']:.2f}"
    if verdict.get("escalated"):
        reason += " after one escalation"
    return reason


def _set_quality(session: Any, view: LeadView, call_key: str | None, score: float | None) -> None:
    if not call_key or score is None:
        return
    key = view.context(Stage.PERSONALIZE, call_key).journal_key
    store.set_call_quality(session, key, Decimal(str(score)))

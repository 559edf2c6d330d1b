"""Storing a judge verdict: email, review item, ledger quality, stage result, lead status."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from db.enums import EmailStatus, LeadStatus, Stage, StageStatus
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
    with finishing(deps, view.pending) as session:
        email_id = store.add_email(
            session,
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
        if status is EmailStatus.HELD:
            store.add_review_item(
                session, email_id=email_id, lead_id=view.id, reason=_hold_reason(verdict)
            )
        scores = [
            (candidate.get("call_key"), scored["overall"])
            for candidate, scored in zip(drafted["candidates"], verdict["candidates"], strict=False)
        ]
        if verdict.get("escalated"):
            scores.append(("escalation", verdict["overall"]))
        store.set_call_qualities(
            session,
            [
                (view.context(Stage.PERSONALIZE, key).journal_key, Decimal(str(score)))
                for key, score in scores
                if key and score is not None
            ],
        )
        found = store.finish_stage(
            session,
            lead_id=view.id,
            run_id=view.run_id,
            stage=Stage.JUDGE.value,
            status=StageStatus.DONE,
            output=verdict,
            finished_at=dt.datetime.now(dt.UTC),
            lead_updates={"status": LeadStatus.COMPLETED if verdict["passed"] else LeadStatus.HELD},
        )
        if not found:  # claimed in this run by the judge itself: cannot be missing
            raise LookupError(f"lead {view.id}: no judge stage row in run {view.run_id}")


def _hold_reason(verdict: dict[str, Any]) -> str:
    """What a reviewer needs to know: no verdict, the output guard, or the score and gate."""
    if verdict.get("hold_reason"):
        return str(verdict["hold_reason"])[:2000]
    reason = f"quality {verdict['overall']:.2f} below gate {verdict['gate']:.2f}"
    if verdict.get("escalated"):
        reason += " after one escalation"
    return reason

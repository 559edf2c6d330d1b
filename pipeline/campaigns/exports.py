"""Approved emails out (CSV / JSONL), and the human-review queue."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy.orm import Session

from db.enums import EmailStatus, LeadStatus, ReviewStatus
from db.models import Email, Lead, ReviewItem
from pipeline.campaigns import store

FIELDS = (
    "email",
    "first_name",
    "last_name",
    "company",
    "tier",
    "subject",
    "body",
    "quality",
    "model",
    "level",
    "variant",
    "cost_usd",
)


# OWASP "CSV injection": a spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
_DELIVERABLE: Final = re.compile(r"^[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]+$")


def neutralise_cell(value: str) -> str:
    """Prefix a cell a spreadsheet would run as a formula with ``'`` so it stays text."""
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


@dataclass
class Export:
    """An export's text and what it left out, so the CLI can report both."""

    text: str
    count: int
    duplicates: list[str] = field(default_factory=list)
    """Recipients suppressed because an earlier lead of the campaign already has them."""
    undeliverable: list[int] = field(default_factory=list)
    """Lead ids whose approved email has no deliverable address (never exported)."""


def export_emails(session: Session, *, campaign: str, fmt: str) -> tuple[str, int]:
    """Approved emails of ``campaign`` as CSV or JSONL text, and how many there are."""
    result = export_campaign(session, campaign=campaign, fmt=fmt)
    return result.text, result.count


def export_campaign(session: Session, *, campaign: str, fmt: str) -> Export:
    """Approved emails of ``campaign``, each recipient once, formula cells neutralised in CSV.

    A recipient enqueued in several batches of one campaign is exported for its first lead only
    (suppression across batches); a lead with no deliverable address is never exported.
    """
    records, duplicates, undeliverable = _unique_records(session, campaign)
    if fmt == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows({k: neutralise_cell(v or "") for k, v in r.items()} for r in records)
        text = buf.getvalue()
    return Export(text, len(records), duplicates, undeliverable)


def _unique_records(
    session: Session, campaign: str
) -> tuple[list[dict[str, str | None]], list[str], list[int]]:
    seen: set[str] = set()
    records: list[dict[str, str | None]] = []
    duplicates: list[str] = []
    undeliverable: list[int] = []
    for lead, email, spent in store.approved_emails(session, campaign):
        address = (lead.email or "").strip().lower()
        if not _DELIVERABLE.match(address):
            undeliverable.append(lead.id)
            continue
        if address in seen:
            duplicates.append(address)
            continue
        seen.add(address)
        records.append(
            {
                "email": address,
                "first_name": lead.first_name,
                "last_name": lead.last_name,
                "company": lead.company,
                "tier": lead.tier,
                "subject": email.subject,
                "body": email.body,
                "quality": str(email.quality),
                "model": email.model,
                "level": email.level,
                "variant": email.variant,
                "cost_usd": str(spent or 0),
            }
        )
    return records, duplicates, undeliverable


JUDGE_METRICS: Final = ("professionalism", "personalization", "relevance", "spam_risk")


def review_items(
    session: Session, *, status: ReviewStatus | None = ReviewStatus.PENDING
) -> list[dict[str, Any]]:
    """Held emails with their lead, recipient, reason and the judge's scores and feedback."""
    return [
        {
            "id": item.id,
            "lead_id": lead.id,
            "company": lead.company,
            "reason": item.reason,
            "status": item.status,
            "subject": email.subject,
            "body": email.body,
            "quality": str(email.quality),
            "model": email.model,
            "recipient": lead.email,
            "recipient_name": " ".join(p for p in (lead.first_name, lead.last_name) if p),
            "scores": {k: (verdict or {}).get(k) for k in (*JUDGE_METRICS, "overall")},
            "gate": (verdict or {}).get("gate"),
            "feedback": (verdict or {}).get("feedback", ""),
        }
        for item, email, lead, verdict in store.review_rows(session, status=status)
    ]


def review_decide(session: Session, item_id: int, *, approve: bool, by: str) -> bool:
    """Approve or reject a held email; deciding the same way again changes nothing.

    Returns:
        True when this call made the decision, False when it had already been made so.

    Raises:
        LookupError: no review item with that id, or it was already decided the other way.
    """
    item = session.get(ReviewItem, item_id)
    wanted = ReviewStatus.APPROVED if approve else ReviewStatus.REJECTED
    if item is None:
        raise LookupError(f"no review item {item_id}")
    if item.status == wanted:
        return False
    if item.status != ReviewStatus.PENDING:
        raise LookupError(f"review item {item_id} was already {item.status} by {item.decided_by}")
    item.status = wanted
    item.decided_by, item.decided_at = by, dt.datetime.now(dt.UTC)
    email = session.get_one(Email, item.email_id)
    email.status = EmailStatus.APPROVED if approve else EmailStatus.REJECTED
    lead = session.get_one(Lead, item.lead_id)
    lead.status = LeadStatus.COMPLETED
    return True

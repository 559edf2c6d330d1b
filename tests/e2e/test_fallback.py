"""Issue 4: the simulator fails a stage's primary model every time; every lead still finishes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus, LeadStatus, Stage
from db.models import Lead, LLMCall
from pipeline.campaigns.batches import TERMINAL
from pipeline.llm.routing import load_routing_table
from tests.e2e.conftest import ROOT, E2EStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_every_lead_completes_through_the_fallback(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    primary = load_routing_table().chain(Stage.JUDGE, None)[0]
    stack.configure_simulator(fail_models={primary.model: 1.0})
    lines = (ROOT / "samples" / "leads.csv").read_text("utf-8-sig").splitlines()
    small = tmp_path / "leads.csv"
    small.write_text("\n".join([lines[0], *lines[1:8], *lines[20:27]]) + "\n", "utf-8")
    assert stack.cli("enqueue", str(small), "--campaign", "fallback").returncode == 0
    worker = stack.worker(tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            with session_factory() as session:
                total = session.scalar(select(func.count()).select_from(Lead))
                done = session.scalar(
                    select(func.count()).select_from(Lead).where(Lead.status.in_(TERMINAL))
                )
            if total and done == total:
                break
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    with session_factory() as session:
        statuses = set(session.scalars(select(Lead.status)))
        assert statuses <= {LeadStatus.COMPLETED, LeadStatus.HELD}, statuses
        judged = session.scalars(
            select(LLMCall).where(LLMCall.stage == "judge", LLMCall.status == CallStatus.OK)
        ).all()
        failed = session.scalars(
            select(LLMCall).where(
                LLMCall.model == primary.model, LLMCall.status == CallStatus.ERROR
            )
        ).all()
    assert judged and all(c.model != primary.model for c in judged)
    # Every first-line judge call fell back from the failing primary. Borderline scores are
    # re-checked on the strongest judge directly (journal keys ending in "-verify"), and a draft
    # judged before is answered from the cache (no call at all).
    first_line = [c for c in judged if not c.journal_key.endswith("-verify") and not c.cache_hit]
    assert first_line and all(c.fallback_from == primary.ref for c in first_line)
    assert failed and all(c.cost_usd == 0 for c in failed)

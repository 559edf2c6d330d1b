"""Issue 14's done-when with real worker processes: a late provider batch flips to sync before
the campaign's send-by time (simulator, labelled; real PostgreSQL, Redis and Celery workers).

The analyze stage's models are batchable; the simulator's Message Batches / Batch API takes
300 s to answer, the planner expects 4 s. ``leadpipe batch-poll`` (what beat runs every 30 s)
flips the late batch to sync; every lead then finishes on the sync path before send-by, and
the provider answers nothing (the batch was cancelled), so nothing is paid twice.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import BatchGroup, BatchRequest, Campaign, Lead, LLMCall
from pipeline.campaigns.batches import TERMINAL
from tests.e2e.conftest import E2EStack, stop
from tests.factories import ENTERPRISE_ROW, HEADER

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SITES = ("apex-freight", "halcyon-bank", "stratus-cloud", "meridian-freight")


def _routing_table(tmp_path: Path) -> Path:
    text = (ROOT / "pipeline" / "llm" / "routing.toml").read_text("utf-8")
    text = text.replace("window_s = 2.0", "window_s = 4.0")
    text += '\n[batch.stages.analyze]\nmodels = ["gpt4o_mini", "haiku", "gpt4o", "sonnet"]\n'
    text += "threshold = 1\n"
    path = tmp_path / "routing.toml"
    path.write_text(text, "utf-8")
    return path


def _leads(tmp_path: Path) -> Path:
    rows = [
        ENTERPRISE_ROW.replace(
            "Globex Software,,cto@globex.test", f"Co {i},https://{site}.example,cto@{site}.test"
        )
        for i, site in enumerate(SITES)
    ]
    path = tmp_path / "leads.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n", "utf-8")
    return path


def test_a_late_provider_batch_flips_to_sync_before_send_by(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    stack = stack.with_env(
        LEADPIPE_ROUTING_TABLE=str(_routing_table(tmp_path)),
        LEADPIPE_PROVIDER_BATCH__TURNAROUND_S="4",
        LEADPIPE_PROVIDER_BATCH__MARGIN_S="30",
    )
    stack.configure_simulator(batch_delay_s=300)
    stack.cli_ok("campaigns", "send-by", "launch", "150s")
    with session_factory() as session:
        send_by = session.scalars(select(Campaign.send_by).where(Campaign.name == "launch")).one()
    assert send_by is not None
    worker = stack.worker(tmp_path / "worker.log")
    try:
        stack.cli_ok("enqueue", str(_leads(tmp_path)), "--campaign", "launch")
        polls: list[dict[str, object]] = []
        end = time.monotonic() + 140
        while time.monotonic() < end:
            polls.append(json.loads(stack.cli_ok("batch-poll", "--json").stdout))
            with session_factory() as session:
                done = session.scalar(
                    select(func.count()).select_from(Lead).where(Lead.status.in_(TERMINAL))
                )
            if done == len(SITES):
                break
            time.sleep(1)
    finally:
        stop(worker)
    finished_at = dt.datetime.now(dt.UTC)
    assert finished_at < send_by, (tmp_path / "worker.log").read_text()[-3000:]
    assert any(p["flipped"] for p in polls), polls
    with session_factory() as session:
        leads = session.scalars(select(Lead)).all()
        assert [lead.status for lead in leads if lead.status not in TERMINAL] == []
        assert all(lead.updated_at.replace(tzinfo=dt.UTC) < send_by for lead in leads)
        groups = session.scalars(select(BatchGroup)).all()
        assert groups and {g.status for g in groups} <= {"flipped", "done"}
        assert any(g.status == "flipped" and "late" in (g.error or "") for g in groups)
        flipped = session.scalars(
            select(BatchRequest).where(BatchRequest.error.like("flipped to sync%"))
        ).all()
        assert flipped
        analyze = session.scalars(select(LLMCall).where(LLMCall.stage == "analyze")).all()
        # one paid analyze answer per lead, none of them from a batch
        assert sorted(c.lead_id for c in analyze if c.status == "ok") == sorted(
            lead.id for lead in leads
        )
        assert not [c for c in analyze if c.routing_reason.endswith("batch")]
    stats = httpx.get(stack.sim.url + "/_sim/stats").json()["batches"]
    assert stats["batches"] >= 1 and stats.get("succeeded", 0) == 0  # cancelled: nothing paid
    report = json.loads(stack.cli_ok("report", "--campaign", "launch", "--json").stdout)
    [paths] = report["batch_vs_sync"]
    assert paths["deadline"]["held"] is True and paths["flipped_to_sync"] == len(flipped)

"""The report's batch-vs-sync section and ``leadpipe campaigns send-by`` (real PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import LeadStatus
from db.models import Campaign, Lead, LLMCall
from pipeline.batch.deadlines import deadlines
from pipeline.campaigns.send_by import set_send_by
from pipeline.llm.catalog import Catalog
from pipeline.reporting.paths import batch_vs_sync
from pipeline.reporting.report import build_report
from tests.factories import ENTERPRISE_ROW, SMB_ROW, make_batch

pytestmark = pytest.mark.integration
NOW = dt.datetime.now(dt.UTC)


def _call(lead: Lead, *, reason: str, cost: str, tokens: int = 1_000_000) -> LLMCall:
    return LLMCall(
        request_id=uuid.uuid4().hex,
        journal_key=f"{lead.run_id}:{lead.id}:analyze:main",
        lead_id=lead.id,
        campaign_id=lead.campaign_id,
        run_id=lead.run_id,
        stage="analyze",
        provider="openai",
        model="gpt-4o-mini",
        routing_reason=reason,
        prompt_tokens=tokens,
        completion_tokens=tokens,
        cost_usd=Decimal(cost),
    )


def _setup(factory: sessionmaker[Session], *, late: bool) -> None:
    with factory.begin() as session:
        make_batch(session, [SMB_ROW, ENTERPRISE_ROW], campaign="q4")
        set_send_by(session, "q4", send_by=NOW + dt.timedelta(hours=1), send_within_s=None)
        first, second = session.scalars(select(Lead).order_by(Lead.id)).all()
        # gpt-4o-mini lists at $0.15 + $0.60 per million tokens; the batch costs half.
        session.add(_call(first, reason="tier=smb;batch", cost="0.375"))
        session.add(_call(second, reason="tier=enterprise", cost="0.75"))
        first.status = second.status = LeadStatus.COMPLETED
        session.flush()
        second.updated_at = NOW + dt.timedelta(hours=2 if late else 0)


def test_report_shows_each_path_the_saving_and_that_the_deadline_held(
    session_factory: sessionmaker[Session],
) -> None:
    _setup(session_factory, late=False)
    with session_factory() as session:
        doc = build_report(session, catalog=Catalog(), campaign="q4")
    [row] = doc["batch_vs_sync"]
    assert row["campaign"] == "q4" and row["send_by"] is not None
    assert row["batch"] == {
        "calls": 1,
        "cost_usd": "0.375000",
        "sync_price_usd": "0.750000",
        "saved_usd": "0.375000",
    }
    assert row["sync"] == {"calls": 1, "cost_usd": "0.750000"}
    assert row["deadline"] == {
        "leads_due": 2,
        "on_time": 2,
        "late": 0,
        "open_past_deadline": 0,
        "held": True,
    }


def test_a_lead_finished_after_send_by_means_the_deadline_was_missed(
    session_factory: sessionmaker[Session],
) -> None:
    _setup(session_factory, late=True)
    with session_factory() as session:
        [row] = batch_vs_sync(session, catalog=Catalog())
    assert row["deadline"]["held"] is False and row["deadline"]["late"] == 1


def test_deadlines_take_the_earlier_of_send_by_and_the_batch_window(
    session_factory: sessionmaker[Session],
) -> None:
    before = dt.datetime.now(dt.UTC)
    with session_factory.begin() as session:
        make_batch(session, [SMB_ROW], campaign="nightly")
        set_send_by(session, "nightly", send_by=before + dt.timedelta(days=1), send_within_s=600)
        lead = session.scalars(select(Lead)).one()
        found = deadlines(session, [lead.id])
    due = found[lead.id]
    assert due is not None
    window = due - dt.timedelta(seconds=600)  # the batch's creation time
    assert before <= window <= dt.datetime.now(dt.UTC)


def test_cli_send_by_sets_and_clears_the_deadline(
    db_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    env = dict(
        os.environ,
        LEADPIPE_DATABASE_URL=db_url,
        LEADPIPE_DATA_DIR=str(tmp_path),
        LEADPIPE_REDIS_URL="redis://127.0.0.1:1/0",
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "workers.cli", "campaigns", "send-by", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)

    done = cli("launch", "2030-01-02T03:04:00Z", "--within", "6h")
    assert done.returncode == 0, done.stderr
    assert "send by 2030-01-02 03:04" in done.stdout and "21600 s" in done.stdout
    assert "no campaign 'launch' yet: it was created" in done.stderr
    with session_factory() as session:
        campaign = session.scalars(select(Campaign).where(Campaign.name == "launch")).one()
        assert campaign.send_by == dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.UTC)
        assert campaign.send_within_s == 21600
    cleared = cli("launch")
    assert cleared.returncode == 0 and "created" not in cleared.stderr
    with session_factory() as session:
        campaign = session.scalars(select(Campaign).where(Campaign.name == "launch")).one()
        assert (campaign.send_by, campaign.send_within_s) == (None, None)
    bad = cli("launch", "someday")
    assert bad.returncode == 2 and "neither" in bad.stderr


def test_the_html_report_has_the_batch_vs_sync_table(
    session_factory: sessionmaker[Session],
) -> None:
    from pipeline.reporting.html import build_html_report

    _setup(session_factory, late=False)
    with session_factory() as session:
        page = build_html_report(session, catalog=Catalog(), campaign="q4")
    section = page[page.index('data-table="batch-vs-sync"') :]
    section = section[: section.index("</section>")]
    assert "<td>q4</td>" in section and "$0.375000" in section and "held (2 on time)" in section


def test_the_printed_report_skips_campaigns_with_no_batch_call_and_no_deadline(
    session_factory: sessionmaker[Session],
) -> None:
    import io

    from rich.console import Console

    from workers.cli.report import print_paths

    _setup(session_factory, late=False)
    with session_factory.begin() as session:
        make_batch(session, [SMB_ROW], campaign="plain")
        lead = session.scalars(
            select(Lead)
            .join(Campaign, Lead.campaign_id == Campaign.id)
            .where(Campaign.name == "plain")
        ).one()
        session.add(_call(lead, reason="tier=smb", cost="0.5"))
    with session_factory() as session:
        rows = batch_vs_sync(session, catalog=Catalog())
    assert {r["campaign"] for r in rows} == {"q4", "plain"}  # --json keeps both
    text = io.StringIO()
    print_paths(rows, Console(file=text, width=400))
    lines = text.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("q4: batch 1 call(s) $0.375000")

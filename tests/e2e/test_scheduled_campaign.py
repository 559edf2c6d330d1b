"""A campaign scheduled while beat runs fires by itself, and a processed file never runs twice."""

from __future__ import annotations

import csv
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import LeadStatus
from db.models import Batch, Campaign, CampaignSource, Email, Lead
from pipeline.campaigns.batches import TERMINAL
from pipeline.ingest.leads import parse_lead_file
from tests.e2e.conftest import E2EStack, stop, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "leads.csv"


def _lead_files(drop: Path, names: tuple[str, ...], per_file: int) -> list[Path]:
    """Write files of ``per_file`` distinct sample leads each, dated a minute back (settled)."""
    with SAMPLE.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = [r for r in reader if r["Company Name"] and r["Website URL"]]
    paths = []
    for i, name in enumerate(names):
        path = drop / name
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header)
            writer.writeheader()
            writer.writerows(rows[i * per_file : (i + 1) * per_file])
        past = time.time() - 60
        os.utime(path, (past, past))
        assert len(parse_lead_file(path).leads) == per_file
        paths.append(path)
    return paths


@dataclass(frozen=True)
class _State:
    batches: int
    leads: int
    done: int
    failed: int
    sources: list[tuple[str, dt.datetime]]
    last_run_at: dt.datetime | None


def _count(session: Session, *where: ColumnElement[bool]) -> int:
    return session.scalar(select(func.count()).select_from(Lead).where(*where)) or 0


def _state(factory: sessionmaker[Session]) -> _State:
    with factory() as session:
        # One snapshot for every count: under READ COMMITTED each SELECT sees the commits made
        # before it, so a run committing between two of them showed a batch without its source.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        sources = session.execute(
            select(CampaignSource.path, CampaignSource.processed_at).order_by(CampaignSource.id)
        ).all()
        return _State(
            batches=session.scalar(select(func.count()).select_from(Batch)) or 0,
            leads=_count(session),
            done=_count(session, Lead.status.in_(TERMINAL)),
            failed=_count(session, Lead.status == LeadStatus.FAILED),
            sources=[(Path(p).name, at) for p, at in sources],
            last_run_at=session.scalar(
                select(Campaign.last_run_at).where(Campaign.name == "nightly")
            ),
        )


def _state_when(
    factory: sessionmaker[Session], ready: Callable[[_State], bool]
) -> Callable[[], _State | None]:
    def check() -> _State | None:
        state = _state(factory)
        return state if ready(state) else None

    return check


def test_campaign_added_to_running_beat_runs_each_file_once(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    stack.configure_simulator(latency_scale=0.02, seed=5)
    stack = stack.with_env(
        LEADPIPE_VISIBILITY_TIMEOUT_S=None,
        LEADPIPE_METRICS_PORT="0",  # no metrics server here
    )
    drop = tmp_path / "drop"
    drop.mkdir()
    first, second = _lead_files(drop, ("monday.csv", "tuesday.csv"), per_file=5)
    second.rename(tmp_path / second.name)  # dropped later, after the first run
    beat_log = tmp_path / "beat.log"
    beat = stack.start(["beat", "--loglevel", "INFO"], beat_log)
    worker = stack.worker(tmp_path / "worker.log")
    try:
        wait_until("beat to start", lambda: "beat: Starting" in beat_log.read_text(), 30)
        added = stack.cli(
            "campaigns", "add", "nightly", "--source", str(drop), "--cron", "* * * * *"
        )
        assert added.returncode == 0, added.stderr
        # Beat reloads within 5 s, then fires at the next minute boundary.
        state = wait_until(
            "the first run", _state_when(session_factory, lambda s: s.batches == 1), 75
        )
        assert state.sources[0][0] == first.name
        (tmp_path / second.name).rename(second)
        state = wait_until(
            "the second run", _state_when(session_factory, lambda s: s.batches == 2), 75
        )
        state = wait_until(
            "all leads done", _state_when(session_factory, lambda s: s.done == 10), 90
        )
    finally:
        stop(beat, worker, timeout=30)
    (a_name, a_at), (b_name, b_at) = state.sources
    assert (a_name, b_name) == (first.name, second.name)
    # The second file ran on the very next tick, and that tick did not run the first one again.
    assert dt.timedelta(seconds=50) < b_at - a_at < dt.timedelta(seconds=70)
    assert (state.batches, state.leads, state.failed) == (2, 10, 0)
    with session_factory() as session:
        assert session.scalar(select(func.count(func.distinct(Email.lead_id)))) == 10

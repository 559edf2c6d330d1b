"""A batch against the simulator in weak-model mode, waited for with ``enqueue --wait``.

Whatever the pipeline makes of bad answers (that is the stage contracts' business), what the
operator is told must be true: every lead ends in a state the CLI names, ``--wait``'s exit code
and summary agree with the database, and the provider's own count of what it answered agrees
with the ledger (no call unbilled, none billed twice).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import LeadStatus
from db.models import Lead, LLMCall
from pipeline.reporting.outcomes import IN_PROGRESS
from tests.e2e.conftest import CLI, ROOT, E2EStack, stop

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_weak_model_batch_ends_with_true_outcomes_and_matching_counts(
    stack: E2EStack, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    stack.configure_simulator(quality="weak", slow_tail_s=0.5, seed=11)
    lines = (ROOT / "samples" / "leads.csv").read_text("utf-8-sig").splitlines()
    small = tmp_path / "leads.csv"
    small.write_text("\n".join([lines[0], *lines[1:8], *lines[20:28]]) + "\n", "utf-8")
    worker = stack.worker(tmp_path / "worker.log")
    try:
        waited = subprocess.run(
            [*CLI, "enqueue", str(small), "--campaign", "weak", "--wait", "--timeout", "300"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=360,
            check=False,
        )
    finally:
        stop(worker)
    with session_factory() as session:
        rows = session.execute(select(Lead.status, func.count()).group_by(Lead.status)).all()
        statuses: dict[str, int] = {str(s): int(n) for s, n in rows}
        ledger = session.scalar(
            select(func.count()).select_from(LLMCall).where(LLMCall.cache_hit.is_(False))
        )
    assert not set(statuses) & set(IN_PROGRESS), (statuses, waited.stderr[-2000:])
    failed = statuses.get(LeadStatus.FAILED, 0)
    assert waited.returncode == (1 if failed else 0), waited.stderr[-2000:]
    report = json.loads(stack.cli_ok("report", "--campaign", "weak", "--json").stdout)
    counted = ("approved", "held", "parked", "failed")
    assert report["held"] == statuses.get(LeadStatus.HELD, 0) and report["failed"] == failed
    assert sum(report[k] for k in counted) == report["leads"] == sum(statuses.values())
    assert (
        f"approved {report['approved']}, held for review {report['held']}, parked "
        f"{report['parked']}, failed {failed}, still queued or running 0"
    ) in waited.stderr
    stats = httpx.get(stack.sim.url.removesuffix("/v1") + "/_sim/stats").json()
    assert sum(stats["by_fault"].values()) > 0, stats  # the weak mode did answer badly
    assert stats["requests"] == ledger, (stats, ledger)

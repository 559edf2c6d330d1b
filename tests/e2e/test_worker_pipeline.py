"""The whole pipeline through real worker processes, a real Redis broker and PostgreSQL."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import CallStatus, LeadStatus
from db.models import Email, Lead, LLMCall
from pipeline.batches import TERMINAL
from pipeline.leads import parse_lead_file
from pipeline.simulator import SimulatorConfig, SimulatorServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "samples" / "leads.csv"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stack(
    db_url: str, redis_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> Iterator[dict[str, str]]:
    redis.Redis.from_url(redis_url).flushdb()
    sim = SimulatorServer(config=SimulatorConfig(latency_scale=0.05, seed=3))
    sim.start()
    handler = functools.partial(_QuietHandler, directory=str(ROOT / "samples" / "sites"))
    sites = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=sites.serve_forever, daemon=True).start()
    site = f"127.0.0.1:{sites.server_address[1]}"
    env = dict(os.environ)
    env.update(
        {
            "LEADPIPE_DATABASE_URL": db_url,
            "LEADPIPE_REDIS_URL": redis_url,
            "LEADPIPE_SIMULATOR_URL": sim.url,
            "LEADPIPE_WEB__MIRROR_URL": f"http://{site}",
            "LEADPIPE_WEB__ALLOW_HOSTS": json.dumps([site]),
            "LEADPIPE_DATA_DIR": str(tmp_path),
            "LEADPIPE_VISIBILITY_TIMEOUT_S": "8",
            "LEADPIPE_WORKER_CONCURRENCY": "6",
        }
    )
    yield env
    sites.shutdown()
    sim.stop()


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", "worker", "--loglevel", "WARNING"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


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
            session.execute(select(Lead.status, func.count()).group_by(Lead.status)).tuples().all()
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
    stack: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    expected = parse_lead_file(SAMPLE)
    result = _cli(stack, "enqueue", str(SAMPLE), "--campaign", "e2e", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["accepted"] == len(expected.leads) >= 50
    assert [r["row"] for r in doc["rejects"]] == [r.row for r in expected.rejects]
    worker = _worker(stack, tmp_path / "worker.log")
    try:
        _wait(session_factory, lambda d, t: d == t, timeout=240)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    _assert_every_lead_judged_once(session_factory, len(expected.leads))
    report = json.loads(_cli(stack, "report", "--campaign", "e2e", "--json").stdout)
    assert report["simulated"] is True
    assert report["completed"] + report["held_for_review"] == len(expected.leads)
    assert float(report["cost_usd"]) > 0 and set(report["by_stage"]) >= {"classify", "judge"}
    export = _cli(stack, "export", "--campaign", "e2e", "--format", "jsonl")
    rows = [json.loads(line) for line in export.stdout.splitlines()]
    assert len(rows) == report["completed"]
    assert all(r["subject"] and r["body"] for r in rows)


def test_killed_worker_loses_no_lead_and_charges_nothing_twice(
    stack: dict[str, str], session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    expected = parse_lead_file(SAMPLE)
    assert _cli(stack, "enqueue", str(SAMPLE), "--campaign", "crash").returncode == 0
    log = tmp_path / "worker.log"
    first = _worker(stack, log)
    _wait(session_factory, lambda d, t: d >= max(3, t // 5), timeout=120)
    first.send_signal(signal.SIGKILL)  # no warm shutdown: in-flight tasks stay unacknowledged
    first.wait(timeout=10)
    assert _done(session_factory)[0] < len(expected.leads)
    second = _worker(stack, log)
    try:
        _wait(session_factory, lambda d, t: d == t, timeout=300)
    finally:
        second.terminate()
        second.wait(timeout=30)
    _assert_every_lead_judged_once(session_factory, len(expected.leads))

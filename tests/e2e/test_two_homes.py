"""Issue 13: one data home per deployment; nobody runs or exports another deployment's leads."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.enums import LeadStatus
from db.models import Lead, StageResult
from pipeline.settings import embedded_redis_port
from tests.e2e.conftest import CLI, ROOT, E2EStack, stop, wait_until
from tests.factories import SMB_ROW, make_batch
from workers.identity import REDIS_KEY

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _home_env(home: Path) -> dict[str, str]:
    """A newcomer's environment: nothing configured but the home."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPIPE_")}
    return env | {"LEADPIPE_HOME": str(home), "PYTHONPATH": str(ROOT)}


def test_two_homes_side_by_side_never_see_each_others_leads(tmp_path: Path) -> None:
    homes = [tmp_path / "a" / "home", tmp_path / "b" / "home"]
    ports = [embedded_redis_port(h) for h in homes]
    assert ports[0] != ports[1]
    files = [ROOT / "samples" / "leads.jsonl", ROOT / "samples" / "leads.csv"]
    try:
        for home, path in zip(homes, files, strict=True):
            home.parent.mkdir(parents=True)
            done = _run(_home_env(home), home.parent, "enqueue", str(path), "--campaign", "q4")
            assert done.returncode == 0, done.stderr
        counts = []
        for home in homes:
            # run from an unrelated directory: the home, not the cwd, decides the data
            report = _run(_home_env(home), tmp_path, "report", "--campaign", "q4", "--json")
            assert report.returncode == 0, report.stderr
            counts.append(json.loads(report.stdout)["leads"])
            assert (home / "leadpipe.db").exists() and (home / "redis" / "appendonly.aof").exists()
        assert counts == [9, 60]
        queued = [
            sum(redis.Redis(port=p).llen(k) for k in redis.Redis(port=p).keys("classify*"))
            for p in ports
        ]
        assert queued == [9, 60]
    finally:
        for port in ports:
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis(port=port).shutdown(nosave=True)


def _dispatch(env: dict[str, str], lead_id: int, run_id: str) -> None:
    code = f"from workers.canvas import dispatch; dispatch([({lead_id}, 5)], {run_id!r})"
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True, timeout=60)


def test_a_foreign_deployment_cannot_enqueue_or_run_its_leads_here(
    stack: E2EStack, session_factory: sessionmaker[Session], redis_url: str, tmp_path: Path
) -> None:
    stack.cli_ok("db", "upgrade")
    worker = stack.worker(tmp_path / "worker.log")
    client = redis.Redis.from_url(redis_url)
    # the same Redis, but a database in another home: "enqueue from another directory"
    other = stack.with_env(LEADPIPE_DATABASE_URL=None, LEADPIPE_HOME=str(tmp_path / "other"))
    try:
        wait_until("the worker's deployment id", lambda: client.get(REDIS_KEY), timeout=60)
        celery = Path(sys.executable).with_name("celery")
        ping = subprocess.run(  # a stock control client, without leadpipe's transport options
            [str(celery), "-b", redis_url, "inspect", "ping", "--timeout", "5"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
        queues = json.loads(stack.cli_ok("queues", "status", "--json").stdout)["queues"]
        assert {q["queue"]: q["consumers"] for q in queues}["classify"] == 1  # as Flower sees it
        refused = other.cli("enqueue", str(ROOT / "samples" / "leads.jsonl"), "--campaign", "x")
        assert refused.returncode == 2 and "another database" in refused.stderr, refused.stderr
        assert "Nothing was enqueued" in refused.stderr
        assert sum(client.llen(k) for k in client.keys("classify*")) == 0
        with session_factory() as session, session.begin():
            batch = make_batch(session, [SMB_ROW])
        lead_id = batch.leads[0][0]
        _dispatch(other.env, lead_id, batch.run_id)  # a message stamped by the other database
        wait_until(
            "the refusal in the worker log",
            lambda: "task_refused_foreign_deployment" in (tmp_path / "worker.log").read_text(),
            timeout=60,
        )
        time.sleep(1)
        with session_factory() as session:
            assert session.get_one(Lead, lead_id).status == LeadStatus.QUEUED
            assert session.scalar(select(func.count()).select_from(StageResult)) == 0
        assert sum(client.llen(k) for k in client.keys("classify*")) == 0  # acked, not requeued
        _dispatch(stack.env, lead_id, batch.run_id)  # the same message from this deployment
        wait_until(
            "the lead to run for its own deployment",
            lambda: _status(session_factory, lead_id) in (LeadStatus.COMPLETED, LeadStatus.HELD),
            timeout=120,
        )
    finally:
        stop(worker)


def _status(factory: sessionmaker[Session], lead_id: int) -> str:
    with factory() as session:
        return session.get_one(Lead, lead_id).status

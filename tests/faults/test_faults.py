"""Issue 12's fault suite: each fault on its own, against real processes, with default settings.

Each test runs a batch of 120 leads through two ``leadpipe worker`` processes on a private
PostgreSQL, redis-server (AOF) and provider (see conftest.py for the only test speedups), injects
its fault mid-batch, and asserts from the database: every lead finished, none failed, no journal
key paid twice, and the provider's successful answers equal the ledger's paid rows. Each prints a
``RELIABILITY`` line (fault, leads, seconds to recover) for the README's table.
"""

from __future__ import annotations

import functools
import subprocess
import time

import pytest
import redis
from sqlalchemy import text

from tests.faults.conftest import LEADS, ROOT, FaultStack

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]
BATCH_TIMEOUT_S = 360
CONCURRENCY = 8  # LEADPIPE_WORKER_CONCURRENCY's default: calls a killed worker can have in flight
REPORT = ROOT / ".leadpipe" / "reliability.md"


def _report(fault: str, totals: dict[str, int], recovered_s: float) -> None:
    """Append a README table row to .leadpipe/reliability.md (the numbers this run measured)."""
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a", encoding="utf-8") as fh:
        fh.write(
            f"| {fault} | {totals['leads']} | 0 | {totals['unrecorded']} | {recovered_s:.0f} s |\n"
        )


def _running_owned_by(stack: FaultStack, pid: int, stage: str | None = None) -> list[int]:
    """Stage row ids running under worker process ``pid`` (its id is host:pid:suffix)."""
    query = "SELECT id FROM stage_results WHERE status='running' AND owner LIKE :owner"
    params: dict[str, object] = {"owner": f"%:{pid}:%"}
    if stage is not None:
        query += " AND stage = :stage"
        params["stage"] = stage
    with stack.factory() as session:
        return [int(r) for r in session.scalars(text(query), params)]


def _finished(stack: FaultStack, ids: list[int]) -> bool:
    with stack.factory() as session:
        rows = session.execute(
            text("SELECT count(*) FROM stage_results WHERE id = ANY(:ids) AND status<>'running'"),
            {"ids": ids},
        ).scalar_one()
    return int(rows) == len(ids)


def _wait_for_worker_running(
    stack: FaultStack, workers: list[subprocess.Popen[bytes]], stage: str
) -> subprocess.Popen[bytes]:
    """The first worker seen running ``stage`` (polled every 0.1 s)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        for proc in workers:
            if _running_owned_by(stack, proc.pid, stage):
                return proc
        time.sleep(0.1)
    raise AssertionError(f"no worker was seen running {stage}")


def _wait_progress(stack: FaultStack, share: float) -> None:
    stack.wait_until(f"{share:.0%} of the leads", lambda: stack.done() >= LEADS * share, 240)


def test_kill_9_during_analyze_personalize_and_judge(fault_stack: FaultStack) -> None:
    stack = fault_stack
    workers = [stack.start_worker(), stack.start_worker()]
    stack.enqueue()
    slowest = 0.0
    for stage in ("analyze", "personalize", "judge"):
        victim = _wait_for_worker_running(stack, workers, stage)
        workers.remove(victim)
        held = _running_owned_by(stack, victim.pid)  # everything it was running
        killed_at = time.monotonic()
        stack.kill_worker(victim)
        workers.append(stack.start_worker())  # the operator (or systemd) restarts it
        stack.wait_until(
            f"the {stage} work of the killed worker", functools.partial(_finished, stack, held)
        )
        slowest = max(slowest, time.monotonic() - killed_at)
    stack.wait_all_done(BATCH_TIMEOUT_S)
    totals = stack.assert_nothing_lost_or_paid_twice(in_flight_cut=3 * CONCURRENCY)
    assert slowest <= 120  # issue 12: a killed worker's stages finish within two minutes
    _report("kill -9 of a worker during analyze, personalize and judge", totals, slowest)


def test_redis_restart_with_aof_then_flushall(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.start_worker(), stack.start_worker()
    stack.enqueue()
    _wait_progress(stack, 0.2)
    stack.redis.stop()
    time.sleep(5)
    stack.redis.start()  # the append-only file brings queues and unacked messages back
    restarted = time.monotonic()
    _wait_progress(stack, 0.5)
    restart_s = time.monotonic() - restarted
    redis.Redis.from_url(stack.redis.url).flushall()  # every message, lock and counter gone
    flushed = time.monotonic()
    stack.wait_all_done(BATCH_TIMEOUT_S)
    totals = stack.assert_nothing_lost_or_paid_twice()
    _report("Redis restarted (AOF), 5 s down", totals, restart_s)
    _report("Redis FLUSHALL mid-batch (time to batch done)", totals, time.monotonic() - flushed)


def test_postgres_restart(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.start_worker(), stack.start_worker()
    stack.enqueue()
    _wait_progress(stack, 0.2)
    stack.pg.stop()
    time.sleep(10)
    stack.pg.start()
    back = time.monotonic()
    before = stack.done()
    stack.wait_until("progress after the restart", lambda: stack.done() > before, 120)
    resumed_s = time.monotonic() - back
    stack.wait_all_done(BATCH_TIMEOUT_S)
    totals = stack.assert_nothing_lost_or_paid_twice()
    _report("PostgreSQL restarted, 10 s down (no human action)", totals, resumed_s)


def test_provider_down_for_20_seconds(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.start_worker(), stack.start_worker()
    stack.enqueue()
    _wait_progress(stack, 0.2)
    cut = stack.provider.front.down()  # connections refused, calls in flight cut
    time.sleep(20)
    stack.provider.front.up()
    back = time.monotonic()
    stack.wait_all_done(BATCH_TIMEOUT_S)
    totals = stack.assert_nothing_lost_or_paid_twice(in_flight_cut=cut)
    _report("provider down 20 s (time to batch done)", totals, time.monotonic() - back)


def test_provider_answering_30_percent_errors(fault_stack: FaultStack) -> None:
    stack = fault_stack
    stack.provider.configure(error_rate=0.3, timeout_s=2.0)
    stack.start_worker(), stack.start_worker()
    started = time.monotonic()
    stack.enqueue()
    stack.wait_all_done(BATCH_TIMEOUT_S)
    totals = stack.assert_nothing_lost_or_paid_twice()
    _report("provider 30 % errors (whole batch)", totals, time.monotonic() - started)

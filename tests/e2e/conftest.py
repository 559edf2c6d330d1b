"""The stack every end-to-end test starts: simulator, sample websites, env for real processes."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
import redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Lead
from pipeline.campaigns.batches import TERMINAL
from simulator import SimulatorConfig, SimulatorServer

ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "workers.cli")
T = TypeVar("T")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def wait_until(
    what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.5
) -> T:
    """Call ``check`` until it returns something truthy and return that; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def leads_done(factory: sessionmaker[Session]) -> int:
    """How many leads have reached a terminal status."""
    with factory() as session:
        query = select(func.count()).select_from(Lead).where(Lead.status.in_(TERMINAL))
        return session.scalar(query) or 0


def stop(*procs: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Terminate every process, wait for each, and kill one that outlives ``timeout``."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class E2EStack:
    env: dict[str, str]
    sim: SimulatorServer

    def with_env(self, **variables: str | None) -> E2EStack:
        """A copy whose processes see ``variables`` too; ``None`` removes one (its default)."""
        env = dict(self.env)
        for name, value in variables.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return dataclasses.replace(self, env=env)

    def configure_simulator(self, **changes: object) -> None:
        httpx.post(
            self.sim.url.removesuffix("/v1") + "/_sim/config", json=changes
        ).raise_for_status()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def cli_ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``leadpipe *args`` and assert it exited 0 (its stderr is the message)."""
        done = self.cli(*args)
        assert done.returncode == 0, done.stderr
        return done

    def start(self, args: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
        """Start ``leadpipe *args`` (worker, beat...) in the background, output appended to log."""
        with log.open("ab") as fh:
            return subprocess.Popen(
                [*CLI, *args], env=self.env, stdout=fh, stderr=subprocess.STDOUT
            )

    def worker(self, log: Path, *extra: str) -> subprocess.Popen[bytes]:
        return self.start(["worker", "--loglevel", "WARNING", *extra], log)


@pytest.fixture
def stack(
    db_url: str, redis_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> Iterator[E2EStack]:
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
            # Crash recovery runs on heartbeats, not on the visibility timeout or the lease:
            # a 1 s beat and a 3 s TTL make a killed worker's work come back in seconds.
            "LEADPIPE_HEARTBEAT_INTERVAL_S": "1",
            "LEADPIPE_HEARTBEAT_TTL_S": "3",
            "LEADPIPE_WORKER_CONCURRENCY": "6",
        }
    )
    yield E2EStack(env, sim)
    sites.shutdown()
    sim.stop()


def real_model_server() -> tuple[str, str]:
    """The real model server's URL and model name (make real-model); fails when it is not up."""
    url = os.environ.get("LEADPIPE_REAL_MODEL_URL")
    if not url:
        pytest.fail(
            "LEADPIPE_REAL_MODEL_URL is not set: start the real model server with "
            '`make real-model` and `eval "$(scripts/real_model.sh env)"` (make test does both)'
        )
    model = os.environ.get("LEADPIPE_REAL_MODEL_NAME", "smollm2-135m")
    served = httpx.get(f"{url}/models", timeout=120).json()
    assert model in {m["id"] for m in served["data"]}, served
    return url, model

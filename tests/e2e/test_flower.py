"""``leadpipe flower`` against the test Redis and a real worker: auth, workers, queue controls."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSWORD = "flower-pw-7c1e9a"
WORKER = f"flowertest@{socket.gethostname()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(url: str, *, auth: bool = True, method: str = "GET") -> tuple[int, Any]:
    request = urllib.request.Request(url, method=method)
    if auth:
        token = base64.b64encode(f"ops:{PASSWORD}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, None
    except (urllib.error.URLError, ConnectionError):
        return 0, None


def spawn(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.cli", *args],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
def env(db_url: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    redis.Redis.from_url(redis_url).flushdb()
    return dict(
        os.environ,
        LEADPIPE_DATABASE_URL=db_url,
        LEADPIPE_REDIS_URL=redis_url,
        LEADPIPE_DATA_DIR=str(tmp_path),
        LEADPIPE_FLOWER_USER="ops",
        LEADPIPE_FLOWER_PASSWORD=PASSWORD,
        LEADPIPE_FLOWER_PORT=str(free_port()),
    )


@pytest.fixture
def stack(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    log = tmp_path / "stack.log"
    procs = [
        spawn(env, log, "worker", "-Q", "classify,analyze", "-n", "flowertest@%h", "-c", "2"),
        spawn(env, log, "flower"),
    ]
    try:
        yield f"http://127.0.0.1:{env['LEADPIPE_FLOWER_PORT']}"
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    # The password travels in Flower's environment, never on its command line.
    assert PASSWORD not in " ".join(str(a) for p in procs for a in p.args)  # type: ignore[union-attr]


def queues_of(base: str, timeout: float = 60) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, workers = call(f"{base}/api/workers?refresh=1")
        if status == 200 and WORKER in workers and workers[WORKER].get("active_queues"):
            return sorted(q["name"] for q in workers[WORKER]["active_queues"])
        time.sleep(0.5)
    raise AssertionError(f"worker {WORKER} never showed in Flower (last status {status})")


def test_flower_requires_auth_and_shows_worker_queues(stack: str) -> None:
    assert queues_of(stack) == ["analyze", "classify"]
    assert call(f"{stack}/api/workers", auth=False)[0] == 401
    assert call(f"{stack}/api/workers", auth=True)[0] == 200
    # Pause a queue the way the README tells operators to.
    url = f"{stack}/api/worker/queue/cancel-consumer/{WORKER}?queue=analyze"
    assert call(url, auth=False, method="POST")[0] == 401
    assert call(url, method="POST")[0] == 200
    assert queues_of(stack) == ["classify"]


def test_flower_refuses_public_address_without_password(env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "LEADPIPE_FLOWER_PASSWORD"}
    result = subprocess.run(
        [sys.executable, "-m", "workers.cli", "flower", "--address", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "refusing to start Flower on 0.0.0.0 without a password" in result.stderr
    assert "LEADPIPE_FLOWER_PASSWORD" in result.stderr

"""Running ``leadpipe`` the way an operator does: a subprocess with its own environment."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``python -m workers.cli ARGS`` with ``env``; output captured, the exit code not checked."""
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def service_env(db_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """This process's environment pointed at the test PostgreSQL and Redis, plus ``extra``."""
    return dict(os.environ, LEADPIPE_DATABASE_URL=db_url, LEADPIPE_REDIS_URL=redis_url, **extra)

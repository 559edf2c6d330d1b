"""What the bench scripts share: fresh databases and Redis, the simulator, worker processes.

Each script under bench/ measures one thing; the set-up around it is the same everywhere and lives
here: a fresh PostgreSQL database (or SQLite in the run's folder) migrated to head, a flushed Redis
database next to the test one, the provider SIMULATOR (in-process with the synthetic lead sites
of bench/leadgen.py and the environment of ``leadpipe`` processes run against them, or as its own
process), a worker's ``Deps`` built in the bench's process, ``leadpipe enqueue`` and
``leadpipe worker`` processes, their resident memory and CPU from /proc, the options several
scripts take, and ``--json`` plus the results file in ``bench/results/``. Synthetic leads and
their websites stay in bench/leadgen.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import redis
from sqlalchemy import func, select, text

from bench.leadgen import site_server
from db.migrate import upgrade
from db.models import Lead
from db.session import make_engine
from pipeline.campaigns.batches import TERMINAL
from pipeline.deps import Deps
from pipeline.settings import Settings
from simulator import SimulatorConfig, SimulatorServer

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLI = [sys.executable, "-m", "workers.cli"]


# -- options and results -------------------------------------------------------------------


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The script's parser, described by the first line of its docstring."""
    return argparse.ArgumentParser(description=(doc or "").partition("\n")[0])


def add_worker_options(
    p: argparse.ArgumentParser, *, workers: int, latency_scale: float | None = 0.02
) -> None:
    """``--workers`` processes of ``--concurrency`` threads (and the simulator's latency scale)."""
    p.add_argument("--workers", type=int, default=workers)
    p.add_argument("--concurrency", type=int, default=12)
    if latency_scale is not None:
        p.add_argument("--latency-scale", type=float, default=latency_scale)


def add_run_options(p: argparse.ArgumentParser, *, seed: int, timeout: float) -> None:
    p.add_argument("--seed", type=int, default=seed)
    p.add_argument("--timeout", type=float, default=timeout)


def run_main(
    p: argparse.ArgumentParser,
    run: Callable[[argparse.Namespace], dict[str, Any]],
    name: str | Callable[[argparse.Namespace], str],
    table: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """Add ``--json``, parse, run, write ``bench/results/<name>`` and print; the document."""
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    doc = run(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / (name(args) if callable(name) else name)).write_text(
        json.dumps(doc, indent=2) + "\n", "utf-8"
    )
    if args.json:
        print(json.dumps(doc))
    else:
        table(doc)
    return doc


# -- databases -----------------------------------------------------------------------------


def redis_base() -> str:
    """The test Redis without its database number."""
    url = os.environ.get("LEADPIPE_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
    return url.rsplit("/", 1)[0]


def fresh_redis(db: int) -> str:
    """Database ``db`` of the test Redis, flushed; its URL."""
    url = f"{redis_base()}/{db}"
    redis.Redis.from_url(url).flushdb()
    return url


def fresh_database(
    workdir: Path, name: str = "leadpipe_bench", sqlite_file: str = "bench.db"
) -> str:
    """A new database ``name`` next to the test one (dropped first), or SQLite in ``workdir``
    when no PostgreSQL is configured; migrated to head. Its URL."""
    url = os.environ.get("LEADPIPE_TEST_DATABASE_URL")
    if not url:
        db_url = f"sqlite:///{workdir / sqlite_file}"
    else:
        admin = make_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        db_url = url.rsplit("/", 1)[0] + f"/{name}"
    upgrade(db_url)
    return db_url


def finished_leads(factory: Any) -> int:
    """Leads in a terminal status."""
    with factory() as session:
        return int(
            session.scalar(select(func.count()).select_from(Lead).where(Lead.status.in_(TERMINAL)))
            or 0
        )


# -- the simulator and the lead sites -------------------------------------------------------


@contextlib.contextmanager
def simulated_world(
    config: SimulatorConfig, *, db_url: str, redis_url: str, workdir: Path, **extra_env: str
) -> Iterator[dict[str, str]]:
    """The in-process SIMULATOR and the synthetic lead sites, stopped on exit; yields the
    environment of ``leadpipe`` processes run against them (plus ``extra_env``)."""
    sim = SimulatorServer(config=config)
    sim.start()
    sites = site_server()
    threading.Thread(target=sites.serve_forever, daemon=True).start()
    site = f"127.0.0.1:{sites.server_address[1]}"
    try:
        yield dict(
            os.environ,
            LEADPIPE_DATABASE_URL=db_url,
            LEADPIPE_REDIS_URL=redis_url,
            LEADPIPE_SIMULATOR_URL=sim.url,
            LEADPIPE_WEB__MIRROR_URL=f"http://{site}",
            LEADPIPE_WEB__ALLOW_HOSTS=json.dumps([site]),
            LEADPIPE_DATA_DIR=str(workdir),
            **extra_env,
        )
    finally:
        sim.stop()
        sites.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_simulator(
    env: dict[str, str], options: Sequence[str]
) -> tuple[subprocess.Popen[bytes], str]:
    """``leadpipe simulator`` in its own process on a free port, once it answers; its /v1 URL."""
    port = free_port()
    cmd = [*CLI, "simulator", "--port", str(port), *options]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/models", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the simulator did not start")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


def in_process_deps(
    *, db_url: str, redis_url: str, sim_url: str, workdir: Path, **settings: Any
) -> Deps:
    """A worker's production ``Deps``, built in this process against ``sim_url``."""
    from workers.lifecycle import build_deps

    return build_deps(
        Settings(
            database_url=db_url,
            redis_url=redis_url,
            simulator_url=sim_url,
            data_dir=workdir,
            metrics_port=None,
            **settings,
        )
    )


# -- leadpipe processes ---------------------------------------------------------------------


def enqueue(csv_path: Path, campaign: str, env: dict[str, str]) -> int:
    """``leadpipe enqueue`` of ``csv_path``; the leads it accepted."""
    done = subprocess.run(
        [*CLI, "enqueue", str(csv_path), "--campaign", campaign, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(done.stdout)["accepted"])


def start_workers(
    count: int,
    name: str,
    env: dict[str, str],
    log: IO[bytes],
    options: Sequence[str] = (),
) -> list[subprocess.Popen[bytes]]:
    """``count`` ``leadpipe worker`` processes named ``<name><i>@%h``, logging to ``log``."""
    return [
        subprocess.Popen(
            [*CLI, "worker", "-n", f"{name}{i}@%h", *options, "--loglevel", "WARNING"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in range(count)
    ]


def stop_workers(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """Terminate worker processes (killed after 60 s); their CPU ms, read before they exit."""
    used = 0.0
    for proc in procs:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            used += cpu_ms(proc.pid)
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    return used


# -- /proc -----------------------------------------------------------------------------------


def cpu_ms(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc), in milliseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MB (Linux /proc)."""
    total_kb = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return total_kb / 1024

"""Issue 15's soak: many leads through one real worker process, its RSS sampled as they finish.

``--leads`` synthetic leads (default 10,000) are enqueued at once and run through
``leadpipe worker`` processes (threads pool) on Redis, PostgreSQL (or SQLite) and the offline
provider SIMULATOR at 2 % of its realistic latency. Each worker's resident memory (its process
and any children, from /proc) is read every ``--every`` finished leads (default 1,000). The
floor: RSS growth <= 30 MB between the first sample (lead 1,000) and the last (lead 10,000).

    python bench/soak.py [--leads 10000] [--every 1000] [--workers 1] [--json]

It takes long (about 10,000 / the workers' leads per second); ``--leads 3000`` is a short run
(`make bench` runs that one). Needs LEADPIPE_TEST_REDIS_URL (and LEADPIPE_TEST_DATABASE_URL
for PostgreSQL). Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.leadgen import site_server, write_leads  # noqa: E402
from db.migrate import upgrade  # noqa: E402
from db.models import Lead  # noqa: E402
from db.session import make_engine, make_session_factory  # noqa: E402
from pipeline.campaigns.batches import TERMINAL  # noqa: E402
from simulator import SimulatorConfig, SimulatorServer  # noqa: E402

FLOORS = {"rss_growth_mb": 30.0}


def database_url(workdir: Path) -> str:
    """A fresh ``leadpipe_soak`` database next to the test one (its own: other benches drop
    ``leadpipe_bench``), or SQLite in ``workdir`` when no PostgreSQL is configured."""
    url = os.environ.get("LEADPIPE_TEST_DATABASE_URL")
    if not url:
        return f"sqlite:///{workdir / 'soak.db'}"
    admin = make_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("DROP DATABASE IF EXISTS leadpipe_soak WITH (FORCE)"))
        conn.execute(text("CREATE DATABASE leadpipe_soak"))
    admin.dispose()
    return url.rsplit("/", 1)[0] + "/leadpipe_soak"


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


def finished(factory: Any) -> int:
    with factory() as session:
        return int(
            session.scalar(select(func.count()).select_from(Lead).where(Lead.status.in_(TERMINAL)))
            or 0
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="leadpipe-bench-soak-"))
    redis_url = os.environ.get("LEADPIPE_TEST_REDIS_URL", "redis://127.0.0.1:56379/0")
    redis_url = redis_url.rsplit("/", 1)[0] + "/8"
    redis.Redis.from_url(redis_url).flushdb()
    db_url = database_url(workdir)
    upgrade(db_url)
    csv_path = workdir / "leads.csv"
    write_leads(csv_path, count=args.leads, share_enterprise=0.3, seed=args.seed)
    sim = SimulatorServer(config=SimulatorConfig(latency_scale=args.latency_scale, seed=args.seed))
    sim.start()
    sites = site_server()
    threading.Thread(target=sites.serve_forever, daemon=True).start()
    site = f"127.0.0.1:{sites.server_address[1]}"
    env = dict(
        os.environ,
        LEADPIPE_DATABASE_URL=db_url,
        LEADPIPE_REDIS_URL=redis_url,
        LEADPIPE_SIMULATOR_URL=sim.url,
        LEADPIPE_WEB__MIRROR_URL=f"http://{site}",
        LEADPIPE_WEB__ALLOW_HOSTS=json.dumps([site]),
        LEADPIPE_DATA_DIR=str(workdir),
        LEADPIPE_WORKER_CONCURRENCY=str(args.concurrency),
        LEADPIPE_METRICS_PORT="0",
    )
    cli = [sys.executable, "-m", "workers.cli"]
    enq = subprocess.run(
        [*cli, "enqueue", str(csv_path), "--campaign", "soak", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    accepted = int(json.loads(enq.stdout)["accepted"])
    logs = (workdir / "worker.log").open("ab")
    workers = [
        subprocess.Popen(
            [*cli, "worker", "-n", f"soak{i}@%h", "--loglevel", "WARNING"],
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        for i in range(args.workers)
    ]
    factory = make_session_factory(make_engine(db_url))
    samples: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        samples = sample_until_done(factory, workers, accepted, args)
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(timeout=60)
        sim.stop()
        sites.shutdown()
    elapsed = time.monotonic() - started
    return summarise(samples, accepted, elapsed, args, db_url)


def sample_until_done(
    factory: Any, workers: list[subprocess.Popen[bytes]], total: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """One sample per ``args.every`` finished leads (and one at the end)."""
    samples: list[dict[str, Any]] = []
    next_mark = args.every
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        done = finished(factory)
        dead = [proc.pid for proc in workers if proc.poll() is not None]
        if dead:
            raise SystemExit(f"worker process(es) {dead} exited; see the worker log")
        while done >= next_mark or (
            done >= total and (not samples or samples[-1]["leads_done"] < total)
        ):
            samples.append(
                {
                    "leads_done": done,
                    "mark": min(next_mark, total),
                    "worker_rss_mb": [round(rss_mb(proc.pid), 1) for proc in workers],
                }
            )
            print(
                f"\r{done}/{total} leads done, RSS {samples[-1]['worker_rss_mb']} MB",
                end="",
                file=sys.stderr,
                flush=True,
            )
            next_mark += args.every
            if done >= total:
                break
        if done >= total:
            print(file=sys.stderr)
            return samples
        time.sleep(0.5)
    print(
        f"\ntimed out after {args.timeout:.0f} s; reporting {len(samples)} sample(s)",
        file=sys.stderr,
    )
    if not samples:
        raise SystemExit("no sample before the timeout")
    samples[-1]["timed_out"] = True
    return samples


def summarise(
    samples: list[dict[str, Any]],
    accepted: int,
    elapsed: float,
    args: argparse.Namespace,
    db_url: str,
) -> dict[str, Any]:
    first, last = samples[0], samples[-1]
    growth = [
        round(end - start, 1)
        for start, end in zip(first["worker_rss_mb"], last["worker_rss_mb"], strict=True)
    ]
    return {
        "leads": accepted,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "latency_scale": args.latency_scale,
        "every": args.every,
        "samples": samples,
        "rss_first_mb": first["worker_rss_mb"],
        "rss_last_mb": last["worker_rss_mb"],
        "rss_growth_from_lead": first["leads_done"],
        "rss_growth_to_lead": last["leads_done"],
        "rss_growth_mb": max(growth),
        "rss_growth_mb_per_worker": growth,
        "finished": last["leads_done"] >= accepted,
        "wall_s": round(elapsed, 1),
        "leads_per_s": round(accepted / elapsed, 2),
        "database": db_url.split(":", 1)[0],
        "floors": FLOORS,
    }


def print_table(res: dict[str, Any]) -> None:
    print(
        f"soak: {res['leads']} leads, {res['workers']} worker(s) x {res['concurrency']} threads,"
        f" {res['wall_s']} s ({res['leads_per_s']} leads/s)"
    )
    print(f"  {'leads done':>10}  worker RSS MB")
    for sample in res["samples"]:
        print(f"  {sample['leads_done']:>10}  {sample['worker_rss_mb']}")
    print(
        f"  RSS growth lead {res['rss_growth_from_lead']} -> {res['rss_growth_to_lead']}:"
        f" {res['rss_growth_mb']} MB (floor <= {FLOORS['rss_growth_mb']} MB between lead 1,000"
        " and 10,000)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--latency-scale", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=7200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    res = run(args)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "soak.json").write_text(json.dumps(res, indent=2) + "\n")
    if args.json:
        print(json.dumps(res))
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

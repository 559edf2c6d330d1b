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
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.leadgen import write_leads
from db.session import make_engine, make_session_factory
from simulator import SimulatorConfig

FLOORS = {"rss_growth_mb": 30.0}


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="leadpipe-bench-soak-"))
    redis_url = harness.fresh_redis(8)
    # its own database: other benches drop leadpipe_bench
    db_url = harness.fresh_database(workdir, "leadpipe_soak", "soak.db")
    csv_path = workdir / "leads.csv"
    write_leads(csv_path, count=args.leads, share_enterprise=0.3, seed=args.seed)
    sim_config = SimulatorConfig(latency_scale=args.latency_scale, seed=args.seed)
    with harness.simulated_world(
        sim_config,
        db_url=db_url,
        redis_url=redis_url,
        workdir=workdir,
        LEADPIPE_WORKER_CONCURRENCY=str(args.concurrency),
        LEADPIPE_METRICS_PORT="0",
    ) as env:
        accepted = harness.enqueue(csv_path, "soak", env)
        logs = (workdir / "worker.log").open("ab")
        workers = harness.start_workers(args.workers, "soak", env, logs)
        factory = make_session_factory(make_engine(db_url))
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        try:
            samples = sample_until_done(factory, workers, accepted, args)
        finally:
            harness.stop_workers(workers)
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
        done = harness.finished_leads(factory)
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
                    "worker_rss_mb": [round(harness.rss_mb(proc.pid), 1) for proc in workers],
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
    parser = harness.parser(__doc__)
    parser.add_argument("--leads", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    harness.add_worker_options(parser, workers=1)
    harness.add_run_options(parser, seed=15, timeout=7200)
    harness.run_main(parser, run, "soak.json", print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Issue 15's pipeline benchmark: leadpipe's six-stage chain against a bare Celery chain.

Both run the same number of leads on the same Redis with the same worker shape (W processes,
threads pool of C each, acks_late, prefetch 1), interleaved round by round. leadpipe's models are
the provider SIMULATOR at a fixed latency per call; each bare task sleeps the same latency
(bench/bare_chain.py). Counted, not estimated: database transactions (PostgreSQL's
pg_stat_database) and Redis commands (INFO: the broker's and leadpipe's own together) per lead,
leadpipe's own Redis round trips per lead (its application client, Celery's broker traffic
excluded; counted in the workers by bench/redis_count), and worker CPU per lead.

    python bench/pipeline.py [--leads 300] [--rounds 2] [--workers 2] [--concurrency 12] [--json]

Needs LEADPIPE_TEST_REDIS_URL and LEADPIPE_TEST_DATABASE_URL: `make bench`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.leadgen import write_leads  # noqa: E402
from db.session import make_engine, make_session_factory  # noqa: E402
from simulator import SimulatorConfig  # noqa: E402

FLOORS = {
    "ratio_vs_bare": 0.5,
    "db_transactions_per_lead": 12,
    "app_redis_round_trips_per_lead": 20,
}
BARE_QUEUES = ",".join(
    f"bare-{s}" for s in ("classify", "score", "analyze", "demo", "personalize", "judge")
)


def redis_commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def app_round_trips(count_dir: Path) -> int:
    """leadpipe's own Redis round trips so far, summed over the worker processes."""
    return sum(int(p.read_text() or 0) for p in count_dir.glob("[0-9]*") if p.suffix == "")


def db_transactions(admin_url: str, dbname: str) -> int | None:
    if not admin_url.startswith("postgresql"):
        return None
    engine = make_engine(admin_url)
    time.sleep(0.7)  # the statistics collector publishes every 500 ms
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        value = conn.execute(
            text("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = :d"),
            {"d": dbname},
        ).scalar()
    engine.dispose()
    return int(value or 0)


def run_bare(args: argparse.Namespace, broker: str, log: Any) -> dict[str, float]:
    env = dict(os.environ, BARE_BROKER_URL=broker, BARE_LATENCY_S=str(args.latency_ms / 1000))
    client = redis.Redis.from_url(broker)
    client.flushdb()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "bench.bare_chain",
                "worker",
                "-P",
                "threads",
                "-c",
                str(args.concurrency),
                "-Q",
                BARE_QUEUES,
                "-n",
                f"bare{i}@%h",
                "-l",
                "WARNING",
            ],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for i in range(args.workers)
    ]
    sys.path.insert(0, str(ROOT))
    os.environ["BARE_BROKER_URL"] = broker
    from bench import bare_chain

    time.sleep(3)  # let the workers connect before the clock starts
    before = redis_commands(client)
    started = time.monotonic()
    for lead_id in range(args.leads):
        bare_chain.lead_chain(lead_id).apply_async()
    deadline = started + args.timeout
    while int(client.get(bare_chain.DONE_KEY) or 0) < args.leads:
        if time.monotonic() > deadline:
            harness.stop_workers(procs)
            raise SystemExit("bare chain timed out")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    commands = redis_commands(client) - before
    cpu = harness.stop_workers(procs)
    return {
        "leads_per_s": args.leads / elapsed,
        "redis_commands_per_lead": commands / args.leads,
        "worker_cpu_ms_per_lead": cpu / args.leads,
    }


def run_leadpipe(
    args: argparse.Namespace, redis_url: str, db_url: str, admin_url: str, log: Any, rnd: int
) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="leadpipe-bench-pipe-"))
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    csv_path = workdir / "leads.csv"
    write_leads(csv_path, count=args.leads, share_enterprise=0.3, seed=args.seed + rnd)
    sim_config = SimulatorConfig(base_latency_ms=args.latency_ms, per_token_ms=0, seed=args.seed)
    count_dir = workdir / "redis-round-trips"
    count_dir.mkdir()
    pythonpath = os.pathsep.join(
        p for p in (str(ROOT / "bench" / "redis_count"), os.environ.get("PYTHONPATH")) if p
    )
    with harness.simulated_world(
        sim_config,
        db_url=db_url,
        redis_url=redis_url,
        workdir=workdir,
        PYTHONPATH=pythonpath,
        LEADPIPE_BENCH_REDIS_COUNT=str(count_dir),
        LEADPIPE_METRICS_PORT="0",
    ) as env:
        procs = harness.start_workers(args.workers, "pipe", env, log, ["-c", str(args.concurrency)])
        factory = make_session_factory(make_engine(db_url))
        try:
            time.sleep(5)  # workers connected and migrated before the clock starts
            # The database is shared by the rounds: count only this round's leads.
            target = harness.finished_leads(factory) + args.leads
            xacts_before = db_transactions(admin_url, db_url.rsplit("/", 1)[1])
            commands_before = redis_commands(client)
            trips_before = app_round_trips(count_dir)
            # The clock starts before `enqueue`, as the bare chain's starts before its
            # apply_async loop: storing and sending the leads is part of the work.
            started = time.monotonic()
            harness.enqueue(csv_path, f"bench-{rnd}", env)
            deadline = started + args.timeout
            while harness.finished_leads(factory) < target:
                if time.monotonic() > deadline:
                    raise SystemExit("leadpipe pipeline timed out")
                time.sleep(0.25)
            elapsed = time.monotonic() - started
            commands = redis_commands(client) - commands_before
            time.sleep(0.1)  # the counters are published every 50 ms
            trips = app_round_trips(count_dir) - trips_before
            xacts_after = db_transactions(admin_url, db_url.rsplit("/", 1)[1])
        finally:
            cpu = harness.stop_workers(procs)
            factory.kw["bind"].dispose()
    out = {
        "leads_per_s": args.leads / elapsed,
        "redis_commands_per_lead": commands / args.leads,
        "app_redis_round_trips_per_lead": trips / args.leads,
        "worker_cpu_ms_per_lead": cpu / args.leads,
    }
    if xacts_before is not None and xacts_after is not None:
        out["db_transactions_per_lead"] = (xacts_after - xacts_before) / args.leads
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = harness.redis_base()
    admin_url = os.environ.get("LEADPIPE_TEST_DATABASE_URL", "")
    db_url = harness.fresh_database(Path(tempfile.mkdtemp(prefix="leadpipe-bench-db-")))
    log = (Path(tempfile.gettempdir()) / "leadpipe-bench-pipeline.log").open("ab")
    bare: list[dict[str, float]] = []
    pipe: list[dict[str, float]] = []
    for rnd in range(args.rounds):
        bare.append(run_bare(args, f"{base}/7", log))
        pipe.append(run_leadpipe(args, f"{base}/9", db_url, admin_url, log, rnd))

    def med(rows: list[dict[str, float]], key: str) -> float | None:
        values = [r[key] for r in rows if key in r]
        return round(statistics.median(values), 3) if values else None

    out: dict[str, Any] = {
        "leads": args.leads,
        "rounds": args.rounds,
        "latency_ms": args.latency_ms,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "leadpipe_leads_per_s": med(pipe, "leads_per_s"),
        "bare_leads_per_s": med(bare, "leads_per_s"),
        "db_transactions_per_lead": med(pipe, "db_transactions_per_lead"),
        "redis_commands_per_lead": med(pipe, "redis_commands_per_lead"),
        "app_redis_round_trips_per_lead": med(pipe, "app_redis_round_trips_per_lead"),
        "bare_redis_commands_per_lead": med(bare, "redis_commands_per_lead"),
        "leadpipe_worker_cpu_ms_per_lead": med(pipe, "worker_cpu_ms_per_lead"),
        "bare_worker_cpu_ms_per_lead": med(bare, "worker_cpu_ms_per_lead"),
        "floors": FLOORS,
        "runs": {"leadpipe": pipe, "bare": bare},
    }
    if out["leadpipe_leads_per_s"] and out["bare_leads_per_s"]:
        out["ratio_vs_bare"] = round(out["leadpipe_leads_per_s"] / out["bare_leads_per_s"], 3)
    return out


def print_table(res: dict[str, Any]) -> None:
    print(
        f"pipeline: {res['leads']} leads x {res['rounds']} rounds, {res['latency_ms']} ms per "
        f"model call, {res['workers']} workers x {res['concurrency']} threads"
    )
    rows = [
        ("leadpipe leads/s", res["leadpipe_leads_per_s"], ""),
        ("bare chain leads/s", res["bare_leads_per_s"], ""),
        ("leadpipe / bare", res.get("ratio_vs_bare"), f">= {FLOORS['ratio_vs_bare']}"),
        (
            "DB transactions/lead",
            res["db_transactions_per_lead"],
            f"<= {FLOORS['db_transactions_per_lead']}",
        ),
        (
            "leadpipe Redis trips/lead",
            res["app_redis_round_trips_per_lead"],
            f"<= {FLOORS['app_redis_round_trips_per_lead']}",
        ),
        ("Redis commands/lead (all)", res["redis_commands_per_lead"], ""),
        ("bare Redis commands/lead", res["bare_redis_commands_per_lead"], ""),
        ("worker CPU ms/lead", res["leadpipe_worker_cpu_ms_per_lead"], ""),
        ("bare worker CPU ms/lead", res["bare_worker_cpu_ms_per_lead"], ""),
    ]
    for name, value, floor in rows:
        print(f"  {name:26} {value!s:>10}   {floor}")


def main() -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    harness.add_worker_options(parser, workers=2, latency_scale=None)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    harness.add_run_options(parser, seed=7, timeout=900)
    harness.run_main(parser, run, "pipeline.json", print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

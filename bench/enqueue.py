"""Issue 15's enqueue benchmark: `leadpipe enqueue` of a large CRM export against a bare loop.

For each size, in the same run: ``leadpipe enqueue FILE`` (parse, validate, store the batch,
publish one chain per lead) and a bare loop of ``apply_async`` publishing the same number of
six-task chains (bench/bare_chain.py), each in its own process so peak RSS is its own
(``getrusage`` of the child). Nothing consumes the queues; they are flushed afterwards.

    python bench/enqueue.py [--rows 10000 100000] [--rounds 1] [--json]

With ``--rounds N`` the two alternate N times per size (leadpipe, bare, leadpipe, bare, ...) and
the medians are reported, so a load spike on a shared machine hits both sides alike.

Needs LEADPIPE_TEST_REDIS_URL (and LEADPIPE_TEST_DATABASE_URL for PostgreSQL): `make bench`.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from bench.leadgen import write_leads  # noqa: E402

FLOORS = {"ratio_vs_bare": 3.0, "peak_rss_mb": 250}
BARE_LOOP = """
import sys
from bench import bare_chain
for lead_id in range(int(sys.argv[1])):
    bare_chain.lead_chain(lead_id).apply_async()
"""


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, its peak RSS in MB)."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{cmd[:4]} failed with {status}")
    return elapsed, usage.ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="leadpipe-bench-enq-"))
    db_url = harness.fresh_database(workdir)
    sizes: dict[str, Any] = {}
    for rows in args.rows:
        csv_path = workdir / f"leads-{rows}.csv"
        write_leads(csv_path, count=rows, share_enterprise=0.3, seed=rows)
        pipe_redis, bare_redis = harness.fresh_redis(10), harness.fresh_redis(11)
        env = dict(
            os.environ,
            LEADPIPE_DATABASE_URL=db_url,
            LEADPIPE_REDIS_URL=pipe_redis,
            LEADPIPE_DATA_DIR=str(workdir),
            BARE_BROKER_URL=bare_redis,
        )
        cli = [*harness.CLI, "enqueue", str(csv_path)]
        pipe_runs: list[tuple[float, float]] = []
        bare_runs: list[tuple[float, float]] = []
        for round_no in range(args.rounds):
            campaign = f"bench-{rows}-{round_no}"  # a new campaign: not "already enqueued"
            pipe_runs.append(run_child([*cli, "--campaign", campaign, "--json"], env))
            bare_runs.append(run_child([sys.executable, "-c", BARE_LOOP, str(rows)], env))
            for url in (pipe_redis, bare_redis):
                redis.Redis.from_url(url).flushdb()
        pipe_s = statistics.median(t for t, _ in pipe_runs)
        bare_s = statistics.median(t for t, _ in bare_runs)
        pipe_rss = max(r for _, r in pipe_runs)
        bare_rss = max(r for _, r in bare_runs)
        sizes[str(rows)] = {
            "rows": rows,
            "leadpipe_leads_per_s": round(rows / pipe_s, 1),
            "bare_leads_per_s": round(rows / bare_s, 1),
            "ratio_vs_bare": round(bare_s / pipe_s, 3),
            "peak_rss_mb": round(pipe_rss, 1),
            "bare_peak_rss_mb": round(bare_rss, 1),
            "leadpipe_wall_s": round(pipe_s, 1),
            "bare_wall_s": round(bare_s, 1),
            "rounds": args.rounds,
            "leadpipe_runs_s": [round(t, 1) for t, _ in pipe_runs],
            "bare_runs_s": [round(t, 1) for t, _ in bare_runs],
        }
    largest = sizes[str(max(args.rows))]
    return {
        **{k: largest[k] for k in ("rows", "leadpipe_leads_per_s", "bare_leads_per_s")},
        **{k: largest[k] for k in ("ratio_vs_bare", "peak_rss_mb")},
        "database": db_url.split(":", 1)[0],
        "sizes": sizes,
        "floors": FLOORS,
        "self_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def print_table(res: dict[str, Any]) -> None:
    print("enqueue: leadpipe enqueue vs a bare apply_async loop (same chains, same Redis)")
    print(
        f"  {'rows':>8} {'leadpipe/s':>11} {'bare/s':>9} {'ratio':>7} {'RSS MB':>8} {'bare RSS':>9}"
    )
    for row in res["sizes"].values():
        print(
            f"  {row['rows']:>8} {row['leadpipe_leads_per_s']:>11} {row['bare_leads_per_s']:>9}"
            f" {row['ratio_vs_bare']:>7} {row['peak_rss_mb']:>8} {row['bare_peak_rss_mb']:>9}"
        )
    print(f"  floors: ratio >= {FLOORS['ratio_vs_bare']}, peak RSS <= {FLOORS['peak_rss_mb']} MB")


def main() -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--rounds", type=int, default=1)
    harness.run_main(parser, run, "enqueue.json", print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

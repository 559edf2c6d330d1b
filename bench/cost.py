"""Issue 4's cost benchmark: the reference day of DESIGN.md section 6 through real workers.

1,000 synthetic leads (70 % smb / 30 % enterprise) run through real Celery worker processes on
Redis, the offline provider SIMULATOR and PostgreSQL (or SQLite when no URL is given). Figures
come from the ledger. Usage:

    python bench/cost.py [--leads 1000] [--workers 2] [--json]

Needs LEADPIPE_TEST_REDIS_URL (and LEADPIPE_TEST_DATABASE_URL for PostgreSQL): `make bench`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from bench.leadgen import write_leads
from db.models import Lead, LLMCall, StageResult
from db.session import make_engine, make_session_factory
from pipeline.llm.catalog import BASELINE_REF
from pipeline.llm.routing import load_routing_table
from pipeline.models import Usage
from pipeline.reporting.report import build_report
from simulator import SimulatorConfig

# DESIGN.md section 6: tokens per call and input share, every lead, every stage, on Sonnet 4.
REFERENCE_TOKENS = {
    "classify": (500, 0.7),
    "score": (300, 0.7),
    "analyze": (4000, 0.4),
    "personalize": (1500, 0.4),
    "judge": (2000, 0.4),
}


def reference_baseline(leads: int) -> Decimal:
    """The section 6 all-premium day: every stage of every lead on Claude Sonnet 4."""
    price = load_routing_table().catalog.price(BASELINE_REF)
    per_lead = sum(
        (
            price.cost(Usage(round(t * share), t - round(t * share)))
            for t, share in REFERENCE_TOKENS.values()
        ),
        Decimal(0),
    )
    return per_lead * leads


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="leadpipe-bench-"))
    redis_url = harness.fresh_redis(9)
    db_url = harness.fresh_database(workdir)
    csv_path = workdir / "leads.csv"
    write_leads(csv_path, count=args.leads, share_enterprise=0.3, seed=args.seed)
    sim_config = SimulatorConfig(
        latency_scale=args.latency_scale, seed=args.seed, quality=args.quality
    )
    with harness.simulated_world(
        sim_config,
        db_url=db_url,
        redis_url=redis_url,
        workdir=workdir,
        LEADPIPE_WORKER_CONCURRENCY=str(args.concurrency),
    ) as env:
        started = time.monotonic()
        accepted = harness.enqueue(csv_path, "reference-day", env)
        logs = (workdir / "worker.log").open("ab")
        workers = harness.start_workers(args.workers, "bench", env, logs)
        factory = make_session_factory(make_engine(db_url))
        try:
            wait_done(factory, accepted, args.timeout)
        finally:
            harness.stop_workers(workers)
    elapsed = time.monotonic() - started
    return summarise(factory, accepted, elapsed, args)


def wait_done(factory: Any, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = harness.finished_leads(factory)
        print(f"\r{done}/{total} leads done", end="", file=sys.stderr, flush=True)
        if done >= total:
            print(file=sys.stderr)
            return
        time.sleep(1)
    raise SystemExit(f"timed out after {timeout:.0f} s")


def summarise(
    factory: Any, accepted: int, elapsed: float, args: argparse.Namespace
) -> dict[str, Any]:
    table = load_routing_table()
    with factory() as session:
        report = build_report(
            session, catalog=table.catalog, campaign="reference-day", is_cheap=table.is_cheap
        )
        judged = (
            session.scalar(
                select(func.count())
                .select_from(StageResult)
                .where(StageResult.stage == "judge", StageResult.status == "done")
            )
            or 0
        )
        tiers = dict(session.execute(select(Lead.tier, func.count()).group_by(Lead.tier)).all())
        ledger = dict(
            session.execute(select(LLMCall.status, func.count()).group_by(LLMCall.status)).all()
        )
        repairs = session.scalar(
            select(func.count()).select_from(LLMCall).where(LLMCall.prompt_version.like("%+fix"))
        )
        statuses = dict(session.execute(select(Lead.status, func.count()).group_by(Lead.status)))
    classify = report["by_stage"].get("classify", {})
    return {
        "leads": accepted,
        "approved": report.get("approved"),
        "held": report.get("held"),
        "parked": report.get("parked"),
        "lead_statuses": statuses,
        "ledger_statuses": ledger,
        "repair_calls": repairs or 0,
        "judged": judged,
        "tiers": tiers,
        "completed": report["completed"],
        "held_for_review": report["held_for_review"],
        "failed": report["failed"],
        "llm_calls": report["llm_calls"],
        "baseline_cost_usd": report["baseline_cost_usd"],
        "cost_usd": report["cost_usd"],
        "savings_pct": report["savings_pct"],
        "cost_per_lead_usd": report["cost_per_lead_usd"],
        "classify_llm_call_rate": classify.get("llm_call_rate", 0.0),
        "cheap_call_share": report["cheap_call_share"],
        "avg_quality": report["avg_quality"],
        "reference_day_baseline_usd": str(reference_baseline(accepted).quantize(Decimal("0.01"))),
        "llm_call_rate_by_stage": {k: v["llm_call_rate"] for k, v in report["by_stage"].items()},
        "quality_distribution": report["quality_distribution"],
        "simulated": report["simulated"],
        "wall_time_s": round(elapsed, 1),
        "leads_per_s": round(accepted / elapsed, 2),
        "settings": {
            "workers": args.workers,
            "concurrency": args.concurrency,
            "latency_scale": args.latency_scale,
            "seed": args.seed,
            "simulator_quality": args.quality,
        },
    }


def print_table(doc: dict[str, Any]) -> None:
    print(
        f"leads {doc['leads']}: approved {doc['approved']}, held {doc['held']}, "
        f"parked {doc['parked']}, failed {doc['failed']} (simulator quality "
        f"{doc['settings']['simulator_quality']})"
    )
    print(f"ledger rows by status {doc['ledger_statuses']}; repair calls {doc['repair_calls']}")
    floors = [
        (
            "savings vs all-Sonnet-4 (same calls)",
            f"{doc['savings_pct']} %",
            ">= 90 %",
            float(doc["savings_pct"]) >= 90,
        ),
        (
            "cost per lead",
            f"${doc['cost_per_lead_usd']}",
            "<= $0.010",
            Decimal(doc["cost_per_lead_usd"]) <= Decimal("0.010"),
        ),
        (
            "classify LLM call rate",
            f"{doc['classify_llm_call_rate']:.1%}",
            "<= 30 %",
            doc["classify_llm_call_rate"] <= 0.30,
        ),
        (
            "calls on cheap models",
            f"{doc['cheap_call_share']:.1%}",
            ">= 60 %",
            doc["cheap_call_share"] >= 0.60,
        ),
        ("leads judged", f"{doc['judged']}/{doc['leads']}", "all", doc["judged"] == doc["leads"]),
    ]
    print(
        f"reference day: {doc['leads']} leads {doc['tiers']}, {doc['llm_calls']} LLM calls "
        f"(offline SIMULATOR), {doc['wall_time_s']} s, {doc['leads_per_s']} leads/s"
    )
    print(
        f"cost ${doc['cost_usd']}  baseline (same calls on Sonnet 4) ${doc['baseline_cost_usd']}"
        f"  section-6 all-premium day ${doc['reference_day_baseline_usd']}"
    )
    print(f"{'metric':<40}{'measured':>14}{'floor':>12}  ok")
    for name, value, floor, ok in floors:
        print(f"{name:<40}{value:>14}{floor:>12}  {'yes' if ok else 'NO'}")


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--leads", type=int, default=1000)
    harness.add_worker_options(parser, workers=2)
    harness.add_run_options(parser, seed=42, timeout=1800)
    parser.add_argument(
        "--quality", choices=["good", "weak"], default="good", help="simulator answer quality"
    )
    harness.run_main(parser, run, result_name, print_table)


def result_name(args: argparse.Namespace) -> str:
    return "cost.json" if args.quality == "good" else f"cost-{args.quality}.json"


if __name__ == "__main__":
    main()

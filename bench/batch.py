"""Issue 14's batch benchmark: the batch path against the sync path on one self-hosted endpoint.

One run, one simulated self-hosted endpoint (the provider SIMULATOR in self-hosted mode: a fixed
number of slots answering at once, per-token latency; labelled simulated), the same analysis
requests twice:

- ``batch``: every request registered for the batch path, then the collector groups them and
  the self-hosted backend sends each group ``--slots`` requests at a time (``pipeline.batch``);
- ``sync``: the same requests one by one through the gateway (``call_model``), as a stage does.

Both write one ledger row per request (PostgreSQL when LEADPIPE_TEST_DATABASE_URL is set).
Cost is what a GPU rented by the second bills: the seconds the endpoint was busy (measured by
the simulator) times ``--usd-per-gpu-second``; the batch path's ledger rows carry that bill shared
out by tokens. The sync path's ledger prices the same tokens at the routing table's $/token,
shown as ``sync_ledger_cost_usd`` (for tokens alone the two paths cost the same).

    python bench/batch.py [--requests 1000] [--slots 8] [--latency-scale 0.01] [--json]

Floors: batch throughput >= 3x sync, and a lower cost. Writes bench/results/batch.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from db.enums import CallStatus, Stage  # noqa: E402
from db.models import LLMCall  # noqa: E402
from pipeline.batch.collector import collect, register  # noqa: E402
from pipeline.deps import Deps  # noqa: E402
from pipeline.llm.contracts import contract_for  # noqa: E402
from pipeline.llm.gateway import CallContext, call_model, request_for  # noqa: E402
from pipeline.llm.prompts import render  # noqa: E402
from pipeline.logs import configure_logging  # noqa: E402
from pipeline.models import Prompt, Route  # noqa: E402
from pipeline.settings import ProviderSettings  # noqa: E402

FLOOR_SPEEDUP = 3.0
MODEL = "vllm:meta-llama/Llama-3.1-8B-Instruct"


def start_selfhosted(args: argparse.Namespace, env: dict[str, str]) -> tuple[Any, str]:
    """The simulator in self-hosted mode: ``--slots`` answering at once, per-token latency."""
    options = ["--latency-scale", str(args.latency_scale), "--slots", str(args.slots)]
    options += ["--per-token-ms", str(args.per_token_ms), "--seed", "42"]
    return harness.start_simulator(env, options)


def routing_table(path: Path, args: argparse.Namespace) -> Path:
    """The packaged table with analyze's Llama batchable on its vLLM endpoint."""
    packaged = (ROOT / "pipeline" / "llm" / "routing.toml").read_text("utf-8")
    head, _, _ = packaged.partition("[batch]")
    path.write_text(
        head
        + "[batch]\n"
        + f"threshold = 20\nwindow_s = 1.0\nmax_group = {args.max_group}\n"
        + f"[batch.endpoints.vllm]\nconcurrency = {args.slots}\n"
        + f'usd_per_gpu_second = "{args.usd_per_gpu_second}"\n'
        + '[batch.stages.analyze]\nmodels = ["llama8b"]\n',
        "utf-8",
    )
    return path


def analysis_prompt(i: int) -> Prompt:
    lead = {"company": f"Northwind Dental {i}", "industry": "Healthcare", "employees": 40}
    site = f"Northwind Dental {i} runs {3 + i % 5} clinics. Online booking, HIPAA forms, careers."
    return render("analyze", lead=lead, website_text=site)


def sim_busy_s(url: str, *, reset: bool = False) -> float:
    base = url.removesuffix("/v1")
    busy = float(httpx.get(f"{base}/_sim/stats", timeout=5).json()["busy_s"])
    if reset:
        httpx.post(f"{base}/_sim/reset", timeout=5)
    return busy


def ledger(deps: Deps, run_id: str) -> tuple[int, Decimal]:
    with deps.session_scope() as session:
        n, cost = session.execute(
            select(func.count(LLMCall.id), func.coalesce(func.sum(LLMCall.cost_usd), 0)).where(
                LLMCall.run_id == run_id, LLMCall.status == CallStatus.OK
            )
        ).one()
    return int(n), Decimal(cost)


def run_batch(deps: Deps, route: Route, n: int) -> tuple[float, str]:
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    for i in range(n):
        ctx = CallContext(Stage.ANALYZE, None, run_id, None, call_key=f"b{i}")
        prompt = analysis_prompt(i)
        register(deps, ctx, prompt, route, request_for(route, prompt, contract_for(Stage.ANALYZE)))
    ref = route.ref
    while True:
        done = collect(deps, Stage.ANALYZE.value, ref, owner="bench")
        if done.again_s is None and done.groups == 0:
            break
        if done.again_s is not None:
            time.sleep(done.again_s)
    return time.perf_counter() - started, run_id


def run_sync(deps: Deps, route: Route, n: int) -> tuple[float, str]:
    run_id = uuid.uuid4().hex
    started = time.perf_counter()
    for i in range(n):
        ctx = CallContext(Stage.ANALYZE, None, run_id, None, call_key=f"s{i}")
        call_model(deps, ctx, analysis_prompt(i), [route], read_cache=False)
    return time.perf_counter() - started, run_id


def run(args: argparse.Namespace) -> dict[str, Any]:
    configure_logging(level=logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="leadpipe-bench-batch-"))
    redis_url = harness.fresh_redis(9)
    db_url = harness.fresh_database(workdir, "leadpipe_bench_batch")
    env = dict(os.environ, LEADPIPE_DATA_DIR=str(workdir))
    sim, url = start_selfhosted(args, env)
    try:
        deps = harness.in_process_deps(
            db_url=db_url,
            redis_url=redis_url,
            sim_url=url,
            workdir=workdir,
            routing_table=routing_table(workdir / "routing.toml", args),
            providers={"vllm": ProviderSettings(base_url=url, timeout_s=120)},
        )
        deps.cache = None  # every request is new; no response cache on either path
        route = deps.routing.chain(Stage.ANALYZE, "smb")[0]
        assert route.ref == MODEL, route
        sim_busy_s(url, reset=True)
        batch_s, batch_run = run_batch(deps, route, args.requests)
        batch_busy = sim_busy_s(url, reset=True)
        sync_s, sync_run = run_sync(deps, route, args.requests)
        sync_busy = sim_busy_s(url, reset=True)
    finally:
        harness.stop_process(sim)
    batch_rows, batch_ledger = ledger(deps, batch_run)
    sync_rows, sync_ledger = ledger(deps, sync_run)
    rate = Decimal(args.usd_per_gpu_second)
    out: dict[str, Any] = {
        "requests": args.requests,
        "endpoint": "simulator (self-hosted mode, labelled simulated)",
        "slots": args.slots,
        "latency_scale": args.latency_scale,
        "per_token_ms": args.per_token_ms,
        "usd_per_gpu_second": str(rate),
        "database": db_url.split(":", 1)[0],
        "batch_seconds": round(batch_s, 3),
        "sync_seconds": round(sync_s, 3),
        "batch_requests_per_s": round(args.requests / batch_s, 2),
        "sync_requests_per_s": round(args.requests / sync_s, 2),
        "speedup": round(sync_s / batch_s, 2),
        "batch_gpu_busy_s": round(batch_busy, 3),
        "sync_gpu_busy_s": round(sync_busy, 3),
        "batch_cost_usd": str(round(batch_ledger, 8)),
        "sync_cost_usd": str(round(Decimal(str(sync_busy)) * rate, 8)),
        "sync_ledger_cost_usd": str(round(sync_ledger, 8)),
        "batch_ledger_rows_ok": batch_rows,
        "sync_ledger_rows_ok": sync_rows,
    }
    out["floors_met"] = (
        out["speedup"] >= FLOOR_SPEEDUP
        and Decimal(out["batch_cost_usd"]) < Decimal(out["sync_cost_usd"])
        and batch_rows == sync_rows == args.requests
    )
    return out


def print_table(res: dict[str, Any]) -> None:
    for key, value in res.items():
        print(f"{key:>24}: {value}")


def main() -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--max-group", type=int, default=200)
    parser.add_argument("--latency-scale", type=float, default=0.01)
    parser.add_argument("--per-token-ms", type=float, default=20.0)
    parser.add_argument("--usd-per-gpu-second", default="0.00044")
    out = harness.run_main(parser, run, "batch.json", print_table)
    return 0 if out["floors_met"] else 1


if __name__ == "__main__":
    sys.exit(main())

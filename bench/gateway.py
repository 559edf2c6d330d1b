"""Issue 15's gateway benchmark: overhead per model call over a plain httpx POST.

Every client sends the same chat completion to the same local endpoint (the provider SIMULATOR
in its own process, zero latency), interleaved in rounds so machine noise hits all of them:

- ``plain``: one ``httpx.Client.post`` (the floor: network + server time);
- ``leadpipe`` (the figure the floors apply to): a call made the way a stage makes it on its
  first claim: ``call_model`` with ``CallContext(replay=False, pending=StageLedger())`` (route,
  budget reservation + cache peek + breaker check in one Redis round trip, the call, contract
  validation, journal write to Redis, price, metrics), then the stage's finishing transaction
  writing the pending ledger row (here one transaction per call: the bench has no stage, so
  the row pays a whole BEGIN/INSERT/COMMIT of its own, more than inside a real stage's
  finishing transaction), then the settle of the reservation after that commit (and the
  response-cache write queued with it). All of it is inside the timed region;
- ``replay``: the path of a redelivered task (``CallContext`` defaults: ``replay=True``, no
  pending ledger): a ledger lookup and a journal read first, then the same reservation, call
  and journal write, the ledger row in its own transaction, and the settle. Reported apart
  (``leadpipe_replay_overhead_ms_median``); no floor applies to it;
- ``litellm``: LiteLLM's ``Router.completion`` (only when the ``bench`` extra is installed).

The overhead of a client is its median minus the plain median. ``cache_hit`` is a first-claim
call answered from the response cache (the same prompt as call 0, a new journal key), in the
same staged shape: the peek in the reservation's round trip, the cached answer validated, its
$0 ledger row deferred to the finishing transaction (one per call, as above) and written there;
its figure is the whole time (no HTTP call to subtract). ``*_finish_ms_median`` break the
finishing part (transaction + settle) out of those two figures; they are not extra. Usage:

    python bench/gateway.py [--calls 300] [--rounds 5] [--json]

Needs LEADPIPE_TEST_REDIS_URL (and LEADPIPE_TEST_DATABASE_URL for PostgreSQL): `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness
from db.enums import Stage
from pipeline.deps import Deps
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.ledger import StageLedger
from pipeline.logs import configure_logging
from pipeline.models import LLMRequest, Prompt, Route
from pipeline.stages._common import finishing

FLOORS = {"overhead_vs_plain_ms": 1.5, "ratio_vs_litellm": 1 / 3, "cache_hit_ms": 0.5}
OPENAI_KINDS = ("openai", "openrouter", "deepseek", "vllm", "cerebras")


def classify_prompt(i: int) -> Prompt:
    """A classify prompt the simulator answers in shape; ``i`` makes it unique (a cache miss)."""
    from pipeline.llm.prompts import render

    lead = {"company": f"Acme Dental {i}", "industry": "Healthcare", "employees": 40}
    return render("classify", lead=lead)


def openai_route(deps: Deps) -> Route:
    for route in deps.routing.chain(Stage.CLASSIFY, None):
        if route.provider in OPENAI_KINDS:
            return route
    raise RuntimeError("no OpenAI-compatible model on the classify ladder")


def timed(fn: Callable[[int], Any], start: int, calls: int) -> list[float]:
    out = []
    for i in range(start, start + calls):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def litellm_client(sim_url: str, model: str) -> Callable[[int], Any] | None:
    # LiteLLM fetches a price list from the internet at import unless told to use its own copy.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        from litellm import Router
    except ImportError:
        return None
    router = Router(
        model_list=[
            {
                "model_name": "bench",
                "litellm_params": {"model": f"openai/{model}", "api_base": sim_url, "api_key": "x"},
            }
        ]
    )

    def call(i: int) -> Any:
        prompt = classify_prompt(i)
        return router.completion(
            model="bench",
            messages=[
                {"role": "system", "content": prompt.system},
                {"role": "user", "content": prompt.user},
            ],
            max_tokens=200,
            response_format={"type": "json_object"},
        )

    return call


def gateway_clients(
    deps: Deps, route: Route, sim_url: str, finish: dict[str, list[float]]
) -> tuple[dict[str, Callable[[int], Any]], Callable[[int], Any]]:
    """The plain, staged (``leadpipe``) and ``replay`` clients, and the staged cache hit; the
    staged ones append their finishing part's time to ``finish``."""
    http = httpx.Client(timeout=30)
    run_id = uuid.uuid4().hex

    def plain(i: int) -> Any:
        prompt = classify_prompt(i)
        req = LLMRequest(route.model, prompt.system, prompt.user, route.max_output_tokens)
        resp = http.post(f"{sim_url}/chat/completions", json=req.to_openai_payload())
        resp.raise_for_status()
        return resp.json()

    def staged(key: str, prompt: int, sink: list[float]) -> Any:
        """A stage's first claim: the call, then its finishing transaction and settle."""
        pending = StageLedger()
        ctx = CallContext(
            Stage.CLASSIFY, None, run_id, None, call_key=key, replay=False, pending=pending
        )
        result = call_model(deps, ctx, classify_prompt(prompt), [route])
        t0 = time.perf_counter()
        with finishing(deps, pending):  # the stage's own finishing transaction, nothing else in it
            pass
        sink.append((time.perf_counter() - t0) * 1000)
        return result

    def leadpipe(i: int) -> Any:
        return staged(f"c{i}", i, finish["leadpipe"])

    def replay(i: int) -> Any:  # a redelivered task: journal lookups, row written at once
        ctx = CallContext(Stage.CLASSIFY, None, run_id, None, call_key=f"r{i}")
        return call_model(deps, ctx, classify_prompt(i), [route])

    def cache_hit(i: int) -> Any:  # the same prompt as call 0, a new journal key
        return staged(f"hit{i}", 0, finish["cache_hit"])

    clients: dict[str, Callable[[int], Any]] = {
        "plain": plain,
        "leadpipe": leadpipe,
        "replay": replay,
    }
    return clients, cache_hit


@contextlib.contextmanager
def gateway_world(prefix: str) -> Iterator[tuple[Deps, str, str]]:
    """A worker's production ``Deps`` in this process, on a fresh database and Redis, with the
    simulator at zero latency: (deps, simulator URL, database URL)."""
    configure_logging(level=logging.WARNING)  # a log line per call would be measured too
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    redis_url = harness.fresh_redis(8)
    db_url = harness.fresh_database(workdir)
    env = dict(os.environ, LEADPIPE_DATA_DIR=str(workdir))
    sim, sim_url = harness.start_simulator(env, ["--latency-scale", "0"])
    try:
        deps = harness.in_process_deps(
            db_url=db_url, redis_url=redis_url, sim_url=sim_url, workdir=workdir
        )
        yield deps, sim_url, db_url
    finally:
        harness.stop_process(sim)


def run(args: argparse.Namespace) -> dict[str, Any]:
    with gateway_world("leadpipe-bench-gw-") as (deps, sim_url, db_url):
        route = openai_route(deps)
        finish: dict[str, list[float]] = {"leadpipe": [], "cache_hit": []}
        clients, cache_hit = gateway_clients(deps, route, sim_url, finish)
        litellm = litellm_client(sim_url, route.model)
        if litellm is not None:
            clients["litellm"] = litellm
        for name, fn in clients.items():  # warm up connections, imports and the cache entry
            timed(fn, 0 if name != "replay" else 100_000, 5)
        samples: dict[str, list[float]] = {name: [] for name in [*clients, "cache_hit"]}
        for sink in finish.values():
            sink.clear()
        per_round = max(1, args.calls // args.rounds)
        for r in range(args.rounds):
            base = 1000 + r * per_round
            for name, fn in clients.items():  # replay: other prompts, so no cache hits
                samples[name] += timed(fn, base + (100_000 if name == "replay" else 0), per_round)
            samples["cache_hit"] += timed(cache_hit, base, per_round)
    med = {name: statistics.median(v) for name, v in samples.items()}
    out: dict[str, Any] = {
        "calls_per_client": per_round * args.rounds,
        "model": route.ref,
        "database": db_url.split(":", 1)[0],
        "plain_httpx_ms_median": round(med["plain"], 3),
        "leadpipe_ms_median": round(med["leadpipe"], 3),
        "leadpipe_overhead_ms_median": round(med["leadpipe"] - med["plain"], 3),
        "leadpipe_overhead_includes": (
            "first-claim call_model (reserve+cache peek, call, validation, journal write) + "
            "the ledger row in a finishing transaction of its own + settle after commit"
        ),
        "leadpipe_replay_overhead_ms_median": round(med["replay"] - med["plain"], 3),
        "leadpipe_replay_overhead_includes": (
            "redelivered call_model (ledger lookup, journal read, reserve, call, journal write, "
            "ledger row in its own transaction, settle); no floor"
        ),
        "leadpipe_finish_ms_median": round(statistics.median(finish["leadpipe"]), 3),
        "cache_hit_overhead_ms_median": round(med["cache_hit"], 3),
        "cache_hit_includes": (
            "first-claim cache hit (peek in the reserve round trip, validation) + its $0 row "
            "in a finishing transaction of its own; whole time, no HTTP call"
        ),
        "cache_hit_finish_ms_median": round(statistics.median(finish["cache_hit"]), 3),
        "finish_includes": (
            "breakdown, already inside the figures above: the finishing transaction writing the "
            "pending row (BEGIN, INSERT, COMMIT) and the settle after it"
        ),
        "litellm_overhead_ms_median": None,
        "leadpipe_vs_litellm_overhead": None,
        "floors": FLOORS,
    }
    if "litellm" in med:
        lite = med["litellm"] - med["plain"]
        out["litellm_overhead_ms_median"] = round(lite, 3)
        out["leadpipe_vs_litellm_overhead"] = round(out["leadpipe_overhead_ms_median"] / lite, 3)
    return out


def print_table(res: dict[str, Any]) -> None:
    print(f"gateway overhead per call over plain httpx ({res['calls_per_client']} calls each)")
    print(f"  plain httpx median        {res['plain_httpx_ms_median']:8.3f} ms")
    print(
        f"  leadpipe overhead         {res['leadpipe_overhead_ms_median']:8.3f} ms"
        f"   floor <= {FLOORS['overhead_vs_plain_ms']} ms"
        "   (first claim: call + ledger row in a finishing transaction + settle)"
    )
    print(
        f"    of which finishing        {res['leadpipe_finish_ms_median']:8.3f} ms"
        "   (the row's transaction + settle: a real stage has that transaction anyway)"
    )
    print(
        f"  leadpipe replay overhead  {res['leadpipe_replay_overhead_ms_median']:8.3f} ms"
        "   no floor (redelivered task: journal lookups, row and settle at once)"
    )
    lite = res["litellm_overhead_ms_median"]
    print(
        "  LiteLLM Router overhead   "
        + (f"{lite:8.3f} ms" if lite is not None else "  (not installed: pip install .[bench])")
    )
    if res["leadpipe_vs_litellm_overhead"] is not None:
        print(
            f"  leadpipe / LiteLLM        {res['leadpipe_vs_litellm_overhead']:8.3f}"
            f"      floor <= {FLOORS['ratio_vs_litellm']:.3f}"
        )
    print(
        f"  cache hit                 {res['cache_hit_overhead_ms_median']:8.3f} ms"
        f"   floor <= {FLOORS['cache_hit_ms']} ms"
        "   (first claim: peek + validation + $0 row in a finishing transaction)"
    )
    print(f"    of which finishing        {res['cache_hit_finish_ms_median']:8.3f} ms")


def main() -> int:
    parser = harness.parser(__doc__)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    harness.run_main(parser, run, "gateway.json", print_table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

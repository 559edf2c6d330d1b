"""CPU per model call of the gateway's paths (``time.process_time``), optionally under cProfile.

The wall-clock figures of ``bench/gateway.py`` move with whatever else the machine runs; CPU
time of this process does much less. Each path is the one ``bench/gateway.py`` times, against
the same local simulator, Redis and database:

- ``plain``: one ``httpx`` POST (what every path pays for the HTTP call itself);
- ``staged``: a first-claim call with a pending ``StageLedger``, its finishing transaction and
  the settle after the commit (the floor's path);
- ``hit``: the same, answered from the response cache;
- ``replay``: a redelivered task's call (ledger lookup, journal read, row written at once).

Usage (needs LEADPIPE_TEST_REDIS_URL and LEADPIPE_TEST_DATABASE_URL, like the bench):

    python bench/profile_gateway.py staged [--calls 300] [--sort tottime] [--top 40]
    python bench/profile_gateway.py plain staged hit replay --no-profile
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.gateway import gateway_clients, gateway_world, openai_route

PATHS = ("plain", "staged", "hit", "replay")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])
    parser.add_argument("paths", nargs="+", choices=PATHS)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--no-profile", action="store_true", help="CPU per call only")
    parser.add_argument("--sort", default="cumulative")
    parser.add_argument("--top", type=int, default=45)
    args = parser.parse_args()
    with gateway_world("leadpipe-prof-gw-") as (deps, sim_url, _db_url):
        finish: dict[str, list[float]] = {"leadpipe": [], "cache_hit": []}
        clients, cache_hit = gateway_clients(deps, openai_route(deps), sim_url, finish)
        fns: dict[str, Callable[[int], Any]] = {
            "plain": clients["plain"],
            "staged": clients["leadpipe"],
            "hit": cache_hit,
            "replay": clients["replay"],
        }
        fns["staged"](0)  # the cached answer the hits are served
        for offset, name in enumerate(args.paths):
            _measure(name, fns[name], 1_000_000 * (offset + 1), args)
    return 0


def _measure(name: str, fn: Callable[[int], Any], base: int, args: argparse.Namespace) -> None:
    for i in range(base, base + 20):  # warm up connections, prepared statements, scripts
        fn(i)
    start = time.process_time()
    for i in range(base + 20, base + 20 + args.calls):
        fn(i)
    cpu_ms = (time.process_time() - start) / args.calls * 1000
    print(f"{name}: {cpu_ms:.3f} ms CPU per call ({args.calls} calls, no profiler)")
    if args.no_profile:
        return
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    for i in range(base + 500_000, base + 500_000 + args.calls):
        fn(i)
    profile.disable()
    pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    sys.exit(main())

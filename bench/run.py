"""`make bench`: every benchmark, one table each, results in bench/results/*.json.

Each script runs with its defaults except the soak, which runs 2,000 leads on 2 workers so the
whole `make bench` stays under 15 minutes; the full 10,000-lead soak is ``python bench/soak.py``.
The time each script took is printed and written to bench/results/run.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = (
    ["cost.py"],
    ["gateway.py"],
    ["pipeline.py"],
    ["enqueue.py"],
    ["batch.py"],
    ["soak.py", "--leads", "2000", "--every", "500", "--workers", "2"],
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "only", nargs="*", help="run only these scripts (e.g. cost.py batch.py); default: all"
    )
    chosen = parser.parse_args().only
    unknown = sorted(set(chosen) - {bench[0] for bench in BENCHES})
    if unknown:
        parser.error(f"unknown bench script(s): {', '.join(unknown)}")
    failed = 0
    times: dict[str, float] = {}
    started = time.monotonic()
    for bench in BENCHES:
        if chosen and bench[0] not in chosen:
            continue
        print(f"== bench/{' '.join(bench)}", flush=True)
        t0 = time.monotonic()
        failed += subprocess.call([sys.executable, str(HERE / bench[0]), *bench[1:]]) != 0
        times[" ".join(bench)] = round(time.monotonic() - t0, 1)
        print(f"   ({times[' '.join(bench)]} s)", flush=True)
    total = round(time.monotonic() - started, 1)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "run.json").write_text(
        json.dumps({"seconds": times, "total_s": total}, indent=2) + "\n"
    )
    print(f"results: {HERE / 'results'}; make bench took {total} s (floor: < 900 s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""`make bench`: every benchmark, one table each, results in bench/results/*.json."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = (["cost.py"], ["gateway.py"], ["pipeline.py"], ["enqueue.py"], ["batch.py"])


def main() -> int:
    failed = 0
    for bench in BENCHES:
        print(f"== bench/{' '.join(bench)}", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / bench[0]), *bench[1:]]) != 0
    print(f"results: {HERE / 'results'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

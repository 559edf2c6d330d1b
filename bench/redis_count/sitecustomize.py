"""bench/pipeline.py's round-trip counter for leadpipe's own Redis client (not Celery's broker).

Put on PYTHONPATH of the worker processes with LEADPIPE_BENCH_REDIS_COUNT=<dir>: every round
trip (one ``send_packed_command``: a command, a pipeline, a script call) on a connection named
``leadpipe`` (the workers' application client, ``workers/lifecycle.py``) is counted, and the
running total is written to ``<dir>/<pid>`` every 50 ms. Nothing is sent to Redis for it.
Outside the bench (the variable unset) this module does nothing.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("LEADPIPE_BENCH_REDIS_COUNT")

if _DIR:
    import threading
    import time
    from pathlib import Path
    from typing import Any

    import redis.connection

    _count = [0]
    _send = redis.connection.AbstractConnection.send_packed_command

    def _counted(self: Any, command: Any, check_health: bool = True) -> Any:
        if getattr(self, "client_name", None) == "leadpipe":
            _count[0] += 1
        return _send(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = _counted  # type: ignore[method-assign]

    def _publish() -> None:
        path = Path(_DIR) / str(os.getpid())
        tmp = path.with_suffix(".tmp")
        while True:
            tmp.write_text(str(_count[0]))
            tmp.replace(path)
            time.sleep(0.05)

    threading.Thread(target=_publish, daemon=True, name="bench-redis-count").start()

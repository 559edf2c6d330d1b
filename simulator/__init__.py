"""Offline provider SIMULATOR: an HTTP server imitating the OpenAI and Anthropic APIs.

``make demo`` and the tests point leadpipe's providers at it instead of paid models. It answers
any model name with input-dependent stage outputs, realistic token counts and latency, and
configurable failures (429/500/503/timeouts); every answer is labelled as simulated (the
``X-Leadpipe-Simulator: 1`` header and ``"leadpipe_simulator": true`` in the body). A weak-model
mode (``SimulatorConfig(quality="weak")`` or ``fault_rates``) answers like a small model:
wrong keys, prose around JSON, truncation at the token cap, missing fields, slow tails and 401s,
deterministically per request; ``GET /_sim/stats`` counts answers per model, status and fault.

    with SimulatorServer(config=SimulatorConfig(latency_scale=0)) as sim:
        ...  # point an OpenAI-compatible client at sim.url

A separate server, not domain logic: nothing here imports ``pipeline``, ``workers``, ``db``, Celery
or SQLAlchemy, and nothing in ``pipeline`` imports it.
"""

from simulator.config import SimulatorConfig
from simulator.responses import (
    STAGES,
    detect_stage,
    generate,
    parse_blocks,
    writes_generic,
)
from simulator.server import SimulatorServer, estimate_tokens

__all__ = [
    "STAGES",
    "SimulatorConfig",
    "SimulatorServer",
    "detect_stage",
    "estimate_tokens",
    "generate",
    "parse_blocks",
    "writes_generic",
]

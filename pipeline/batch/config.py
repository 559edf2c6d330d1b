"""The batch path's settings, from the routing table's ``[batch]`` section.

```toml
[batch]
threshold = 20        # more than this many pending requests of one stage and model: a group
window_s = 2.0        # how long the collector waits for a group to fill
max_group = 100       # at most this many requests per group
max_wait_s = 900      # a request waiting longer goes back to the sync path

[batch.stages.analyze]
models = ["llama8b"]  # aliases or provider:model refs that may be batched in this stage
threshold = 20        # optional, per stage

[batch.endpoints.vllm]  # one self-hosted, OpenAI-compatible endpoint per provider name
concurrency = 8         # requests in flight at once (vLLM max_num_seqs, llama.cpp --n_parallel)
usd_per_gpu_second = "0.00044"   # or leave it out: the routing table's [prices] $/token
cold_start_s = 120      # how long to wait for /v1/models to answer before falling back to sync
```

Pure: parses a dict, no I/O beyond reading the TOML file it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.llm.routing import read_routing_document

DEFAULT_THRESHOLD = 20
STAGE_KEYS = frozenset({"models", "threshold"})
ENDPOINT_KEYS = frozenset(
    {"concurrency", "usd_per_gpu_second", "cold_start_s", "health_timeout_s", "allow_free"}
)
BATCH_KEYS = frozenset(
    {"threshold", "window_s", "max_group", "max_wait_s", "lease_s", "stages", "endpoints"}
)


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One self-hosted endpoint: how many requests it serves at once and what it costs."""

    provider: str
    concurrency: int = 4
    usd_per_gpu_second: Decimal | None = None
    """The endpoint's bill per second it is busy (RunPod, a rented GPU); None: $/token."""
    cold_start_s: float = 120.0
    health_timeout_s: float = 5.0
    allow_free: bool = False
    """A price of exactly $0 is refused unless this says it is meant."""


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """Which (stage, model) pairs are batched, and how groups are formed."""

    stages: dict[str, dict[str, int]] = field(default_factory=dict)
    """stage -> {model ref -> threshold}."""
    endpoints: dict[str, EndpointConfig] = field(default_factory=dict)
    window_s: float = 2.0
    max_group: int = 100
    max_wait_s: float = 900.0
    lease_s: float = 300.0
    """A group whose collector has not finished it within this is taken over by another."""

    def threshold(self, stage: str, ref: str) -> int | None:
        """The group threshold of ``ref`` in ``stage``, or None when it is not batchable."""
        return self.stages.get(stage, {}).get(ref)

    def endpoint(self, provider: str) -> EndpointConfig | None:
        return self.endpoints.get(provider)


def load_batch_policy(path: Path | None, known: Callable[[str], bool]) -> BatchPolicy:
    """The ``[batch]`` section of the routing table (packaged default when ``path`` is None)."""
    doc, where = read_routing_document(path)
    return parse_batch_policy(doc, known, where=where)


def parse_batch_policy(
    doc: dict[str, Any], known: Callable[[str], bool], *, where: str = "routing table"
) -> BatchPolicy:
    """Validate the ``[batch]`` section of a parsed routing table.

    Args:
        doc: the whole routing-table document (``[models]`` resolves aliases).
        known: can the catalogue price this ref (``Catalog.knows``)? A batchable model with
            neither a $/token price nor a $/GPU-second price is a config error (never $0 by
            accident).

    Raises:
        ConfigError: unknown keys, a bad number, an unpriced or $0 model, naming it.
    """
    body = doc.get("batch")
    if body is None:
        return BatchPolicy()
    unknown = set(body) - BATCH_KEYS
    if unknown:
        raise ConfigError(f"{where}: [batch]: unknown key(s) {sorted(unknown)}")
    aliases: dict[str, str] = dict(doc.get("models", {}))
    default = _positive_int(body.get("threshold", DEFAULT_THRESHOLD), f"{where}: batch.threshold")
    endpoints = {
        name: _endpoint(name, spec, where) for name, spec in body.get("endpoints", {}).items()
    }
    stages: dict[str, dict[str, int]] = {}
    for stage, spec in body.get("stages", {}).items():
        bad = set(spec) - STAGE_KEYS
        if bad:
            raise ConfigError(f"{where}: batch.stages.{stage}: unknown key(s) {sorted(bad)}")
        threshold = _positive_int(
            spec.get("threshold", default), f"{where}: batch.stages.{stage}.threshold"
        )
        refs = {}
        for item in spec.get("models", []):
            ref = aliases.get(item, item)
            if ":" not in ref:
                raise ConfigError(f"{where}: batch.stages.{stage}: unknown model alias {item!r}")
            _check_price(ref, endpoints, known, doc, where)
            refs[ref] = threshold
        stages[stage] = refs
    return BatchPolicy(
        stages=stages,
        endpoints=endpoints,
        window_s=_positive_float(body.get("window_s", 2.0), f"{where}: batch.window_s"),
        max_group=_positive_int(body.get("max_group", 100), f"{where}: batch.max_group"),
        max_wait_s=_positive_float(body.get("max_wait_s", 900.0), f"{where}: batch.max_wait_s"),
        lease_s=_positive_float(body.get("lease_s", 300.0), f"{where}: batch.lease_s"),
    )


def _endpoint(name: str, spec: dict[str, Any], where: str) -> EndpointConfig:
    at = f"{where}: batch.endpoints.{name}"
    bad = set(spec) - ENDPOINT_KEYS
    if bad:
        raise ConfigError(f"{at}: unknown key(s) {sorted(bad)}")
    gpu = spec.get("usd_per_gpu_second")
    rate = _decimal(gpu, f"{at}.usd_per_gpu_second") if gpu is not None else None
    allow_free = bool(spec.get("allow_free", False))
    if rate is not None and rate == 0 and not allow_free:
        raise ConfigError(f"{at}: usd_per_gpu_second is 0 (set allow_free = true if meant)")
    return EndpointConfig(
        provider=name,
        concurrency=_positive_int(spec.get("concurrency", 4), f"{at}.concurrency"),
        usd_per_gpu_second=rate,
        cold_start_s=_positive_float(spec.get("cold_start_s", 120.0), f"{at}.cold_start_s"),
        health_timeout_s=_positive_float(
            spec.get("health_timeout_s", 5.0), f"{at}.health_timeout_s"
        ),
        allow_free=allow_free,
    )


def _check_price(
    ref: str,
    endpoints: dict[str, EndpointConfig],
    known: Callable[[str], bool],
    doc: dict[str, Any],
    where: str,
) -> None:
    """A batchable model must have a price: $/GPU-second on its endpoint or $/token."""
    provider = ref.partition(":")[0]
    endpoint = endpoints.get(provider)
    if endpoint is not None and endpoint.usd_per_gpu_second is not None:
        return
    if not known(ref):
        raise ConfigError(
            f"{where}: batch model {ref!r} has no price: give [prices] a $/token entry or "
            f"batch.endpoints.{provider}.usd_per_gpu_second"
        )
    pair = doc.get("prices", {}).get(ref)
    free = endpoint is not None and endpoint.allow_free
    zero = pair is not None and all(_decimal(p, f"{where}: prices.{ref}") == 0 for p in pair)
    if zero and not free:
        raise ConfigError(
            f"{where}: batch model {ref!r} is priced $0 (set "
            f"batch.endpoints.{provider}.allow_free = true if meant)"
        )


def _decimal(value: Any, what: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{what}: not a number: {value!r}") from None
    if result < 0 or not result.is_finite():
        raise ConfigError(f"{what}: must be >= 0, got {value!r}")
    return result


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what}: must be a whole number >= 1, got {value!r}")
    return value


def _positive_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{what}: must be a number > 0, got {value!r}")
    return float(value)

"""The routing table and the router: stage, lead tier, strategy and budget to a model chain.

Sources: seed 003 sections 3.1-3.2 (task and lead-value routing), seed 002 (strategies cost,
latency, quality, balanced, and fallback on 429/5xx/timeouts), seed 004 (prompt complexity).
Pure: no I/O beyond reading the TOML file it is given.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from importlib.resources import files
from pathlib import Path
from typing import Any

from db.enums import Stage, Tier
from pipeline.errors import ConfigError
from pipeline.llm.catalog import Catalog
from pipeline.llm.ratelimit import RateLimits, parse_rate_limits
from pipeline.models import Route

TIER_KEYS = ("default", *(t.value for t in Tier))
CHEAP_CLASSES = frozenset({"ultra-cheap", "cheap"})
MODEL_CLASSES = frozenset({"ultra-cheap", "cheap", "medium", "premium"})
# Seed 004's complexity bands, in estimated prompt tokens (chars / 4).
SIMPLE_PROMPT_TOKENS = 400
COMPLEX_PROMPT_TOKENS = 2500


class Strategy(StrEnum):
    """Seed 002's routing strategies, selectable per campaign."""

    COST = "cost"
    LATENCY = "latency"
    QUALITY = "quality"
    BALANCED = "balanced"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the router knows about a model beyond its price."""

    ref: str
    model_class: str = "cheap"
    latency_ms: int = 1000
    quality: float = 0.8


@dataclass(frozen=True, slots=True)
class StageRoutes:
    """One stage: its ladder (cheapest first) and start rung per tier."""

    max_output_tokens: int
    ladder: tuple[str, ...]
    start: dict[str, int]


@dataclass(frozen=True, slots=True)
class RouteRequest:
    """Everything the router weighs for one call."""

    tier: str | None = None
    strategy: Strategy = Strategy.BALANCED
    complexity: int = 0  # -1 simple, 0 moderate, +1 complex (seed 004)
    throttle_level: int = 0  # budget throttle 0..5 (seed 003 section 4.2)
    over_cap: bool = False  # the lead's value-derived spend cap would be passed
    min_rung: int = 0  # quality escalation: never below this rung


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """A validated routing table and the price catalogue it was checked against."""

    stages: dict[Stage, StageRoutes]
    models: dict[str, ModelInfo]
    catalog: Catalog
    limits: RateLimits = field(default_factory=RateLimits)
    """Shared rate limits per model and provider (``[rate_limits]``; none by default)."""

    def chain(self, stage: Stage, tier: str | None, *, reason: str = "") -> list[Route]:
        """The balanced chain for ``stage`` at ``tier`` (primary first, then fallbacks)."""
        return self.route(stage, RouteRequest(tier=tier), reason=reason)

    def route(self, stage: Stage, req: RouteRequest, *, reason: str = "") -> list[Route]:
        """Primary route and fallbacks for one call.

        Order of rules: strategy picks a rung; complexity moves it one rung (balanced only);
        escalation raises it to ``min_rung``; budget throttle level 3+ puts smb leads on the
        cheapest rung; a lead over its value cap goes to the cheapest rung unless escalated.
        """
        routes = self.stages[stage]
        rung, why = self._primary(routes, req)
        order = _around(rung, len(routes.ladder))
        why = reason or why
        return [
            _route(ref, routes.max_output_tokens, why if i == 0 else f"fallback:{why}")
            for i, ref in enumerate(routes.ladder[r] for r in order)
        ]

    def _primary(self, routes: StageRoutes, req: RouteRequest) -> tuple[int, str]:
        top = len(routes.ladder) - 1
        tier_key = req.tier if req.tier in routes.start else "default"
        notes = [f"{req.strategy.value}/{tier_key}"]
        if req.strategy is Strategy.COST:
            rung = 0
        elif req.strategy is Strategy.QUALITY:
            rung = top
        elif req.strategy is Strategy.LATENCY:
            rung = min(range(top + 1), key=lambda i: self.info(routes.ladder[i]).latency_ms)
        else:
            rung = min(routes.start.get(tier_key, routes.start.get("default", 0)), top)
            if req.complexity:
                rung = max(0, min(top, rung + req.complexity))
                notes.append(f"complexity{req.complexity:+d}")
        if req.throttle_level >= 3 and req.tier in (Tier.SMB.value, None) and rung > 0:
            rung = 0
            notes.append(f"throttle-L{req.throttle_level}")
        if req.over_cap and rung > 0:
            rung = 0
            notes.append("value-cap")
        if req.min_rung > rung:
            rung = min(req.min_rung, top)
            notes.append("escalated")
        return rung, ";".join(notes)

    def info(self, ref: str) -> ModelInfo:
        """Router facts about ``ref`` (defaults for models the table does not describe)."""
        return self.models.get(ref, ModelInfo(ref))

    def is_cheap(self, ref: str) -> bool:
        """Whether ``ref`` is in seed 003's ultra-cheap or cheap class."""
        return self.info(ref).model_class in CHEAP_CLASSES

    def rung(self, stage: Stage, ref: str) -> int:
        """Position of ``ref`` on the stage's ladder (-1 if absent)."""
        ladder = self.stages[stage].ladder
        return ladder.index(ref) if ref in ladder else -1

    def top_rung(self, stage: Stage) -> int:
        """Index of the strongest model of a stage."""
        return len(self.stages[stage].ladder) - 1


def complexity_shift(prompt_chars: int) -> int:
    """Seed 004's prompt complexity as a rung shift: -1 simple, 0 moderate, +1 complex."""
    tokens = prompt_chars // 4
    if tokens < SIMPLE_PROMPT_TOKENS:
        return -1
    return 1 if tokens > COMPLEX_PROMPT_TOKENS else 0


def _around(rung: int, size: int) -> list[int]:
    """``rung`` first, then the next stronger, the next cheaper, and so on outwards."""
    order = [rung]
    for step in range(1, size):
        order += [r for r in (rung + step, rung - step) if 0 <= r < size]
    return order


def _route(ref: str, max_tokens: int, reason: str) -> Route:
    provider, _, model = ref.partition(":")
    return Route(provider=provider, model=model, max_output_tokens=max_tokens, reason=reason)


def load_routing_table(path: Path | None = None) -> RoutingTable:
    """Read and validate a routing table (the packaged default when ``path`` is None).

    Raises:
        ConfigError: unknown stage, tier, alias or unpriced model, naming the culprit.
    """
    doc, where = read_routing_document(path)
    return parse_routing_table(doc, where=where)


def read_routing_document(path: Path | None) -> tuple[dict[str, Any], str]:
    """The routing table's TOML (the packaged default when ``path`` is None) and where it came
    from, for error messages. Raises ConfigError on a file that is not TOML."""
    if path is None:
        text = files("pipeline.llm").joinpath("routing.toml").read_text("utf-8")
        where = "packaged routing.toml"
    else:
        text, where = path.read_text("utf-8"), str(path)
    try:
        return tomllib.loads(text), where
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def parse_routing_table(doc: dict[str, Any], *, where: str = "routing table") -> RoutingTable:
    """Validate a parsed routing-table document."""
    aliases: dict[str, str] = dict(doc.get("models", {}))
    overrides = {
        ref: (Decimal(str(pair[0])), Decimal(str(pair[1])))
        for ref, pair in doc.get("prices", {}).items()
    }
    catalog = Catalog(overrides)
    models = _parse_models(doc.get("model_info", {}), aliases, where)
    stages: dict[Stage, StageRoutes] = {}
    for name, body in doc.get("stages", {}).items():
        try:
            stage = Stage(name)
        except ValueError:
            raise ConfigError(f"{where}: unknown stage {name!r}") from None
        stages[stage] = _parse_stage(stage, body, aliases, catalog, where)
    missing = [s.value for s in Stage if s not in stages]
    if missing:
        raise ConfigError(f"{where}: no routes for stage(s) {', '.join(missing)}")
    limits = parse_rate_limits(doc.get("rate_limits", {}), aliases, where)
    _check_limits_used(limits, stages, aliases, where)
    return RoutingTable(stages=stages, models=models, catalog=catalog, limits=limits)


def _check_limits_used(
    limits: RateLimits, stages: dict[Stage, StageRoutes], aliases: dict[str, str], where: str
) -> None:
    """A limit on a model or provider no route uses is a typo that would limit nothing."""
    refs = set(aliases.values()) | {ref for s in stages.values() for ref in s.ladder}
    for ref in limits.models:
        if ref not in refs:
            raise ConfigError(f"{where}: rate_limits.models: no route uses model {ref!r}")
    providers = {ref.partition(":")[0] for ref in refs}
    for name in limits.providers:
        if name not in providers:
            raise ConfigError(
                f"{where}: rate_limits.providers: no route uses provider {name!r}; "
                f"known: {', '.join(sorted(providers))}"
            )


def _parse_models(
    info: dict[str, Any], aliases: dict[str, str], where: str
) -> dict[str, ModelInfo]:
    models: dict[str, ModelInfo] = {}
    for alias, body in info.items():
        ref = aliases.get(alias, alias)
        if ":" not in ref:
            raise ConfigError(f"{where}: model_info: unknown model alias {alias!r}")
        model_class = str(body.get("class", "cheap"))
        if model_class not in MODEL_CLASSES:
            raise ConfigError(f"{where}: model_info.{alias}: unknown class {model_class!r}")
        models[ref] = ModelInfo(
            ref, model_class, int(body.get("latency_ms", 1000)), float(body.get("quality", 0.8))
        )
    return models


def _parse_stage(
    stage: Stage, body: dict[str, Any], aliases: dict[str, str], catalog: Catalog, where: str
) -> StageRoutes:
    name = stage.value
    unknown = set(body) - {"max_output_tokens", "ladder", "start"}
    if unknown:
        raise ConfigError(f"{where}: stage {name}: unknown key(s) {sorted(unknown)}")
    ladder = tuple(aliases.get(item, item) for item in body.get("ladder", []))
    if not ladder:
        raise ConfigError(f"{where}: stage {name}: empty ladder")
    for ref in ladder:
        if ":" not in ref:
            raise ConfigError(f"{where}: stage {name}: unknown model alias {ref!r}")
        if not catalog.knows(ref):
            raise ConfigError(f"{where}: stage {name}: no price for model {ref!r}")
    start = {str(k): int(v) for k, v in body.get("start", {"default": 0}).items()}
    for key, rung in start.items():
        if key not in TIER_KEYS:
            raise ConfigError(f"{where}: stage {name}: unknown tier {key!r}")
        if not 0 <= rung < len(ladder):
            raise ConfigError(f"{where}: stage {name}: start rung {rung} outside the ladder")
    return StageRoutes(int(body.get("max_output_tokens", 1000)), ladder, start)

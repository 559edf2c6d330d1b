"""The routing table: stage and lead tier to a chain of models (seed 003 sections 3.1-3.2).

Pure: no I/O beyond reading the TOML file it is given.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from importlib.resources import files
from pathlib import Path
from typing import Any

from db.enums import Stage, Tier
from pipeline.catalog import Catalog
from pipeline.errors import ConfigError
from pipeline.models import Route

TIER_KEYS = ("default", *(t.value for t in Tier))


@dataclass(frozen=True, slots=True)
class StageRoutes:
    """The chains of one stage: ``default`` plus optional per-tier chains."""

    max_output_tokens: int
    chains: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """A validated routing table and the price catalogue it was checked against."""

    stages: dict[Stage, StageRoutes]
    catalog: Catalog

    def chain(self, stage: Stage, tier: str | None, *, reason: str = "") -> list[Route]:
        """The primary model and fallbacks for ``stage`` at ``tier`` (default chain if none)."""
        routes = self.stages[stage]
        key = tier if tier in routes.chains else "default"
        refs = routes.chains[key]
        why = reason or f"table:{stage.value}/{key}"
        return [_route(ref, routes.max_output_tokens, why) for ref in refs]


def _route(ref: str, max_tokens: int, reason: str) -> Route:
    provider, _, model = ref.partition(":")
    return Route(provider=provider, model=model, max_output_tokens=max_tokens, reason=reason)


def load_routing_table(path: Path | None = None) -> RoutingTable:
    """Read and validate a routing table (the packaged default when ``path`` is None).

    Raises:
        ConfigError: unknown stage, tier, alias or unpriced model, naming the culprit.
    """
    if path is None:
        text = files("pipeline").joinpath("routing.toml").read_text("utf-8")
        where = "packaged routing.toml"
    else:
        text, where = path.read_text("utf-8"), str(path)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    return parse_routing_table(doc, where=where)


def parse_routing_table(doc: dict[str, Any], *, where: str = "routing table") -> RoutingTable:
    """Validate a parsed routing-table document."""
    aliases: dict[str, str] = dict(doc.get("models", {}))
    overrides = {
        ref: (Decimal(str(pair[0])), Decimal(str(pair[1])))
        for ref, pair in doc.get("prices", {}).items()
    }
    catalog = Catalog(overrides)
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
    return RoutingTable(stages=stages, catalog=catalog)


def _parse_stage(
    stage: Stage, body: dict[str, Any], aliases: dict[str, str], catalog: Catalog, where: str
) -> StageRoutes:
    chains: dict[str, tuple[str, ...]] = {}
    for key, value in body.items():
        if key == "max_output_tokens":
            continue
        if key not in TIER_KEYS:
            raise ConfigError(f"{where}: stage {stage.value}: unknown tier {key!r}")
        refs = tuple(aliases.get(item, item) for item in value)
        for ref in refs:
            if ":" not in ref:
                raise ConfigError(f"{where}: stage {stage.value}: unknown model alias {ref!r}")
            if not catalog.knows(ref):
                raise ConfigError(f"{where}: stage {stage.value}: no price for model {ref!r}")
        if not refs:
            raise ConfigError(f"{where}: stage {stage.value}/{key}: empty chain")
        chains[key] = refs
    if "default" not in chains:
        if not all(t.value in chains for t in Tier):
            raise ConfigError(f"{where}: stage {stage.value}: needs 'default' or every tier")
        chains["default"] = chains[Tier.SMB.value]
    return StageRoutes(max_output_tokens=int(body.get("max_output_tokens", 1000)), chains=chains)

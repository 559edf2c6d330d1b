from decimal import Decimal
from pathlib import Path

import pytest

from db.enums import Stage
from pipeline.errors import ConfigError
from pipeline.llm.catalog import BASELINE_REF, Catalog
from pipeline.llm.routing import (
    RouteRequest,
    Strategy,
    complexity_shift,
    load_routing_table,
    parse_routing_table,
)
from pipeline.models import Usage

TABLE = load_routing_table()
HAIKU = "anthropic:claude-3-haiku-20240307"
MINI = "openai:gpt-4o-mini"
LLAMA = "vllm:meta-llama/Llama-3.1-8B-Instruct"


def _primary(stage: Stage, **kw: object) -> str:
    return TABLE.route(stage, RouteRequest(**kw))[0].ref  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tier", "ref"),
    [
        ("smb", LLAMA),
        ("mid_market", MINI),
        ("enterprise", HAIKU),
        (None, LLAMA),
    ],
)
def test_analyze_starts_by_tier(tier: str | None, ref: str) -> None:
    assert _primary(Stage.ANALYZE, tier=tier) == ref


@pytest.mark.parametrize(
    ("strategy", "ref"),
    [
        (Strategy.COST, LLAMA),
        (Strategy.QUALITY, BASELINE_REF),
        (Strategy.LATENCY, HAIKU),
        (Strategy.BALANCED, HAIKU),
    ],
)
def test_strategies(strategy: Strategy, ref: str) -> None:
    assert _primary(Stage.ANALYZE, tier="enterprise", strategy=strategy) == ref


def test_complexity_moves_one_rung_in_balanced_only() -> None:
    assert _primary(Stage.ANALYZE, tier="enterprise", complexity=1) == "openai:gpt-4o"
    assert _primary(Stage.ANALYZE, tier="enterprise", complexity=-1) == MINI
    assert _primary(Stage.ANALYZE, tier="smb", complexity=-1) == LLAMA  # clamped at rung 0
    assert _primary(Stage.ANALYZE, tier="enterprise", strategy=Strategy.COST, complexity=1) == LLAMA


def test_complexity_bands() -> None:
    assert complexity_shift(4 * 399) == -1
    assert complexity_shift(4 * 1000) == 0
    assert complexity_shift(4 * 2501) == 1


def test_throttle_level_3_puts_smb_on_the_cheapest_rung_only() -> None:
    assert _primary(Stage.PERSONALIZE, tier="smb", throttle_level=3) == LLAMA
    assert _primary(Stage.PERSONALIZE, tier="smb", throttle_level=2) == MINI
    assert _primary(Stage.PERSONALIZE, tier="enterprise", throttle_level=3) == HAIKU


def test_value_cap_downgrades_unless_escalated() -> None:
    assert _primary(Stage.PERSONALIZE, tier="enterprise", over_cap=True) == LLAMA
    route = TABLE.route(Stage.PERSONALIZE, RouteRequest(tier="enterprise", over_cap=True))[0]
    assert "value-cap" in route.reason
    assert _primary(Stage.PERSONALIZE, tier="smb", over_cap=True, min_rung=3) == "openai:gpt-4o"


def test_escalation_floor_and_fallback_order() -> None:
    chain = TABLE.route(Stage.JUDGE, RouteRequest(min_rung=3))
    assert chain[0].ref == BASELINE_REF and "escalated" in chain[0].reason
    refs = [r.ref for r in TABLE.chain(Stage.ANALYZE, "enterprise")]
    # primary, next stronger, next cheaper, then outwards; every rung exactly once
    assert refs == [HAIKU, "openai:gpt-4o", MINI, BASELINE_REF, LLAMA]
    assert all(r.reason.startswith("fallback:") for r in TABLE.chain(Stage.ANALYZE, "smb")[1:])


def test_model_classes() -> None:
    assert TABLE.is_cheap(LLAMA) and TABLE.is_cheap(HAIKU) and TABLE.is_cheap(MINI)
    assert not TABLE.is_cheap(BASELINE_REF)
    assert not TABLE.is_cheap("openrouter:qwen/qwen-2.5-coder-32b-instruct")  # medium


def _doc(**stages: dict) -> dict:
    base = {s.value: {"ladder": ["openai:gpt-4o"]} for s in Stage}
    base.update(stages)
    return {"stages": base}


def test_unknown_stage_model_alias_tier_and_rung_are_named() -> None:
    with pytest.raises(ConfigError, match="unknown stage 'clasify'"):
        parse_routing_table(_doc(clasify={"ladder": ["openai:gpt-4o"]}))
    with pytest.raises(ConfigError, match="gpt-99-imaginary"):
        parse_routing_table(_doc(judge={"ladder": ["openai:gpt-99-imaginary"]}))
    with pytest.raises(ConfigError, match="alias 'fast'"):
        parse_routing_table(_doc(judge={"ladder": ["fast"]}))
    with pytest.raises(ConfigError, match="unknown tier 'gold'"):
        parse_routing_table(_doc(judge={"ladder": ["openai:gpt-4o"], "start": {"gold": 0}}))
    with pytest.raises(ConfigError, match="start rung 3 outside"):
        parse_routing_table(_doc(judge={"ladder": ["openai:gpt-4o"], "start": {"default": 3}}))
    with pytest.raises(ConfigError, match="no routes for stage"):
        parse_routing_table({"stages": {"judge": {"ladder": ["openai:gpt-4o"]}}})
    with pytest.raises(ConfigError, match="unknown class 'free'"):
        parse_routing_table({**_doc(), "model_info": {"openai:gpt-4o": {"class": "free"}}})


def test_edited_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    stages = "\n".join(f'[stages.{s.value}]\nladder = ["mini"]' for s in Stage)
    path.write_text(f'[models]\nmini = "openai:gpt-4o-mini"\n{stages}\n')
    assert load_routing_table(path).chain(Stage.JUDGE, "enterprise")[0].model == "gpt-4o-mini"
    path.write_text("[stages\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_routing_table(path)


def test_catalogue_prices_are_exact_decimals() -> None:
    catalog = Catalog()
    cost, version = catalog.cost(BASELINE_REF, Usage(1_000_000, 1_000_000))
    assert cost == Decimal(18)  # $3 in + $15 out per million (genai-prices)
    assert version.startswith("genai-prices")


def test_override_prices_self_hosted() -> None:
    catalog = Catalog({"vllm:llama": (Decimal("0.02"), Decimal("0.02"))})
    cost, version = catalog.cost("vllm:llama", Usage(500_000, 500_000))
    assert cost == Decimal("0.02")
    assert version == "override"
    assert not catalog.knows("vllm:other")

from decimal import Decimal
from pathlib import Path

import pytest

from db.enums import Stage
from pipeline.catalog import BASELINE_REF, Catalog
from pipeline.errors import ConfigError
from pipeline.models import Usage
from pipeline.routing import load_routing_table, parse_routing_table


def test_packaged_table_routes_by_tier() -> None:
    table = load_routing_table()
    assert table.chain(Stage.ANALYZE, "smb")[0].ref == "anthropic:claude-3-haiku-20240307"
    assert table.chain(Stage.ANALYZE, "enterprise")[0].ref == BASELINE_REF
    assert table.chain(Stage.ANALYZE, "mid_market")[0].ref == "openai:gpt-4o"
    # no tier yet (classify runs before scoring): the default chain
    assert table.chain(Stage.CLASSIFY, None)[0].ref == "deepseek:deepseek-chat"
    assert len(table.chain(Stage.JUDGE, "smb")) == 3


def test_unknown_stage_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown stage 'clasify'"):
        parse_routing_table({"stages": {"clasify": {"default": ["openai:gpt-4o"]}}})


def test_unknown_model_is_named() -> None:
    doc = {"stages": {s.value: {"default": ["openai:gpt-4o"]} for s in Stage}}
    doc["stages"]["judge"] = {"default": ["openai:gpt-99-imaginary"]}
    with pytest.raises(ConfigError, match="gpt-99-imaginary"):
        parse_routing_table(doc)


def test_unknown_alias_and_missing_stage() -> None:
    with pytest.raises(ConfigError, match="alias 'fast'"):
        parse_routing_table({"stages": {"judge": {"default": ["fast"]}}})
    with pytest.raises(ConfigError, match="no routes for stage"):
        parse_routing_table({"stages": {"judge": {"default": ["openai:gpt-4o"]}}})


def test_edited_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    stages = "\n".join(f'[stages.{s.value}]\ndefault = ["mini"]' for s in Stage)
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
    from decimal import Decimal

    catalog = Catalog({"vllm:llama": (Decimal("0.02"), Decimal("0.02"))})
    cost, version = catalog.cost("vllm:llama", Usage(500_000, 500_000))
    assert cost == Decimal("0.02")
    assert version == "override"
    assert not catalog.knows("vllm:other")

"""The routing table's ``[batch]`` section: what is batchable, and never a $0 model by accident."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from pipeline.batch.config import load_batch_policy, parse_batch_policy
from pipeline.errors import ConfigError
from pipeline.llm.routing import load_routing_table

REF = "vllm:meta-llama/Llama-3.1-8B-Instruct"


def _doc(batch: dict[str, Any], prices: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "models": {"llama8b": REF},
        "prices": {REF: ["0.02", "0.02"]} if prices is None else prices,
        "batch": batch,
    }


def _known(doc: dict[str, Any]) -> Any:
    return lambda ref: ref in doc["prices"]


def test_a_stage_lists_its_batchable_models_with_a_threshold() -> None:
    doc = _doc(
        {
            "threshold": 25,
            "window_s": 3,
            "stages": {"analyze": {"models": ["llama8b"]}, "demo": {"models": [], "threshold": 5}},
            "endpoints": {"vllm": {"concurrency": 16, "usd_per_gpu_second": "0.0005"}},
        }
    )
    policy = parse_batch_policy(doc, _known(doc))
    assert policy.threshold("analyze", REF) == 25
    assert policy.threshold("analyze", "openai:gpt-4o-mini") is None
    assert policy.threshold("personalize", REF) is None
    assert policy.window_s == 3.0
    endpoint = policy.endpoint("vllm")
    assert endpoint is not None and endpoint.concurrency == 16
    assert endpoint.usd_per_gpu_second == Decimal("0.0005")


def test_the_default_threshold_is_20_and_no_section_means_nothing_is_batched() -> None:
    doc = _doc({"stages": {"analyze": {"models": ["llama8b"]}}})
    assert parse_batch_policy(doc, _known(doc)).threshold("analyze", REF) == 20
    assert parse_batch_policy({"models": {}}, lambda _: True).stages == {}


def test_the_packaged_table_parses_and_batches_nothing_until_a_stage_opts_in() -> None:
    routing = load_routing_table()
    policy = load_batch_policy(None, routing.catalog.knows)
    assert all(not models for models in policy.stages.values())
    assert policy.endpoint("vllm") is not None


def test_a_batchable_model_without_any_price_is_a_config_error() -> None:
    doc = _doc({"stages": {"analyze": {"models": ["llama8b"]}}}, prices={})
    with pytest.raises(ConfigError, match="has no price"):
        parse_batch_policy(doc, _known(doc))


def test_a_gpu_second_price_is_enough() -> None:
    doc = _doc(
        {
            "stages": {"analyze": {"models": ["llama8b"]}},
            "endpoints": {"vllm": {"usd_per_gpu_second": "0.0004"}},
        },
        prices={},
    )
    assert parse_batch_policy(doc, _known(doc)).threshold("analyze", REF) == 20


@pytest.mark.parametrize(
    ("batch", "prices"),
    [
        ({"stages": {"analyze": {"models": ["llama8b"]}}}, {REF: ["0", "0"]}),
        (
            {
                "stages": {"analyze": {"models": ["llama8b"]}},
                "endpoints": {"vllm": {"usd_per_gpu_second": "0"}},
            },
            {},
        ),
    ],
)
def test_a_zero_price_is_refused_unless_it_is_meant(
    batch: dict[str, Any], prices: dict[str, Any]
) -> None:
    doc = _doc(batch, prices=prices)
    with pytest.raises(ConfigError, match=r"\$0|is 0"):
        parse_batch_policy(doc, _known(doc))
    batch.setdefault("endpoints", {}).setdefault("vllm", {})["allow_free"] = True
    assert parse_batch_policy(doc, _known(doc)).threshold("analyze", REF) == 20


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({"treshold": 20}, "unknown key"),
        ({"threshold": 0}, "threshold"),
        ({"window_s": -1}, "window_s"),
        ({"stages": {"analyze": {"models": ["nope"]}}}, "unknown model alias"),
        ({"stages": {"analyze": {"model": ["llama8b"]}}}, "unknown key"),
        ({"endpoints": {"vllm": {"concurrency": 0}}}, "concurrency"),
        ({"endpoints": {"vllm": {"usd_per_gpu_second": "lots"}}}, "not a number"),
    ],
)
def test_bad_settings_name_themselves(batch: dict[str, Any], match: str) -> None:
    doc = _doc(batch)
    with pytest.raises(ConfigError, match=match):
        parse_batch_policy(doc, _known(doc))

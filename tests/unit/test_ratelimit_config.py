"""Issue 14: rate limits in the routing table are validated, with the bad entry named."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from typing import Any

import pytest

from pipeline.errors import ConfigError
from pipeline.llm.ratelimit import Limit
from pipeline.llm.routing import load_routing_table, parse_routing_table

BASE = tomllib.loads(files("pipeline.llm").joinpath("routing.toml").read_text("utf-8"))
MINI = "openai:gpt-4o-mini"


def _table(limits: dict[str, Any]) -> Any:
    return parse_routing_table({**BASE, "rate_limits": limits}, where="test.toml")


def test_the_packaged_table_limits_nothing() -> None:
    limits = load_routing_table().limits
    assert not limits.models and not limits.providers and limits.max_wait_s == 10
    assert limits.scopes(MINI) == []


def test_aliases_and_providers_resolve_to_their_scopes() -> None:
    table = _table(
        {
            "max_wait_s": 2.5,
            "models": {"gpt4o_mini": {"requests_per_min": 500, "tokens_per_min": 200000}},
            "providers": {
                "openai": {"requests_per_min": 5000, "burst": 50},
                "vllm": {"max_concurrent": 4},
            },
        }
    )
    limits = table.limits
    assert limits.max_wait_s == 2.5
    assert limits.models[MINI] == Limit(requests_per_min=500, tokens_per_min=200000)
    assert [s for s, _ in limits.scopes(MINI)] == [f"model:{MINI}", "provider:openai"]
    assert [s for s, _ in limits.scopes("openai:gpt-4o")] == ["provider:openai"]
    assert limits.scopes("anthropic:claude-3-haiku-20240307") == []
    assert limits.providers["vllm"].max_concurrent == 4


def test_burst_keeps_every_minute_under_the_cap() -> None:
    # 10/min with a burst of 4: 4 at once, then one every 60/7 s: 4 + 6 more in the next 60 s
    # would be 10 within the first minute window [0, 60): ceil(60 / (60/7)) - 1 = 6.
    ((name, interval, tolerance, cost),) = Limit(requests_per_min=10, burst=4).buckets(0)
    assert name == "req" and interval == pytest.approx(60_000 * 1.01 / 7)
    assert tolerance == 4 * interval
    assert cost == 1


def test_a_call_is_never_charged_more_tokens_than_a_minute_holds() -> None:
    ((_, _, _, cost),) = Limit(tokens_per_min=1000).buckets(5000)
    assert cost == 1000


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (
            {"models": {"gpt4o_mini": {"requests_per_min": 0}}},
            "rate_limits.models.gpt4o_mini.requests_per_min: want an integer >= 1, got 0",
        ),
        (
            {"models": {"gpt4o_mini": {"requests_per_min": "500"}}},
            "gpt4o_mini.requests_per_min: want an integer",
        ),
        ({"models": {"gpt4o_mini": {"requests_per_min": 1.5}}}, "gpt4o_mini.requests_per_min"),
        (
            {"models": {"gpt4o_mini": {"rpm": 500}}},
            "rate_limits.models.gpt4o_mini: unknown key(s) ['rpm']",
        ),
        ({"models": {"gpt4o_mni": {"requests_per_min": 5}}}, "unknown model alias 'gpt4o_mni'"),
        (
            {"models": {"openai:gpt-5-nano": {"requests_per_min": 5}}},
            "no route uses model 'openai:gpt-5-nano'",
        ),
        ({"models": {"gpt4o_mini": {"burst": 5}}}, "gpt4o_mini: no limit set"),
        (
            {"models": {"gpt4o_mini": {"requests_per_min": 5, "burst": 6}}},
            "gpt4o_mini.burst: 6 > requests_per_min",
        ),
        (
            {"models": {"gpt4o_mini": {"tokens_per_min": 5, "burst": 2}}},
            "burst: only applies with requests_per_min",
        ),
        ({"models": {"gpt4o_mini": 500}}, "rate_limits.models.gpt4o_mini must be a table"),
        ({"providers": {"opnai": {"requests_per_min": 5}}}, "no route uses provider 'opnai'"),
        ({"providers": {"openai": {"max_concurrent": True}}}, "providers.openai.max_concurrent"),
        ({"max_wait_s": -1}, "rate_limits.max_wait_s"),
        ({"per_model": {}}, "rate_limits: unknown key(s) ['per_model']"),
        ({"models": []}, "rate_limits.models must be a table"),
    ],
)
def test_a_bad_entry_is_named(limits: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _table(limits)
    assert message in str(info.value) and str(info.value).startswith("test.toml: ")

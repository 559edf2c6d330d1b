"""Weak-model mode of the simulator: every fault kind over real HTTP, repeatable per request."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import typer

from simulator import SimulatorConfig, SimulatorServer, generate
from simulator.config import FAULT_KINDS, WEAK_RATES
from simulator.faults import PROSE_BEFORE, request_draw
from workers.cli.ops import _fault_rates

MODEL = "llama-3.1-8b-instruct"
CLASSIFY_KEYS = {"industry", "intent", "segment", "confidence", "signals", "reasoning"}


def _lead(i: int = 0) -> dict[str, Any]:
    return {"company": f"Northwind Freight {i}", "industry": "Logistics", "employees": 1800}


def _messages(stage: str = "classify", lead: dict[str, Any] | None = None) -> list[Any]:
    return [
        {"role": "system", "content": f"leadpipe-task: {stage}\nAnswer with one JSON object."},
        {"role": "user", "content": f"<lead_data>{json.dumps(lead or _lead())}</lead_data>"},
    ]


def _good(stage: str = "classify", lead: dict[str, Any] | None = None) -> str:
    system, user = (m["content"] for m in _messages(stage, lead))
    return generate(stage, MODEL, system, user)


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(config=SimulatorConfig(latency_scale=0, seed=7)) as server:
        yield server


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url.removesuffix("/v1"), timeout=5) as http:
        yield http


def chat(client: httpx.Client, lead: dict[str, Any] | None = None, **body: Any) -> httpx.Response:
    payload = {"model": MODEL, "messages": _messages(lead=lead), **body}
    return client.post("/v1/chat/completions", json=payload)


def _answer(resp: httpx.Response) -> tuple[int, str]:
    body = resp.json()
    if resp.status_code != 200:
        return resp.status_code, str(body["error"]["message"])
    return 200, str(body["choices"][0]["message"]["content"]).split("\n")[0]


def only(client: httpx.Client, kind: str, **extra: Any) -> None:
    patch = {"fault_rates": {kind: 1.0}, **extra}
    client.post("/_sim/config", json=patch).raise_for_status()


def content(resp: httpx.Response) -> str:
    assert resp.status_code == 200, resp.text
    return str(resp.json()["choices"][0]["message"]["content"])


def test_wrong_keys_are_valid_json_without_the_asked_for_keys(client: httpx.Client) -> None:
    only(client, "wrong_keys")
    data = json.loads(content(chat(client)))
    assert not CLASSIFY_KEYS & set(data)
    good = json.loads(_good())
    assert data["industryValue"] == good["industry"] and len(data) == len(good)
    assert client.get("/_sim/stats").json()["by_fault"] == {"wrong_keys": 1}


def test_prose_wraps_the_right_json_in_chatter_and_a_fence(client: httpx.Client) -> None:
    only(client, "prose")
    text = content(chat(client))
    assert text.startswith(PROSE_BEFORE) and text.rstrip().endswith("change anything.")
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    fenced = text.split("```json\n", 1)[1].split("\n```", 1)[0]
    assert json.loads(fenced) == json.loads(_good())


def test_truncated_stops_at_the_token_cap_with_finish_reason_length(
    client: httpx.Client,
) -> None:
    only(client, "truncated")
    resp = chat(client, max_tokens=4000)
    body = resp.json()
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 4000  # the model ran into the cap, billed so
    text = content(resp)
    assert _good().startswith(text) and len(text) < len(_good())
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    anthropic = client.post(
        "/v1/messages",
        json={"model": MODEL, "max_tokens": 30, "messages": _messages()[1:]},
    ).json()
    assert anthropic["stop_reason"] in {"max_tokens", "end_turn"}  # no stage: text left as is


def test_missing_fields_leave_some_asked_for_keys_out(client: httpx.Client) -> None:
    only(client, "missing_fields")
    data = json.loads(content(chat(client)))
    assert data and set(data) < CLASSIFY_KEYS
    assert "industry" not in data  # the first key is always dropped


def test_slow_answers_are_good_but_late(sim: SimulatorServer, client: httpx.Client) -> None:
    only(client, "slow", slow_tail_s=0.4)
    started = time.monotonic()
    assert json.loads(content(chat(client))) == json.loads(_good())
    assert time.monotonic() - started >= 0.4
    short = httpx.Client(base_url=sim.url.removesuffix("/v1"), timeout=0.1)
    with short, pytest.raises(httpx.ReadTimeout):
        chat(short)


def test_unauthorized_is_a_401_with_the_reason_in_both_apis(client: httpx.Client) -> None:
    only(client, "unauthorized")
    resp = chat(client)
    assert resp.status_code == 401
    assert "invalid API key" in resp.json()["error"]["message"]
    anthropic = client.post(
        "/v1/messages",
        json={"model": MODEL, "max_tokens": 50, "messages": _messages()[1:]},
    )
    assert anthropic.status_code == 401
    assert anthropic.json()["error"]["type"] == "authentication_error"
    stats = client.get("/_sim/stats").json()
    assert stats["by_status"] == {"401": 2} and stats["by_model_fault"][MODEL] == {
        "unauthorized": 2
    }


def test_weak_quality_spreads_over_every_request_kind_at_about_36_percent(
    client: httpx.Client,
) -> None:
    client.post("/_sim/config", json={"quality": "weak", "slow_tail_s": 0}).raise_for_status()
    codes = Counter(chat(client, lead=_lead(i)).status_code for i in range(300))
    stats = client.get("/_sim/stats").json()
    faulty = sum(stats["by_fault"].values())
    assert set(stats["by_fault"]) == set(FAULT_KINDS) - {"unauthorized"}  # a key's, not a call's
    assert 0.26 <= faulty / 300 <= 0.46, stats["by_fault"]
    assert codes[401] == 0 and codes[200] == 300
    assert sum(WEAK_RATES.values()) == pytest.approx(0.36)


def test_the_same_request_gets_the_same_answer_and_the_seed_changes_it(
    client: httpx.Client,
) -> None:
    client.post("/_sim/config", json={"quality": "weak", "slow_tail_s": 0}).raise_for_status()
    first = [_answer(chat(client, lead=_lead(i))) for i in range(40)]
    assert first == [_answer(chat(client, lead=_lead(i))) for i in range(40)]
    assert len(set(first)) > 1  # some answers went wrong, differently for different leads
    draws = [request_draw(7, MODEL, "s", str(i)) for i in range(40)]
    assert draws == [request_draw(7, MODEL, "s", str(i)) for i in range(40)]
    assert draws != [request_draw(8, MODEL, "s", str(i)) for i in range(40)]
    assert all(0 <= d < 1 for d in draws)


def test_fault_models_limits_the_faults_to_those_models(client: httpx.Client) -> None:
    only(client, "wrong_keys", fault_models=["8b"])
    assert not CLASSIFY_KEYS & set(json.loads(content(chat(client))))
    other = client.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": _messages()})
    assert set(json.loads(content(other))) == CLASSIFY_KEYS


def test_answers_are_labelled_simulated_in_header_and_body(client: httpx.Client) -> None:
    only(client, "prose")
    resp = chat(client)
    assert resp.headers["X-Leadpipe-Simulator"] == "1" and resp.json()["leadpipe_simulator"]
    anthropic = client.post(
        "/v1/messages", json={"model": MODEL, "max_tokens": 50, "messages": _messages()[1:]}
    )
    assert anthropic.json()["leadpipe_simulator"] is True


def test_invalid_fault_config_is_refused(client: httpx.Client) -> None:
    for patch in (
        {"fault_rates": {"gibberish": 0.1}},
        {"fault_rates": {"prose": 1.5}},
        {"fault_rates": {"prose": 0.6, "wrong_keys": 0.6}},
        {"quality": "terrible"},
        {"fault_models": "gpt"},
    ):
        assert client.post("/_sim/config", json=patch).status_code == 400, patch
    with pytest.raises(ValueError, match="add up to more than 1"):
        SimulatorConfig(quality="weak", fault_rates={"prose": 0.9})


def test_cli_fault_option_parsing() -> None:
    assert _fault_rates(["prose=0.2", "slow = 0.05"]) == {"prose": 0.2, "slow": 0.05}
    for bad in ("prose", "prose=lots"):
        with pytest.raises(typer.BadParameter):
            _fault_rates([bad])

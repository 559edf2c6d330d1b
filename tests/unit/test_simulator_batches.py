"""The simulator's provider batch APIs (OpenAI Files + Batches, Anthropic Message Batches)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from simulator import SimulatorConfig, SimulatorServer

MODEL = "gpt-4o-mini"


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    with SimulatorServer(config=SimulatorConfig(latency_scale=0, seed=7)) as server:
        yield server


def _line(custom_id: str, **body: Any) -> dict[str, Any]:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 40}
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {**payload, **body},
    }


def _upload(client: httpx.Client, lines: list[dict[str, Any]] | str) -> str:
    text = lines if isinstance(lines, str) else "".join(json.dumps(x) + "\n" for x in lines)
    resp = client.post(
        "/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", text.encode())}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["object"] == "file"
    return str(resp.json()["id"])


def _create(client: httpx.Client, file_id: str) -> dict[str, Any]:
    body = {
        "input_file_id": file_id,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
    }
    resp = client.post("/batches", json=body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _jsonl(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_openai_batch_runs_from_upload_to_output_file(sim: SimulatorServer) -> None:
    sim.configure(batch_delay_s=0.4, batch_error_ids=["fails"])
    client = httpx.Client(base_url=sim.url)
    batch = _create(client, _upload(client, [_line("a"), _line("b"), _line("fails-c")]))
    assert batch["status"] == "validating"
    assert batch["object"] == "batch" and batch["id"].startswith("batch_sim")
    assert client.get(f"/batches/{batch['id']}").json()["status"] in ("validating", "in_progress")
    time.sleep(0.45)
    done = client.get(f"/batches/{batch['id']}").json()
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 3, "completed": 2, "failed": 1}
    output = _jsonl(client.get(f"/files/{done['output_file_id']}/content").text)
    assert sorted(x["custom_id"] for x in output) == ["a", "b"]
    assert all(x["response"]["status_code"] == 200 for x in output)
    assert output[0]["response"]["body"]["system_fingerprint"] == "leadpipe-simulator"
    errors = _jsonl(client.get(f"/files/{done['error_file_id']}/content").text)
    assert [x["custom_id"] for x in errors] == ["fails-c"]
    assert errors[0]["response"]["status_code"] == 500
    assert "SIMULATOR" in errors[0]["response"]["body"]["error"]["message"]
    stats = client.get("/_sim/stats").json()["batches"]
    assert stats == {"batches": 1, "requests": 3, "succeeded": 2, "errored": 1}


def test_openai_batch_with_a_bad_input_file_fails(sim: SimulatorServer) -> None:
    client = httpx.Client(base_url=sim.url)
    batch = _create(client, _upload(client, "not json\n" + json.dumps(_line("a")) + "\n"))
    assert batch["status"] == "failed"
    assert batch["errors"]["data"][0]["code"] == "invalid_json_line"
    assert batch["errors"]["data"][0]["line"] == 1
    assert (
        client.post(
            "/files", data={"purpose": "fine-tune"}, files={"file": ("x", b"1")}
        ).status_code
        == 400
    )
    assert client.get("/batches/batch_nope").status_code == 404


def test_openai_batch_expires_and_cancels(sim: SimulatorServer) -> None:
    sim.configure(batch_delay_s=30, batch_expire_s=0.2)
    client = httpx.Client(base_url=sim.url)
    late = _create(client, _upload(client, [_line("a")]))
    gone = _create(client, _upload(client, [_line("b")]))
    assert client.post(f"/batches/{gone['id']}/cancel").json()["status"] == "cancelled"
    time.sleep(0.25)
    expired = client.get(f"/batches/{late['id']}").json()
    assert expired["status"] == "expired" and expired["output_file_id"] is None
    lines = _jsonl(client.get(f"/files/{expired['error_file_id']}/content").text)
    assert lines[0]["error"]["code"] == "batch_expired"


def _params(text: str = "hi") -> dict[str, Any]:
    return {
        "model": "claude-3-5-haiku",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": text}],
    }


def test_anthropic_message_batch_ends_with_results(sim: SimulatorServer) -> None:
    sim.configure(batch_delay_s=0.3, batch_error_ids=["bad"])
    client = httpx.Client(base_url=sim.url.removesuffix("/v1"))
    requests = [{"custom_id": c, "params": _params()} for c in ("one", "two", "bad-3")]
    batch = client.post("/v1/messages/batches", json={"requests": requests}).json()
    assert batch["type"] == "message_batch" and batch["processing_status"] == "in_progress"
    assert batch["request_counts"]["processing"] == 3 and batch["results_url"] is None
    assert client.get(f"/v1/messages/batches/{batch['id']}/results").status_code == 404
    time.sleep(0.35)
    ended = client.get(f"/v1/messages/batches/{batch['id']}").json()
    assert ended["processing_status"] == "ended"
    assert ended["request_counts"] == {
        "processing": 0,
        "succeeded": 2,
        "errored": 1,
        "canceled": 0,
        "expired": 0,
    }
    results = {r["custom_id"]: r["result"] for r in _jsonl(client.get(ended["results_url"]).text)}
    assert results["one"]["type"] == "succeeded"
    assert results["one"]["message"]["usage"]["output_tokens"] > 0
    assert results["bad-3"]["type"] == "errored"
    assert results["bad-3"]["error"]["error"]["type"] == "api_error"


def test_anthropic_batch_refuses_bad_custom_ids(sim: SimulatorServer) -> None:
    client = httpx.Client(base_url=sim.url)
    bad = {"requests": [{"custom_id": "has:colon", "params": _params()}]}
    assert client.post("/messages/batches", json=bad).status_code == 400
    twice = {"requests": [{"custom_id": "a", "params": _params()}] * 2}
    assert client.post("/messages/batches", json=twice).status_code == 400


def test_batch_error_rate_is_repeatable() -> None:
    config = SimulatorConfig(latency_scale=0, seed=3, batch_error_rate=0.5)
    failed: list[set[str]] = []
    for _ in range(2):
        with SimulatorServer(config=config) as server:
            client = httpx.Client(base_url=server.url)
            requests = [{"custom_id": f"r{i}", "params": _params()} for i in range(20)]
            batch = client.post("/messages/batches", json={"requests": requests}).json()
            lines = _jsonl(client.get(f"/messages/batches/{batch['id']}/results").text)
            failed.append({x["custom_id"] for x in lines if x["result"]["type"] == "errored"})
    assert failed[0] == failed[1]
    assert 3 <= len(failed[0]) <= 17

"""Provider batch backends (OpenAI Batch API, Anthropic Message Batches) on MockTransport."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from pipeline.batch.backend import BatchItem
from pipeline.errors import ProviderUnavailable
from pipeline.llm.catalog import Catalog
from pipeline.llm.providers.batch_api import (
    AnthropicBatchBackend,
    MemoryIdStore,
    OpenAIBatchBackend,
    build_batch_backends,
    custom_id,
)
from pipeline.models import LLMRequest, Usage
from pipeline.settings import ProviderSettings

KEY = "run-1:42:analyze:main"  # a journal key: has colons, so not a valid Anthropic custom_id
ITEMS = [
    BatchItem(KEY, LLMRequest(model="gpt-4o-mini", system="s", user="u1", max_tokens=50)),
    BatchItem("plain-2", LLMRequest(model="gpt-4o-mini", system="s", user="u2", max_tokens=50)),
]


def _completion(text: str, prompt: int, completion: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "model": "gpt-4o-mini",
        "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion},
    }


class FakeOpenAI:
    """Just enough of /files and /batches to drive the backend."""

    def __init__(self, status: str = "completed") -> None:
        self.status = status
        self.input: list[dict[str, Any]] = []
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.seen.append(f"{request.method} {path}")
        assert request.headers["authorization"] == "Bearer sk-test"
        if path == "/v1/files":
            body = request.content
            assert b'name="purpose"' in body and b"batch" in body
            start = body.index(b"{")
            end = body.rindex(b"}") + 1
            self.input = [json.loads(x) for x in body[start:end].decode().splitlines()]
            return httpx.Response(200, json={"id": "file-in", "object": "file"})
        if path == "/v1/batches":
            sent = json.loads(request.content)
            assert sent["input_file_id"] == "file-in"
            assert (sent["endpoint"], sent["completion_window"]) == ("/v1/chat/completions", "24h")
            return httpx.Response(200, json={"id": "batch_1", "status": "validating"})
        if path == "/v1/batches/batch_1":
            files = {"output_file_id": "file-out", "error_file_id": "file-err"}
            done = self.status == "completed"
            return httpx.Response(
                200,
                json={
                    "id": "batch_1",
                    "status": self.status,
                    "input_file_id": "file-in",
                    "metadata": {"model": "gpt-4o-mini"},
                    **(files if done else {"output_file_id": None, "error_file_id": None}),
                },
            )
        if path == "/v1/files/file-out/content":
            body = {"status_code": 200, "body": _completion('{"a": 1}', 1_000_000, 1_000_000)}
            line = {"custom_id": KEY, "response": body, "error": None}
            return httpx.Response(200, text=json.dumps(line) + "\n")
        if path == "/v1/files/file-err/content":
            body = {"status_code": 500, "body": {"error": {"message": "boom"}}}
            line = {"custom_id": "plain-2", "response": body, "error": None}
            return httpx.Response(200, text=json.dumps(line) + "\n")
        if path == "/v1/files/file-in/content":
            return httpx.Response(200, text="".join(json.dumps(x) + "\n" for x in self.input))
        return httpx.Response(404, json={"error": {"message": "no"}})


def _openai(fake: FakeOpenAI) -> OpenAIBatchBackend:
    return OpenAIBatchBackend(
        name="openai",
        base_url="https://api.test/v1",
        api_key=SecretStr("sk-test"),
        http=httpx.Client(transport=httpx.MockTransport(fake)),
        catalog=Catalog(),
        price_factor=Decimal("0.5"),
    )


def test_openai_submit_uploads_jsonl_and_creates_a_batch() -> None:
    fake = FakeOpenAI()
    backend = _openai(fake)
    assert backend.name == "openai_batch"
    assert backend.submit("gpt-4o-mini", ITEMS) == "batch_1"
    assert fake.seen == ["POST /v1/files", "POST /v1/batches"]
    assert [x["custom_id"] for x in fake.input] == [KEY, "plain-2"]
    assert fake.input[0]["url"] == "/v1/chat/completions"
    assert fake.input[0]["body"]["messages"][1]["content"] == "u1"


@pytest.mark.parametrize("status", ["validating", "in_progress", "finalizing"])
def test_openai_poll_is_none_while_the_batch_runs(status: str) -> None:
    assert _openai(FakeOpenAI(status)).poll("batch_1") is None


def test_openai_poll_prices_answers_at_the_batch_rate_and_returns_errors() -> None:
    fake = FakeOpenAI()
    backend = _openai(fake)
    backend.submit("gpt-4o-mini", ITEMS)
    results = {r.request_id: r for r in backend.poll("batch_1") or []}
    ok, failed = results[KEY], results["plain-2"]
    assert ok.error is None and ok.response is not None
    assert ok.response.usage == Usage(1_000_000, 1_000_000)
    listed = Catalog().price("openai:gpt-4o-mini").cost(ok.response.usage)
    assert ok.cost_usd == listed / 2  # genai-prices' batch rate: half of $0.15 + $0.60
    assert isinstance(ok.cost_usd, Decimal)
    assert failed.response is None and failed.error is not None and "boom" in failed.error


@pytest.mark.parametrize("status", ["expired", "failed", "cancelled"])
def test_an_unfinished_openai_batch_returns_every_request_as_an_error(status: str) -> None:
    fake = FakeOpenAI(status)
    backend = _openai(fake)
    backend.submit("gpt-4o-mini", ITEMS)
    results = backend.poll("batch_1") or []
    assert sorted(r.request_id for r in results) == sorted([KEY, "plain-2"])
    assert all(r.response is None and status in (r.error or "") for r in results)


def test_openai_http_failure_raises_provider_unavailable() -> None:
    backend = OpenAIBatchBackend(
        name="openai",
        base_url="https://api.test/v1",
        api_key=None,
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(503))),
        catalog=Catalog(),
    )
    with pytest.raises(ProviderUnavailable):
        backend.poll("batch_1")


def _message(text: str) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 1_000_000, "output_tokens": 1_000_000},
    }


def test_anthropic_round_trip_maps_hashed_custom_ids_back() -> None:
    state: dict[str, Any] = {"status": "in_progress"}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == "sk-ant"
        assert request.headers["anthropic-version"]
        path = request.url.path
        if request.method == "POST" and path == "/v1/messages/batches":
            state["requests"] = json.loads(request.content)["requests"]
            return httpx.Response(
                200, json={"id": "msgbatch_1", "processing_status": "in_progress"}
            )
        if path == "/v1/messages/batches/msgbatch_1":
            return httpx.Response(200, json={"processing_status": state["status"]})
        if path == "/v1/messages/batches/msgbatch_1/results":
            first, second = (r["custom_id"] for r in state["requests"])
            lines = [
                {"custom_id": first, "result": {"type": "succeeded", "message": _message("{}")}},
                {
                    "custom_id": second,
                    "result": {
                        "type": "errored",
                        "error": {"type": "error", "error": {"type": "api_error", "message": "x"}},
                    },
                },
            ]
            return httpx.Response(200, text="".join(json.dumps(x) + "\n" for x in lines))
        return httpx.Response(404)

    ids = MemoryIdStore()
    backend = AnthropicBatchBackend(
        name="anthropic",
        base_url="https://api.test/v1",
        api_key=SecretStr("sk-ant"),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
        catalog=Catalog(),
        ids=ids,
    )
    assert backend.submit("claude-sonnet-4-20250514", ITEMS) == "msgbatch_1"
    sent = [r["custom_id"] for r in state["requests"]]
    assert sent == [custom_id(KEY), "plain-2"] and custom_id(KEY) != KEY
    assert all(len(c) <= 64 for c in sent)
    assert state["requests"][0]["params"]["model"] == "claude-sonnet-4-20250514"
    assert backend.poll("msgbatch_1") is None
    state["status"] = "ended"
    results = {r.request_id: r for r in backend.poll("msgbatch_1") or []}
    assert set(results) == {KEY, "plain-2"}
    ok = results[KEY]
    assert ok.response is not None and ok.response.text == "{}"
    # Sonnet 4 has no batch variant in genai-prices: list price ($3 + $15) times the factor.
    assert ok.cost_usd == Decimal("9.0")
    assert results["plain-2"].error is not None and "errored" in results["plain-2"].error


def test_batch_price_prefers_the_catalogue_batch_rate_then_the_factor() -> None:
    catalog = Catalog({"vllm:llama": (Decimal("0.02"), Decimal("0.04"))})
    gpt = catalog.batch_price("openai:gpt-4o", Decimal("0.5"))
    assert gpt.version.endswith("batch") and gpt.input_per_mtok == Decimal("1.25")
    own = catalog.batch_price("vllm:llama", Decimal("0.4"))
    assert (own.input_per_mtok, own.output_per_mtok) == (Decimal("0.008"), Decimal("0.016"))


def test_build_batch_backends_uses_keys_else_the_simulator() -> None:
    http = httpx.Client()
    configured = {"openai": ProviderSettings(api_key=SecretStr("sk"))}
    built = build_batch_backends(
        configured,
        simulator_url="http://127.0.0.1:1/v1",
        http=http,
        catalog=Catalog(),
        price_factor=Decimal("0.5"),
    )
    assert built["openai"].endpoint == "https://api.openai.com/v1"
    assert built["anthropic"].endpoint == "http://127.0.0.1:1/v1"
    none = build_batch_backends(
        {}, simulator_url=None, http=http, catalog=Catalog(), price_factor=Decimal("0.5")
    )
    assert none == {}


def test_worker_deps_carry_the_batch_backends_and_the_plan() -> None:
    from pipeline.settings import Settings
    from workers.lifecycle import build_deps
    from workers.schedule import BEAT_SCHEDULE

    settings = Settings(
        simulator_url="http://127.0.0.1:9/v1",
        database_url="sqlite://",
        redis_url="redis://127.0.0.1:1/0",
        provider_batch={"turnaround_s": 600, "margin_s": 120},
    )
    deps = build_deps(settings)
    assert sorted(deps.batch_apis) == ["anthropic", "openai"]
    assert deps.batch_plan.turnaround.total_seconds() == 600
    assert deps.batch_plan.margin.total_seconds() == 120
    assert BEAT_SCHEDULE["batch-provider-poll"]["task"] == "batch.provider_poll"

"""The self-hosted backend: bounded concurrency, GPU-second or token prices, health, errors.

Unit tests: the endpoint is an ``httpx.MockTransport``.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal

import httpx
import pytest

from pipeline.batch.backend import BatchItem, BatchItemResult
from pipeline.batch.config import EndpointConfig
from pipeline.batch.selfhosted import EndpointDown, SelfHostedBackend
from pipeline.llm.catalog import Catalog
from pipeline.llm.providers.openai_compat import OpenAICompatible
from pipeline.models import LLMRequest

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
CATALOG = Catalog({f"vllm:{MODEL}": (Decimal("0.02"), Decimal("0.02"))})


class Endpoint:
    """A fake OpenAI-compatible server that records how many requests it held at once."""

    def __init__(self, *, delay_s: float = 0.02, fail: set[str] | None = None) -> None:
        self.delay_s, self.fail = delay_s, fail or set()
        self.lock = threading.Lock()
        self.in_flight = self.peak = self.calls = 0
        self.up = True

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("refused", request=request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": MODEL}]})
        body = json.loads(request.content)
        user = body["messages"][1]["content"]
        with self.lock:
            self.in_flight += 1
            self.calls += 1
            self.peak = max(self.peak, self.in_flight)
        time.sleep(self.delay_s)
        with self.lock:
            self.in_flight -= 1
        if user in self.fail:
            return httpx.Response(500, json={"error": {"message": "boom"}})
        tokens = len(user)
        return httpx.Response(
            200,
            json={
                "id": "x",
                "model": MODEL,
                "choices": [{"message": {"content": '{"ok": true}'}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": tokens, "completion_tokens": tokens},
            },
        )


def _backend(
    endpoint: Endpoint, *, concurrency: int = 3, gpu: str | None = None, cold_start_s: float = 1
) -> tuple[SelfHostedBackend, list[BatchItemResult]]:
    http = httpx.Client(transport=httpx.MockTransport(endpoint))
    provider = OpenAICompatible(
        name="vllm", base_url="http://gpu.local/v1", api_key=None, http=http
    )
    config = EndpointConfig(
        "vllm",
        concurrency=concurrency,
        usd_per_gpu_second=Decimal(gpu) if gpu else None,
        cold_start_s=cold_start_s,
    )
    seen: list[BatchItemResult] = []
    return SelfHostedBackend(provider, config, CATALOG, on_result=seen.append), seen


def _items(n: int) -> list[BatchItem]:
    return [
        BatchItem(f"r{i}", LLMRequest(MODEL, "sys", f"user {i}" + "." * i, 50)) for i in range(n)
    ]


def test_a_group_is_sent_n_at_a_time_and_answered_by_request_id() -> None:
    endpoint = Endpoint()
    backend, seen = _backend(endpoint, concurrency=3)
    handle = backend.submit(MODEL, _items(12))
    results = backend.poll(handle)
    assert results is not None and [r.request_id for r in results] == [f"r{i}" for i in range(12)]
    assert endpoint.calls == 12 and endpoint.peak == 3
    assert all(r.error is None and r.response is not None for r in results)
    assert {r.request_id for r in seen} == {r.request_id for r in results}  # journaled as it came
    assert backend.poll(handle) is None  # handed out once


def test_token_prices_come_from_the_catalogue() -> None:
    backend, _ = _backend(Endpoint())
    results = backend.poll(backend.submit(MODEL, _items(4)))
    assert results is not None
    for r in results:
        assert r.response is not None
        assert r.cost_usd == CATALOG.cost(f"vllm:{MODEL}", r.response.usage)[0] > 0


def test_a_gpu_second_price_shares_the_busy_time_out_by_tokens() -> None:
    backend, _ = _backend(Endpoint(delay_s=0.05), concurrency=2, gpu="0.001")
    handle = backend.submit(MODEL, _items(6))
    results = backend.poll(handle)
    assert results is not None
    costs = [r.cost_usd for r in results]
    assert all(c is not None and c > 0 for c in costs)
    total = sum(c for c in costs if c is not None)
    bill = Decimal(str(round(backend.busy_s[handle], 6))) * Decimal("0.001")
    assert abs(total - bill) < Decimal("1e-12")
    # a request with more tokens pays a larger share
    by_tokens = sorted(results, key=lambda r: r.response.usage.input_tokens if r.response else 0)
    assert (by_tokens[0].cost_usd or 0) < (by_tokens[-1].cost_usd or 0)


def test_a_failed_request_is_an_error_for_that_request_only() -> None:
    backend, _ = _backend(Endpoint(fail={"user 1."}))
    results = backend.poll(backend.submit(MODEL, _items(3)))
    assert results is not None
    errors = {r.request_id: r.error for r in results}
    assert errors["r0"] is None and errors["r2"] is None
    assert errors["r1"] is not None and "HTTP 500" in errors["r1"]
    assert results[1].response is None and results[1].cost_usd is None


def test_an_endpoint_that_never_comes_up_raises_endpoint_down_within_the_bound() -> None:
    endpoint = Endpoint()
    endpoint.up = False
    backend, _ = _backend(endpoint, cold_start_s=1.0)
    started = time.monotonic()
    with pytest.raises(EndpointDown):
        backend.submit(MODEL, _items(2))
    assert time.monotonic() - started < 3
    assert endpoint.calls == 0


def test_a_cold_start_is_waited_for() -> None:
    endpoint = Endpoint()
    endpoint.up = False
    threading.Timer(0.3, lambda: setattr(endpoint, "up", True)).start()
    backend, _ = _backend(endpoint, cold_start_s=5.0)
    results = backend.poll(backend.submit(MODEL, _items(2)))
    assert results is not None and all(r.error is None for r in results)

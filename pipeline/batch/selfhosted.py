"""The self-hosted backend: a group sent to one OpenAI-compatible endpoint, N requests at a time.

vLLM (``vllm serve``), RunPod serverless (``/openai/v1``) and llama.cpp's server all batch the
requests they hold at once on the GPU, so a group is sent as N concurrent requests (a thread pool
over the provider's one pooled httpx client), N being the endpoint's configured ``concurrency``
(vLLM ``max_num_seqs``, llama.cpp ``--n_parallel``). The work finishes inside ``submit``; ``poll``
returns the results.

Price: the routing table's $/token for the model, or, with ``usd_per_gpu_second``, the group's
busy time on the endpoint shared out by each request's tokens (a GPU bills by the second,
however many requests it serves at once).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import structlog

from pipeline.batch.backend import BatchItem, BatchItemResult
from pipeline.batch.config import EndpointConfig
from pipeline.errors import PipelineError
from pipeline.llm.catalog import Catalog
from pipeline.llm.providers.base import LLMProvider
from pipeline.llm.providers.selfhosted import wait_until_served
from pipeline.models import LLMResponse

log = structlog.get_logger(__name__)
GPU_SECOND_VERSION = "gpu-second"


class EndpointDown(PipelineError):
    """The self-hosted endpoint did not answer its health check within the cold-start bound."""


class SelfHostedBackend:
    """``BatchBackend`` for one self-hosted endpoint (one provider name)."""

    name = "selfhosted"

    def __init__(
        self,
        provider: LLMProvider,
        endpoint: EndpointConfig,
        catalog: Catalog,
        *,
        on_result: Callable[[BatchItemResult], None] | None = None,
    ) -> None:
        self._provider = provider
        self._endpoint = endpoint
        self._catalog = catalog
        self._on_result = on_result
        self._done: dict[str, list[BatchItemResult]] = {}
        self._lock = threading.Lock()
        self.busy_s: dict[str, float] = {}
        """Wall seconds each submitted group kept the endpoint busy (by handle)."""

    def healthy(self) -> bool:
        """Wait for the endpoint to answer ``/models``, up to its cold-start bound."""
        return wait_until_served(
            self._provider,
            cold_start_s=self._endpoint.cold_start_s,
            timeout_s=self._endpoint.health_timeout_s,
        )

    def submit(self, model: str, items: Sequence[BatchItem]) -> str:
        """Run the whole group now, ``concurrency`` requests at a time.

        Raises:
            EndpointDown: the endpoint never answered its health check.
        """
        if not self.healthy():
            raise EndpointDown(f"{self._provider.name}: /models did not answer")
        handle = uuid.uuid4().hex
        started = time.monotonic()
        answers: dict[str, tuple[LLMResponse | None, str | None]] = {}
        with ThreadPoolExecutor(max_workers=self._endpoint.concurrency) as pool:
            for item, answer in zip(items, pool.map(self._one, items), strict=True):
                answers[item.request_id] = answer
        busy = time.monotonic() - started
        self.busy_s[handle] = busy
        results = self._priced(items, answers, busy)
        with self._lock:
            self._done[handle] = results
        log.info(
            "batch_group_answered",
            provider=self._provider.name,
            model=model,
            size=len(items),
            errors=sum(r.error is not None for r in results),
            busy_s=round(busy, 3),
        )
        return handle

    def poll(self, handle: str) -> Sequence[BatchItemResult] | None:
        with self._lock:
            return self._done.pop(handle, None)

    def _one(self, item: BatchItem) -> tuple[LLMResponse | None, str | None]:
        try:
            response = self._provider.complete(item.request)
        except PipelineError as exc:
            answer: tuple[LLMResponse | None, str | None] = (None, str(exc))
        else:
            answer = (response, None)
        if self._on_result is not None and answer[0] is not None:
            # Journal each paid answer the moment it arrives (a crash mid-group loses none).
            self._on_result(BatchItemResult(item.request_id, answer[0], None))
        return answer

    def _priced(
        self,
        items: Sequence[BatchItem],
        answers: dict[str, tuple[LLMResponse | None, str | None]],
        busy_s: float,
    ) -> list[BatchItemResult]:
        rate = self._endpoint.usd_per_gpu_second
        tokens = {
            rid: r.usage.input_tokens + r.usage.output_tokens
            for rid, (r, _) in answers.items()
            if r is not None
        }
        total = sum(tokens.values())
        bill = Decimal(str(round(busy_s, 6))) * rate if rate is not None else None
        results = []
        for item in items:
            response, error = answers[item.request_id]
            cost: Decimal | None = None
            if response is not None:
                if bill is not None and total:
                    cost = bill * Decimal(tokens[item.request_id]) / Decimal(total)
                else:
                    ref = f"{self._provider.name}:{item.request.model}"
                    cost = self._catalog.cost(ref, response.usage)[0]
            results.append(BatchItemResult(item.request_id, response, error, cost))
        return results

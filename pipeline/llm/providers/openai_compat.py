"""OpenAI-compatible Chat Completions.

Serves OpenAI, OpenRouter, DeepSeek, Cerebras, vLLM, RunPod and Ollama endpoints.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import ProviderUnavailable
from pipeline.llm.providers.base import (
    SIMULATOR_HEADER,
    HTTPProvider,
    provider_errors,
)
from pipeline.models import LLMRequest, LLMResponse, Usage


class OpenAICompatible(HTTPProvider):
    """Chat Completions over a sync ``httpx.Client`` created per worker process."""

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Send one chat completion."""
        headers = {}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.get_secret_value()}"
        with provider_errors(self.name):
            resp = self._http.post(
                f"{self._url}/chat/completions",
                headers=headers,
                json=request.to_openai_payload(self._schema_mode),
                timeout=self._timeout,
            )
            resp.raise_for_status()
            body = resp.json()
        return parse_openai(body, provider=self.name, simulated=SIMULATOR_HEADER in resp.headers)


def parse_openai(body: dict[str, Any], *, provider: str, simulated: bool) -> LLMResponse:
    """Read text and usage from a Chat Completions body."""
    try:
        choice = body["choices"][0]
        usage = body["usage"]
        return LLMResponse(
            text=choice["message"]["content"] or "",
            usage=Usage(int(usage["prompt_tokens"]), int(usage["completion_tokens"])),
            provider=provider,
            model=str(body.get("model", "")),
            finish_reason=str(choice.get("finish_reason") or "stop"),
            simulated=simulated,
            raw_id=str(body.get("id", "")),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ProviderUnavailable(provider, f"malformed completion: {exc!r}") from exc

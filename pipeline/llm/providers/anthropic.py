"""Anthropic Messages API."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ProviderUnavailable
from pipeline.llm.providers.base import (
    SIMULATOR_HEADER,
    HTTPProvider,
    provider_errors,
)
from pipeline.models import LLMRequest, LLMResponse, Usage

API_VERSION = "2023-06-01"


class AnthropicMessages(HTTPProvider):
    """``POST /v1/messages`` over a sync ``httpx.Client``."""

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Send one message request."""
        headers = {"anthropic-version": API_VERSION}
        if self._key is not None:
            headers["x-api-key"] = self._key.get_secret_value()
        with provider_errors(self.name):
            resp = self._http.post(
                f"{self._url}/messages",
                headers=headers,
                json=request.to_anthropic_payload(),
                timeout=self._timeout,
            )
            resp.raise_for_status()
            body = resp.json()
        return parse_anthropic(body, provider=self.name, simulated=SIMULATOR_HEADER in resp.headers)


def parse_anthropic(body: dict[str, Any], *, provider: str, simulated: bool) -> LLMResponse:
    """Read text and usage from a Messages body."""
    try:
        text = "".join(
            block.get("text", "") for block in body["content"] if block.get("type") == "text"
        )
        usage = body["usage"]
        return LLMResponse(
            text=text,
            usage=Usage(int(usage["input_tokens"]), int(usage["output_tokens"])),
            provider=provider,
            model=str(body.get("model", "")),
            finish_reason="length" if body.get("stop_reason") == "max_tokens" else "stop",
            simulated=simulated,
            raw_id=str(body.get("id", "")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ProviderUnavailable(provider, f"malformed message: {exc!r}") from exc

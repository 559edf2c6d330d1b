"""Frozen value objects passed between the gateway, providers and stages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens billed for one call, as the provider reported them."""

    input_tokens: int
    output_tokens: int


@dataclass(frozen=True, slots=True)
class LLMRequest:
    """One chat request, provider-neutral."""

    model: str
    system: str
    user: str
    max_tokens: int
    temperature: float = 0.2
    json_mode: bool = True
    schema: dict[str, Any] | None = None
    """The answer's JSON schema (the stage contract); None asks for any JSON object."""
    schema_name: str = "answer"

    def to_openai_payload(self, schema_mode: str = "json_schema") -> dict[str, Any]:
        """The body of an OpenAI-compatible ``/chat/completions`` request.

        ``schema_mode`` is how this server takes a schema: ``json_schema`` (OpenAI, vLLM:
        ``{"type": "json_schema", ...}``), ``json_object`` (llama-cpp-python's server:
        ``{"type": "json_object", "schema": ...}``) or ``none`` (JSON mode only).
        """
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [
                {"role": "system", "content": self.system},
                {"role": "user", "content": self.user},
            ],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        if self.json_mode:
            payload["response_format"] = self._response_format(schema_mode)
        return payload

    def _response_format(self, schema_mode: str) -> dict[str, Any]:
        if self.schema is None or schema_mode == "none":
            return {"type": "json_object"}
        if schema_mode == "json_object":
            return {"type": "json_object", "schema": self.schema}
        spec = {"name": self.schema_name, "schema": self.schema, "strict": False}
        return {"type": "json_schema", "json_schema": spec}

    def to_anthropic_payload(self) -> dict[str, Any]:
        """The body of an Anthropic ``/messages`` request (the schema goes into the prompt)."""
        system = self.system
        if self.json_mode and self.schema is not None:
            schema = json.dumps(self.schema, separators=(",", ":"))
            system += f"\nAnswer with one JSON object that satisfies this JSON schema:\n{schema}"
        return {
            "model": self.model,
            "system": system,
            "messages": [{"role": "user", "content": self.user}],
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }


@dataclass(frozen=True, slots=True)
class LLMResponse:
    """What a provider answered."""

    text: str
    usage: Usage
    provider: str
    model: str
    finish_reason: str = "stop"
    simulated: bool = False
    raw_id: str = ""


@dataclass(frozen=True, slots=True)
class Route:
    """A concrete model choice: provider, model and output cap."""

    provider: str
    model: str
    max_output_tokens: int
    reason: str = ""

    @property
    def ref(self) -> str:
        """``provider:model`` as written in the routing table."""
        return f"{self.provider}:{self.model}"


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt and the hash of the templates that made it."""

    system: str
    user: str
    version: str


@dataclass(frozen=True, slots=True)
class GatewayResult:
    """The gateway's answer to a stage: parsed output plus the ledger facts."""

    text: str
    data: dict[str, Any]
    route: Route
    usage: Usage
    cost_usd_str: str
    cache_hit: bool = False
    attempts: int = 1
    fallbacks: tuple[str, ...] = field(default_factory=tuple)
    simulated: bool = False
    """Answered by the offline simulator (kept through cache hits and journal replays)."""
    repaired: bool = False
    """Valid only after the one repair call."""

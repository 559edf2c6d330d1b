"""Provider clients; the only package (with ``pipeline.web``) that imports httpx."""

from __future__ import annotations

import httpx

from pipeline.llm.providers.anthropic import AnthropicMessages
from pipeline.llm.providers.base import LLMProvider
from pipeline.llm.providers.openai_compat import OpenAICompatible
from pipeline.settings import ProviderSettings

# Well-known endpoints; any of them can be overridden with LEADPIPE_PROVIDERS__<NAME>__BASE_URL.
KNOWN: dict[str, tuple[str, str]] = {
    "openai": ("openai", "https://api.openai.com/v1"),
    "anthropic": ("anthropic", "https://api.anthropic.com/v1"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1"),
    "deepseek": ("openai", "https://api.deepseek.com/v1"),
    "cerebras": ("openai", "https://api.cerebras.ai/v1"),
    "vllm": ("openai", "http://localhost:8000/v1"),
    "runpod": ("openai", "https://api.runpod.ai/v2/ENDPOINT_ID/openai/v1"),
    "ollama": ("openai", "http://localhost:11434/v1"),
}

__all__ = ["KNOWN", "LLMProvider", "build_providers", "make_http_client"]


def make_http_client(timeout_s: float = 30.0) -> httpx.Client:
    """One pooled client per worker process (created after fork, R7)."""
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
    )


def build_providers(
    configured: dict[str, ProviderSettings],
    *,
    simulator_url: str | None,
    http: httpx.Client,
    names: set[str] | None = None,
) -> dict[str, LLMProvider]:
    """Build one client per provider name.

    A provider with an API key talks to its real endpoint. Without a key it is served by the
    offline simulator when ``simulator_url`` is set (the ledger marks those calls simulated),
    and is left out otherwise, so a routing chain naming it falls through to the next model.
    """
    result: dict[str, LLMProvider] = {}
    for name in sorted(set(KNOWN) | set(configured) | (names or set())):
        cfg = configured.get(name, ProviderSettings())
        kind, default_url = KNOWN.get(name, ("openai", ""))
        kind = cfg.kind or kind
        if cfg.api_key is not None or (name in configured and cfg.base_url and kind == "openai"):
            url = cfg.base_url or default_url
        elif simulator_url:
            url = simulator_url
        else:
            continue
        cls = AnthropicMessages if kind == "anthropic" else OpenAICompatible
        result[name] = cls(name=name, base_url=url, api_key=cfg.api_key, http=http, settings=cfg)
    return result

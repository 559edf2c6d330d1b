"""Health of a self-hosted OpenAI-compatible endpoint (vLLM, RunPod serverless, llama.cpp).

``GET {base}/models`` answers once the server has loaded its model; a cold RunPod worker or a
vLLM still loading weights refuses the connection or answers 5xx until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from pipeline.llm.providers.base import LLMProvider


def served_models(provider: LLMProvider, timeout_s: float) -> list[str] | None:
    """The model ids the provider's endpoint serves now, or None when it does not answer."""
    http = getattr(provider, "_http", None)
    url = getattr(provider, "endpoint", None)
    if not isinstance(http, httpx.Client) or not isinstance(url, str):
        return None
    key = getattr(provider, "_key", None)
    headers = {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}
    try:
        resp = http.get(f"{url}/models", headers=headers, timeout=timeout_s)
        resp.raise_for_status()
        data = resp.json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return None
    return [str(m.get("id", "")) for m in data if isinstance(m, dict)]


def wait_until_served(
    provider: LLMProvider,
    *,
    cold_start_s: float,
    timeout_s: float,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Probe until the endpoint answers (a cold start), for at most ``cold_start_s``."""
    deadline = time.monotonic() + cold_start_s
    delay = 0.5
    while True:
        if served_models(provider, timeout_s) is not None:
            return True
        if time.monotonic() + delay > deadline:
            return False
        sleep(delay)
        delay = min(delay * 2, 10.0)

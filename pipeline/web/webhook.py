"""Budget alert webhook: one JSON POST, short timeout, errors translated for Celery's retry."""

from __future__ import annotations

from typing import Any

import httpx

from pipeline.errors import ProviderRejected, ProviderUnavailable


def post_json(
    url: str,
    payload: dict[str, Any],
    *,
    timeout_s: float = 5.0,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """POST ``payload`` as JSON to ``url`` and return the status code.

    Raises:
        ProviderUnavailable: timeout, connection error, 429 or 5xx (worth retrying).
        ProviderRejected: any other 4xx (retrying will not help).
    """
    with httpx.Client(timeout=timeout_s, transport=transport) as client:
        try:
            resp = client.post(url, json=payload, headers={"User-Agent": "leadpipe-budget"})
        except httpx.TransportError as exc:
            raise ProviderUnavailable("webhook", type(exc).__name__) from exc
    if resp.status_code == 429 or resp.status_code >= 500:
        raise ProviderUnavailable("webhook", f"HTTP {resp.status_code}")
    if resp.status_code >= 400:
        raise ProviderRejected("webhook", f"HTTP {resp.status_code}")
    return resp.status_code

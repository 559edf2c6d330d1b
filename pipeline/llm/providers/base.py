"""The provider Protocol and the translation of httpx failures into pipeline errors."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol

import httpx
from pydantic import SecretStr

from pipeline.errors import ProviderRejected, ProviderUnavailable
from pipeline.logs import mask_secrets
from pipeline.models import LLMRequest, LLMResponse
from pipeline.settings import ProviderSettings

SIMULATOR_HEADER = "x-leadpipe-simulator"


class LLMProvider(Protocol):
    """Anything that can answer one chat request."""

    name: str

    def complete(self, request: LLMRequest) -> LLMResponse:
        """Send ``request`` and return the answer, or raise a ``PipelineError``."""
        ...


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


# Worth asking again later: request timeout, conflict, rate limit. Every other 4xx is permanent
# for that model (bad key, unknown model, bad request): retrying the same request cannot help.
TRANSIENT_4XX = frozenset({408, 409, 429})


def call_timeout(settings: ProviderSettings) -> httpx.Timeout:
    """Per-provider connect and read timeouts (a slow self-hosted model needs a long read)."""
    return httpx.Timeout(settings.timeout_s, connect=min(settings.connect_timeout_s, 30.0))


@contextlib.contextmanager
def provider_errors(provider: str) -> Iterator[None]:
    """Classify every httpx failure once: transient (retry later) or permanent for this model.

    A timeout leaves the ``with client.post(...)`` before the body is read; httpx then closes
    that connection rather than returning it to the pool, so a self-hosted server sees the
    client go away and can stop generating.
    """
    try:
        yield
    except httpx.HTTPStatusError as exc:
        code = exc.response.status_code
        message = f"HTTP {code}: {_error_message(exc.response)}"
        if code in TRANSIENT_4XX or code >= 500:
            raise ProviderUnavailable(
                provider, message, retry_after_s=retry_after(exc.response), status_code=code
            ) from exc
        raise ProviderRejected(provider, message, status_code=code) from exc
    except httpx.TimeoutException as exc:
        raise ProviderUnavailable(
            provider, f"timeout ({type(exc).__name__})", timeout=True
        ) from exc
    except httpx.TransportError as exc:
        raise ProviderUnavailable(provider, type(exc).__name__) from exc
    except ValueError as exc:  # undecodable JSON body
        raise ProviderUnavailable(provider, f"malformed response: {exc}") from exc


def _error_message(response: httpx.Response) -> str:
    # Some APIs echo the rejected key back; the message ends up in the ledger and the logs.
    return mask_secrets(_raw_error_message(response))


def _raw_error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message", ""))[:200]
    return str(error or "")[:200]


class HTTPProvider:
    """What every HTTP provider keeps: its name, endpoint, key, client, timeout and schema mode."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: SecretStr | None,
        http: httpx.Client,
        settings: ProviderSettings | None = None,
    ) -> None:
        self.name = name
        self._url = base_url.rstrip("/")
        self.endpoint = self._url
        self._key = api_key
        self._http = http
        cfg = settings or ProviderSettings()
        self._timeout = call_timeout(cfg)
        self._schema_mode = cfg.schema_mode

"""Provider batch APIs as :class:`pipeline.batch.backend.BatchBackend` s.

- :class:`OpenAIBatchBackend` (``openai_batch``): uploads the group as a JSONL file
  (``POST /files``, ``purpose=batch``), creates a batch on ``/v1/chat/completions`` (``POST
  /batches``, window ``24h``) and, once the batch is ``completed`` (or ``expired``, ``failed``,
  ``cancelled``), reads its output and error files.
- :class:`AnthropicBatchBackend` (``anthropic_batch``): ``POST /messages/batches`` with every
  request as ``{custom_id, params}``; once ``processing_status`` is ``ended`` it reads the JSONL
  results.

``submit`` returns the provider's batch id as the handle; ``poll`` returns None while the batch
runs and then one :class:`BatchItemResult` per request: an answer priced at the batch price
(``Catalog.batch_price``: genai-prices' batch rate, else the list price times
``price_factor``, 0.5), or an ``error`` (failed, errored, expired or cancelled request) that the
caller sends back to the sync path. HTTP failures raise the provider errors of
:mod:`pipeline.llm.providers.base` (``ProviderUnavailable`` = poll again later).

Anthropic's ``custom_id`` must match ``^[a-zA-Z0-9_-]{1,64}$``; a request id that does not (a
journal key has colons) is sent as a hash, and the hash -> request id map is kept in an
:class:`IdStore` under the handle (Redis in the workers, a dict in one process).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from pydantic import SecretStr

from pipeline.batch.backend import BatchItem, BatchItemResult
from pipeline.errors import ConfigError, ProviderUnavailable
from pipeline.llm.catalog import Catalog
from pipeline.llm.providers.anthropic import API_VERSION, parse_anthropic
from pipeline.llm.providers.base import SIMULATOR_HEADER, HTTPProvider, provider_errors
from pipeline.llm.providers.openai_compat import parse_openai
from pipeline.models import LLMResponse
from pipeline.settings import ProviderSettings

if TYPE_CHECKING:
    from redis import Redis

ENDPOINT = "/v1/chat/completions"
OPENAI_PENDING = frozenset({"validating", "in_progress", "finalizing", "cancelling"})
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ID_TTL_S = 30 * 86400  # Anthropic keeps results for 29 days


class IdStore(Protocol):
    """Where a batch's ``custom_id`` -> request id map waits for the poll (maybe another host)."""

    def save(self, handle: str, ids: Mapping[str, str]) -> None:
        """Keep ``ids`` for ``handle``."""
        ...

    def load(self, handle: str) -> dict[str, str]:
        """The map saved for ``handle`` (empty when none)."""
        ...


class MemoryIdStore:
    """One process's map (tests, a single worker)."""

    def __init__(self) -> None:
        self._maps: dict[str, dict[str, str]] = {}

    def save(self, handle: str, ids: Mapping[str, str]) -> None:
        """Keep ``ids`` for ``handle``."""
        self._maps[handle] = dict(ids)

    def load(self, handle: str) -> dict[str, str]:
        """The map saved for ``handle``."""
        return dict(self._maps.get(handle, {}))


class RedisIdStore:
    """The map in a Redis hash shared by every worker and beat (``leadpipe:batch_ids:HANDLE``)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    def save(self, handle: str, ids: Mapping[str, str]) -> None:
        """Keep ``ids`` for ``handle`` for 30 days."""
        if not ids:
            return
        key = f"leadpipe:batch_ids:{handle}"
        pipe = self._redis.pipeline()
        mapping: dict[str | bytes, str | bytes] = dict(ids.items())
        pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        pipe.expire(key, ID_TTL_S)
        pipe.execute()

    def load(self, handle: str) -> dict[str, str]:
        """The map saved for ``handle``."""
        raw: dict[Any, Any] = self._redis.hgetall(f"leadpipe:batch_ids:{handle}")
        return {_text(k): _text(v) for k, v in raw.items()}


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _BatchAPI(HTTPProvider):
    """What both batch backends share: the provider name for prices and the batch price."""

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: SecretStr | None,
        http: httpx.Client,
        catalog: Catalog,
        price_factor: Decimal = Decimal("0.5"),
        settings: ProviderSettings | None = None,
    ) -> None:
        super().__init__(
            name=name, base_url=base_url, api_key=api_key, http=http, settings=settings
        )
        self.provider = name
        self._catalog = catalog
        self._factor = price_factor

    def _priced(self, request_id: str, response: LLMResponse, model: str) -> BatchItemResult:
        try:
            price = self._catalog.batch_price(f"{self.provider}:{model}", self._factor)
        except ConfigError as exc:
            return BatchItemResult(request_id, None, f"no batch price: {exc}")
        return BatchItemResult(request_id, response, None, cost_usd=price.cost(response.usage))


class OpenAIBatchBackend(_BatchAPI):
    """OpenAI's Batch API (or any server with OpenAI's ``/v1/files`` and ``/v1/batches``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = "openai_batch"

    def _headers(self) -> dict[str, str]:
        key = self._key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}

    def submit(self, model: str, items: Sequence[BatchItem]) -> str:
        """Upload the group as a JSONL file and create a batch; return the batch id."""
        lines = []
        for item in items:
            body = item.request.to_openai_payload(self._schema_mode)
            body["model"] = model
            line = {"custom_id": item.request_id, "method": "POST", "url": ENDPOINT, "body": body}
            lines.append(json.dumps(line, separators=(",", ":")))
        content = ("\n".join(lines) + "\n").encode()
        with provider_errors(self.provider):
            upload = self._http.post(
                f"{self._url}/files",
                headers=self._headers(),
                data={"purpose": "batch"},
                files={"file": ("leadpipe-batch.jsonl", content, "application/jsonl")},
                timeout=self._timeout,
            )
            upload.raise_for_status()
            created = self._http.post(
                f"{self._url}/batches",
                headers=self._headers(),
                json={
                    "input_file_id": upload.json()["id"],
                    "endpoint": ENDPOINT,
                    "completion_window": "24h",
                    "metadata": {"source": "leadpipe", "model": model},
                },
                timeout=self._timeout,
            )
            created.raise_for_status()
            return str(created.json()["id"])

    def poll(self, handle: str) -> Sequence[BatchItemResult] | None:
        """None while the batch runs; then every request's answer or error."""
        batch, simulated = self._get_json(f"{self._url}/batches/{handle}")
        status = str(batch.get("status", ""))
        if status in OPENAI_PENDING:
            return None
        model = str((batch.get("metadata") or {}).get("model", ""))
        results: dict[str, BatchItemResult] = {}
        for line in self._lines(batch.get("output_file_id")):
            result = self._read_line(line, model, simulated)
            results[result.request_id] = result
        for line in self._lines(batch.get("error_file_id")):
            result = self._read_line(line, model, simulated)
            results.setdefault(result.request_id, result)
        reason = f"batch {handle} {status}" + _batch_errors(batch)
        for line in self._lines(batch.get("input_file_id")):
            custom = str(line.get("custom_id", ""))
            if custom and custom not in results:
                results[custom] = BatchItemResult(custom, None, f"not answered: {reason}")
        return list(results.values())

    def cancel(self, handle: str) -> None:
        """Ask the provider to stop the batch (requests already answered are still billed)."""
        with provider_errors(self.provider):
            resp = self._http.post(
                f"{self._url}/batches/{handle}/cancel",
                headers=self._headers(),
                timeout=self._timeout,
            )
            resp.raise_for_status()

    def _get_json(self, url: str) -> tuple[dict[str, Any], bool]:
        with provider_errors(self.provider):
            resp = self._http.get(url, headers=self._headers(), timeout=self._timeout)
            resp.raise_for_status()
            body = resp.json()
        if not isinstance(body, dict):
            raise ProviderUnavailable(self.provider, "malformed batch object")
        return body, SIMULATOR_HEADER in resp.headers

    def _lines(self, file_id: object) -> list[dict[str, Any]]:
        if not file_id:
            return []
        with provider_errors(self.provider):
            resp = self._http.get(
                f"{self._url}/files/{file_id}/content",
                headers=self._headers(),
                timeout=self._timeout,
            )
            resp.raise_for_status()
            return [json.loads(text) for text in resp.text.splitlines() if text.strip()]

    def _read_line(self, line: dict[str, Any], model: str, simulated: bool) -> BatchItemResult:
        custom = str(line.get("custom_id", ""))
        response = line.get("response") or {}
        if line.get("error") or response.get("status_code") != 200:
            return BatchItemResult(custom, None, _line_error(line))
        body = response.get("body") or {}
        try:
            answer = parse_openai(body, provider=self.provider, simulated=simulated)
        except ProviderUnavailable as exc:
            return BatchItemResult(custom, None, str(exc))
        return self._priced(custom, answer, model or answer.model)


class AnthropicBatchBackend(_BatchAPI):
    """Anthropic's Message Batches API."""

    def __init__(self, *, ids: IdStore | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.name = "anthropic_batch"
        self._ids: IdStore = ids or MemoryIdStore()

    def _headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if self._key is not None:
            headers["x-api-key"] = self._key.get_secret_value()
        return headers

    def submit(self, model: str, items: Sequence[BatchItem]) -> str:
        """Create a message batch; return its id."""
        ids = {custom_id(item.request_id): item.request_id for item in items}
        requests = []
        for item in items:
            params = item.request.to_anthropic_payload()
            params["model"] = model
            requests.append({"custom_id": custom_id(item.request_id), "params": params})
        with provider_errors(self.provider):
            resp = self._http.post(
                f"{self._url}/messages/batches",
                headers=self._headers(),
                json={"requests": requests},
                timeout=self._timeout,
            )
            resp.raise_for_status()
            handle = str(resp.json()["id"])
        self._ids.save(handle, {c: r for c, r in ids.items() if c != r})
        return handle

    def poll(self, handle: str) -> Sequence[BatchItemResult] | None:
        """None while the batch is processing; then every request's answer or error."""
        with provider_errors(self.provider):
            resp = self._http.get(
                f"{self._url}/messages/batches/{handle}",
                headers=self._headers(),
                timeout=self._timeout,
            )
            resp.raise_for_status()
            batch = resp.json()
            if batch.get("processing_status") != "ended":
                return None
            results = self._http.get(
                f"{self._url}/messages/batches/{handle}/results",
                headers=self._headers(),
                timeout=self._timeout,
            )
            results.raise_for_status()
        simulated = SIMULATOR_HEADER in results.headers
        ids = self._ids.load(handle)
        found = []
        for text in results.text.splitlines():
            if text.strip():
                line = json.loads(text)
                custom = str(line.get("custom_id", ""))
                found.append(
                    self._read(ids.get(custom, custom), line.get("result") or {}, simulated)
                )
        return found

    def cancel(self, handle: str) -> None:
        """Ask the provider to stop the batch (requests already answered are still billed)."""
        with provider_errors(self.provider):
            resp = self._http.post(
                f"{self._url}/messages/batches/{handle}/cancel",
                headers=self._headers(),
                timeout=self._timeout,
            )
            resp.raise_for_status()

    def _read(self, request_id: str, result: dict[str, Any], simulated: bool) -> BatchItemResult:
        kind = str(result.get("type", ""))
        if kind != "succeeded":
            error = result.get("error") or {}
            inner = error.get("error") if isinstance(error.get("error"), dict) else error
            detail = f": {inner.get('type', '')} {inner.get('message', '')}" if inner else ""
            return BatchItemResult(request_id, None, f"batch request {kind}{detail}".strip())
        message = result.get("message") or {}
        try:
            answer = parse_anthropic(message, provider=self.provider, simulated=simulated)
        except ProviderUnavailable as exc:
            return BatchItemResult(request_id, None, str(exc))
        return self._priced(request_id, answer, answer.model)


def custom_id(request_id: str) -> str:
    """The request id itself when Anthropic accepts it, else a stable hash of it."""
    if CUSTOM_ID.match(request_id):
        return request_id
    return "h" + hashlib.sha256(request_id.encode()).hexdigest()[:40]


def _line_error(line: dict[str, Any]) -> str:
    error = line.get("error")
    if isinstance(error, dict):
        return f"{error.get('code', 'error')}: {error.get('message', '')}"
    response = line.get("response") or {}
    body = response.get("body") or {}
    inner = body.get("error") if isinstance(body, dict) else None
    message = inner.get("message", "") if isinstance(inner, dict) else ""
    return f"HTTP {response.get('status_code')}: {message}"


def _batch_errors(batch: dict[str, Any]) -> str:
    errors = (batch.get("errors") or {}).get("data") or []
    return "".join(f"; {e.get('code')}: {e.get('message')}" for e in errors[:3])


def build_batch_backends(
    configured: Mapping[str, ProviderSettings],
    *,
    simulator_url: str | None,
    http: httpx.Client,
    catalog: Catalog,
    price_factor: Decimal,
    ids: IdStore | None = None,
) -> dict[str, OpenAIBatchBackend | AnthropicBatchBackend]:
    """One batch backend per provider with a batch API, by provider name (``openai``,
    ``anthropic``): the real endpoint with a key, else the simulator when one is configured,
    like :func:`pipeline.llm.providers.build_providers`."""
    result: dict[str, OpenAIBatchBackend | AnthropicBatchBackend] = {}
    defaults = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com/v1"}
    for name, default_url in defaults.items():
        cfg = configured.get(name, ProviderSettings())
        if cfg.api_key is not None:
            url = cfg.base_url or default_url
        elif simulator_url:
            url = simulator_url
        else:
            continue
        common: dict[str, Any] = {
            "name": name,
            "base_url": url,
            "api_key": cfg.api_key,
            "http": http,
            "catalog": catalog,
            "price_factor": price_factor,
            "settings": cfg,
        }
        if name == "anthropic":
            result[name] = AnthropicBatchBackend(ids=ids, **common)
        else:
            result[name] = OpenAIBatchBackend(**common)
    return result

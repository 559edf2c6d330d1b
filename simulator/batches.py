"""Simulated provider batch APIs: OpenAI Files + Batches and Anthropic Message Batches.

Shapes follow the real APIs:

- OpenAI: ``POST /v1/files`` (multipart ``purpose=batch`` + a JSONL ``file`` whose lines are
  ``{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}``), ``GET
  /v1/files/{id}`` and ``/v1/files/{id}/content``, ``POST /v1/batches`` (``input_file_id``,
  ``endpoint``, ``completion_window``), ``GET /v1/batches/{id}`` and ``POST
  /v1/batches/{id}/cancel``. A batch goes ``validating`` -> ``in_progress`` -> ``completed``
  (or ``failed`` when its input file is invalid, ``expired``, ``cancelled``); when done it has an
  ``output_file_id`` (lines ``{"id", "custom_id", "response": {"status_code", "request_id",
  "body"}, "error": null}``), an ``error_file_id`` for the requests that failed, and
  ``request_counts`` (``total``, ``completed``, ``failed``).
- Anthropic: ``POST /v1/messages/batches`` (``{"requests": [{"custom_id", "params"}]}``), ``GET
  /v1/messages/batches/{id}`` (``processing_status`` ``in_progress`` | ``canceling`` |
  ``ended``, ``request_counts`` with ``processing``, ``succeeded``, ``errored``, ``canceled``,
  ``expired``; ``results_url`` once ended), ``GET /v1/messages/batches/{id}/results`` (JSONL of
  ``{"custom_id", "result": {"type": "succeeded", "message"} | {"type": "errored", "error"} |
  {"type": "expired"} | {"type": "canceled"}}``) and ``POST .../{id}/cancel``.

A batch completes ``batch_delay_s`` seconds after it was created, when it is next read: every
request is then answered by the same generator as the synchronous endpoints (no latency sleep),
except those drawn to fail (``batch_error_rate``, ``batch_error_ids``). Every id carries ``sim``
and every answer the simulator's fingerprint, like the rest of the SIMULATOR.
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simulator.config import LABEL, SimulatorConfig

Answer = Callable[[str, object], tuple[int, dict[str, Any]]]
"""(api, request body) -> (HTTP status, answer body) of one synchronous request."""
Reply = tuple[int, dict[str, Any] | str]

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # Anthropic's rule for custom_id
_ENDPOINT = "/v1/chat/completions"
_VALIDATING_S = 0.2  # how long a new OpenAI batch reads "validating" (capped by the delay)


@dataclass(slots=True)
class _File:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass(slots=True)
class _Batch:
    """One batch of either API; ``requests`` is [(custom_id, body)]."""

    id: str
    api: str
    requests: list[tuple[str, object]]
    created: float
    delay_s: float
    expire_s: float
    input_file_id: str = ""
    endpoint: str = _ENDPOINT
    completion_window: str = "24h"
    metadata: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    state: str = "in_progress"  # in_progress | completed | failed | expired | cancelled
    ended: float | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    succeeded: int = 0
    failed: int = 0
    output_file_id: str | None = None
    error_file_id: str | None = None
    cancel_at: float | None = None


class BatchStore:
    """The files and batches of one simulator; handler threads share it under one lock."""

    def __init__(self, answer: Answer, config: Callable[[], SimulatorConfig]) -> None:
        self._answer, self._config = answer, config
        self._lock = threading.Lock()
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self._counts: Counter[str] = Counter()

    def stats(self) -> dict[str, int]:
        """Batches created and requests answered, succeeded and errored inside batches."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Forget every file and batch (``POST /_sim/reset``)."""
        with self._lock:
            self._files.clear()
            self._batches.clear()
            self._counts.clear()

    # --- routing ---------------------------------------------------------------------------

    def route(self, method: str, path: str, content_type: str, raw: bytes) -> Reply | None:
        """Answer a batch-API request, or None when ``path`` is not one of them."""
        path = path.removeprefix("/v1")
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] not in ("files", "batches", "messages"):
            return None
        if parts[0] == "messages":
            if parts[1:2] != ["batches"]:
                return None
            return self._anthropic(method, parts[2:], raw)
        if parts[0] == "files":
            return self._files_route(method, parts[1:], content_type, raw)
        return self._openai(method, parts[1:], raw)

    def _files_route(self, method: str, rest: list[str], content_type: str, raw: bytes) -> Reply:
        if method == "POST" and not rest:
            return self._upload(content_type, raw)
        if method == "GET" and rest:
            with self._lock:
                found = self._files.get(rest[0])
            if found is None:
                return 404, _openai_error("not_found_error", f"no file {rest[0]!r}")
            if rest[1:] == ["content"]:
                return 200, found.content.decode()
            if len(rest) == 1:
                return 200, found.view()
        return 404, _openai_error("not_found_error", "unknown files path")

    def _openai(self, method: str, rest: list[str], raw: bytes) -> Reply:
        if method == "POST" and not rest:
            return self._create_openai(raw)
        if not rest:
            return 404, _openai_error("not_found_error", "unknown batches path")
        with self._lock:
            batch = self._batches.get(rest[0])
            if batch is None or batch.api != "openai":
                return 404, _openai_error("not_found_error", f"no batch {rest[0]!r}")
            if method == "POST" and rest[1:] == ["cancel"]:
                self._cancel(batch)
            elif not (method == "GET" and len(rest) == 1):
                return 404, _openai_error("not_found_error", "unknown batches path")
            self._advance(batch)
            return 200, self._openai_view(batch)

    def _anthropic(self, method: str, rest: list[str], raw: bytes) -> Reply:
        if method == "POST" and not rest:
            return self._create_anthropic(raw)
        if not rest:
            return 404, _anthropic_error("not_found_error", "unknown message batches path")
        with self._lock:
            batch = self._batches.get(rest[0])
            if batch is None or batch.api != "anthropic":
                return 404, _anthropic_error("not_found_error", f"no message batch {rest[0]!r}")
            if method == "POST" and rest[1:] == ["cancel"]:
                self._cancel(batch)
            elif method == "GET" and rest[1:] == ["results"]:
                self._advance(batch)
                if batch.ended is None:
                    message = f"message batch {batch.id} has not ended yet"
                    return 404, _anthropic_error("not_found_error", message)
                return 200, "".join(json.dumps(r) + "\n" for r in batch.results)
            elif not (method == "GET" and len(rest) == 1):
                return 404, _anthropic_error("not_found_error", "unknown message batches path")
            self._advance(batch)
            return 200, self._anthropic_view(batch)

    # --- creating --------------------------------------------------------------------------

    def _upload(self, content_type: str, raw: bytes) -> Reply:
        fields = _multipart(content_type, raw)
        purpose = fields.get("purpose", (None, b""))[1].decode(errors="replace")
        filename, content = fields.get("file", (None, b""))
        if not content or filename is None:
            return 400, _openai_error("invalid_request_error", "'file' (multipart) is required")
        if purpose != "batch":
            return 400, _openai_error("invalid_request_error", "only purpose=batch is simulated")
        found = _File(f"file-sim{_hex()}", filename, purpose, content, int(time.time()))
        with self._lock:
            self._files[found.id] = found
        return 200, found.view()

    def _create_openai(self, raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return 400, _openai_error("invalid_request_error", f"malformed JSON body: {exc}")
        if not isinstance(body, dict):
            return 400, _openai_error("invalid_request_error", "body must be a JSON object")
        endpoint, window = body.get("endpoint"), body.get("completion_window")
        if endpoint != _ENDPOINT:
            return 400, _openai_error("invalid_request_error", f"endpoint must be {_ENDPOINT}")
        if window != "24h":
            return 400, _openai_error("invalid_request_error", "completion_window must be 24h")
        with self._lock:
            source = self._files.get(str(body.get("input_file_id")))
        if source is None:
            return 400, _openai_error("invalid_request_error", "input_file_id: no such file")
        requests, errors = _read_input(source.content)
        batch = self._new("openai", "batch_sim", requests)
        batch.input_file_id, batch.metadata = source.id, body.get("metadata")
        if errors:
            batch.errors, batch.state, batch.ended = errors, "failed", batch.created
        with self._lock:
            self._batches[batch.id] = batch
            view = self._openai_view(batch)
        if not errors:
            view["status"] = "validating"
        return 200, view

    def _create_anthropic(self, raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            return 400, _anthropic_error("invalid_request_error", f"malformed JSON body: {exc}")
        items = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            return 400, _anthropic_error("invalid_request_error", "'requests' must be a list")
        requests: list[tuple[str, object]] = []
        for i, item in enumerate(items):
            custom = item.get("custom_id") if isinstance(item, dict) else None
            if not isinstance(custom, str) or not _CUSTOM_ID.match(custom):
                message = f"requests.{i}.custom_id must match ^[a-zA-Z0-9_-]{{1,64}}$"
                return 400, _anthropic_error("invalid_request_error", message)
            requests.append((custom, item.get("params")))
        if len({c for c, _ in requests}) != len(requests):
            return 400, _anthropic_error("invalid_request_error", "custom_id values must be unique")
        batch = self._new("anthropic", "msgbatch_sim", requests)
        with self._lock:
            self._batches[batch.id] = batch
            return 200, self._anthropic_view(batch)

    def _new(self, api: str, prefix: str, requests: list[tuple[str, object]]) -> _Batch:
        config = self._config()
        with self._lock:
            self._counts["batches"] += 1
        return _Batch(
            id=f"{prefix}_{_hex()}",
            api=api,
            requests=requests,
            created=time.time(),
            delay_s=config.batch_delay_s,
            expire_s=config.batch_expire_s,
        )

    # --- progress (called with the lock held) ------------------------------------------------

    def _cancel(self, batch: _Batch) -> None:
        if batch.ended is None and batch.cancel_at is None:
            batch.cancel_at = time.time()

    def _advance(self, batch: _Batch) -> None:
        if batch.ended is not None:
            return
        now = time.time()
        elapsed = now - batch.created
        if batch.cancel_at is not None:
            self._finish(batch, "cancelled", answered=False)
        elif batch.expire_s and elapsed >= batch.expire_s and batch.delay_s > batch.expire_s:
            self._finish(batch, "expired", answered=False)
        elif elapsed >= batch.delay_s:
            self._finish(batch, "completed", answered=True)

    def _finish(self, batch: _Batch, state: str, *, answered: bool) -> None:
        config = self._config()
        batch.state, batch.ended = state, time.time()
        outputs: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for custom, body in batch.requests:
            if not answered:
                line = _unanswered(batch.api, custom, "expired" if state == "expired" else state)
                errors.append(line)
                continue
            status, answer = self._one(batch.api, custom, body, config)
            ok = status == 200
            self._counts["requests"] += 1
            self._counts["succeeded" if ok else "errored"] += 1
            line = _result_line(batch.api, custom, status, answer)
            (outputs if ok else errors).append(line)
        batch.succeeded, batch.failed = len(outputs), len(errors)
        if batch.api == "anthropic":
            batch.results = outputs + errors
            return
        if outputs:
            batch.output_file_id = self._store_lines(f"{batch.id}_output.jsonl", outputs)
        if errors:
            batch.error_file_id = self._store_lines(f"{batch.id}_error.jsonl", errors)

    def _one(
        self, api: str, custom: str, body: object, config: SimulatorConfig
    ) -> tuple[int, dict[str, Any]]:
        if _drawn_to_fail(custom, config):
            message = f"simulated per-request failure of {custom!r}"
            error = _anthropic_error if api == "anthropic" else _openai_error
            return 500, error("api_error" if api == "anthropic" else "server_error", message)
        return self._answer(api, body)

    def _store_lines(self, name: str, lines: list[dict[str, Any]]) -> str:
        content = "".join(json.dumps(line) + "\n" for line in lines).encode()
        stored = _File(f"file-sim{_hex()}", name, "batch_output", content, int(time.time()))
        self._files[stored.id] = stored
        return stored.id

    # --- views (lock held) -------------------------------------------------------------------

    def _openai_view(self, batch: _Batch) -> dict[str, Any]:
        created = int(batch.created)
        ended = int(batch.ended) if batch.ended is not None else None
        elapsed = time.time() - batch.created
        status = batch.state
        if status == "in_progress" and elapsed < min(_VALIDATING_S, batch.delay_s):
            status = "validating"
        elif status == "in_progress" and batch.cancel_at is not None:
            status = "cancelling"
        total = len(batch.requests)
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": created,
            "in_progress_at": created if batch.state != "failed" else None,
            "expires_at": created + 86400,
            "finalizing_at": ended if batch.state == "completed" else None,
            "completed_at": ended if batch.state == "completed" else None,
            "failed_at": ended if batch.state == "failed" else None,
            "expired_at": ended if batch.state == "expired" else None,
            "cancelling_at": int(batch.cancel_at) if batch.cancel_at is not None else None,
            "cancelled_at": ended if batch.state == "cancelled" else None,
            "request_counts": {
                "total": total if batch.state != "failed" else 0,
                "completed": batch.succeeded,
                "failed": batch.failed if batch.state != "failed" else 0,
            },
            "metadata": batch.metadata,
            "leadpipe_simulator": True,
        }

    def _anthropic_view(self, batch: _Batch) -> dict[str, Any]:
        ended = batch.ended is not None
        kinds = Counter(str(r["result"]["type"]) for r in batch.results)
        status = "ended" if ended else "canceling" if batch.cancel_at else "in_progress"
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": {
                "processing": 0 if ended else len(batch.requests),
                "succeeded": kinds["succeeded"],
                "errored": kinds["errored"],
                "canceled": kinds["canceled"],
                "expired": kinds["expired"],
            },
            "ended_at": _rfc3339(batch.ended) if batch.ended is not None else None,
            "created_at": _rfc3339(batch.created),
            "expires_at": _rfc3339(batch.created + 86400),
            "archived_at": None,
            "cancel_initiated_at": _rfc3339(batch.cancel_at) if batch.cancel_at else None,
            "results_url": f"/v1/messages/batches/{batch.id}/results" if ended else None,
            "leadpipe_simulator": True,
        }


def _read_input(content: bytes) -> tuple[list[tuple[str, object]], list[dict[str, Any]]]:
    """The (custom_id, body) of every line, and the validation errors (OpenAI's ``errors``)."""
    requests: list[tuple[str, object]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, text in enumerate(content.decode(errors="replace").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            errors.append(_line_error("invalid_json_line", "line is not JSON", number))
            continue
        custom = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom, str) or not custom:
            errors.append(_line_error("missing_required_parameter", "custom_id", number))
        elif custom in seen:
            errors.append(_line_error("duplicate_custom_id", f"duplicate {custom!r}", number))
        elif line.get("url") != _ENDPOINT or line.get("method") != "POST":
            errors.append(_line_error("invalid_url", f"only POST {_ENDPOINT}", number))
        else:
            seen.add(custom)
            requests.append((custom, line.get("body")))
    if not requests and not errors:
        errors.append(_line_error("empty_file", "the input file has no requests", None))
    return requests, errors


def _line_error(code: str, message: str, line: int | None) -> dict[str, Any]:
    return {"code": code, "message": f"{message} ({LABEL})", "param": None, "line": line}


def _result_line(api: str, custom: str, status: int, answer: dict[str, Any]) -> dict[str, Any]:
    if api == "anthropic":
        if status == 200:
            return {"custom_id": custom, "result": {"type": "succeeded", "message": answer}}
        return {"custom_id": custom, "result": {"type": "errored", "error": answer}}
    response = {"status_code": status, "request_id": f"req_sim{_hex()}", "body": answer}
    return {
        "id": f"batch_req_sim{_hex()}",
        "custom_id": custom,
        "response": response,
        "error": None,
    }


def _unanswered(api: str, custom: str, kind: str) -> dict[str, Any]:
    if api == "anthropic":
        return {"custom_id": custom, "result": {"type": "canceled" if kind != "expired" else kind}}
    code = "batch_expired" if kind == "expired" else "batch_cancelled"
    error = {"code": code, "message": f"request not processed: batch {kind} ({LABEL})"}
    return {"id": f"batch_req_sim{_hex()}", "custom_id": custom, "response": None, "error": error}


def _drawn_to_fail(custom: str, config: SimulatorConfig) -> bool:
    if any(part and part in custom for part in config.batch_error_ids):
        return True
    if config.batch_error_rate <= 0:
        return False
    digest = hashlib.sha256(f"{config.seed}:{custom}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < config.batch_error_rate


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a ``multipart/form-data`` body: name -> (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    fields: dict[str, tuple[str | None, bytes]] = {}
    if not message.is_multipart():
        return fields
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    return fields


def _openai_error(error_type: str, message: str) -> dict[str, Any]:
    return {"error": {"message": f"{message} ({LABEL})", "type": error_type}}


def _anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": f"{message} ({LABEL})"}}


def _rfc3339(stamp: float) -> str:
    return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat().replace("+00:00", "Z")


def _hex() -> str:
    return uuid.uuid4().hex[:24]

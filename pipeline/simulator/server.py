"""The leadpipe provider SIMULATOR: an offline HTTP server that imitates real model APIs.

It speaks the OpenAI Chat Completions API (``POST /v1/chat/completions``) and the Anthropic
Messages API (``POST /v1/messages``), answers any model name, and returns the stage outputs of
:mod:`pipeline.simulator.responses` with realistic token counts, latency and injected failures.
Every answer carries ``X-Leadpipe-Simulator: 1`` so nobody mistakes it for a real provider.

Control endpoints (for tests and demos): ``GET|POST /_sim/config``, ``GET /_sim/stats``,
``POST /_sim/reset``; plus ``GET /v1/models``, ``GET /health`` and a plain-text banner at ``/``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from pipeline.simulator.config import SimulatorConfig
from pipeline.simulator.responses import detect_stage, estimate_tokens, generate

logger = logging.getLogger("leadpipe.simulator")

LABEL = "leadpipe provider SIMULATOR"
FINGERPRINT = "leadpipe-simulator"
MODELS = (
    "claude-sonnet-4", "claude-3-5-haiku", "gpt-4o", "gpt-4o-mini", "deepseek-chat",
    "qwen-2.5-72b-instruct", "qwen-2.5-coder-32b-instruct", "llama-3.1-8b-instruct",
)  # fmt: skip
BANNER = (
    f"{LABEL}\n\nThis is an offline simulator of the OpenAI Chat Completions and Anthropic "
    "Messages APIs.\nNo real model is called: outputs are synthetic, generated from the request "
    "data, with\nsimulated token counts, latency and failures.\n\nPOST /v1/chat/completions  "
    "POST /v1/messages  GET /v1/models  GET /health\nGET|POST /_sim/config  GET /_sim/stats  "
    "POST /_sim/reset\n"
)
_MAX_BODY = 16 * 1024 * 1024
# Injected failures: kind -> (HTTP status, OpenAI error type, Anthropic error type).
_FAILURES = {
    "rate_limit": (429, "rate_limit_error", "rate_limit_error"),
    "server_error": (500, "server_error", "api_error"),
    "unavailable": (503, "server_error", "overloaded_error"),
    "timeout": (504, "server_error", "api_error"),
}


class RequestError(ValueError):
    """A request the simulator refuses with HTTP 400."""


@dataclass(frozen=True, slots=True)
class Completion:
    """One parsed completion request, whichever API it came through."""

    api: str  # "openai" or "anthropic"
    model: str
    system: str
    user: str
    prompt_tokens: int
    max_tokens: int | None


def parse_completion(api: str, body: object) -> Completion:
    """Validate a decoded request body and extract what the generator needs.

    Prompt tokens are estimated as ``ceil(chars / 4)`` of every message's text (the Anthropic
    ``system`` field counts as one message) plus 4 tokens of framing per message.

    Args:
        api: "openai" or "anthropic".
        body: The decoded JSON body.

    Returns:
        The parsed request.

    Raises:
        RequestError: the body is not an object, or ``model``/``messages``/``max_tokens`` are
            missing or of the wrong type.
    """
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model.strip():
        raise RequestError("'model' is required and must be a non-empty string")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' is required and must be a non-empty list")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
    ):
        raise RequestError("'max_tokens' must be a positive integer")
    texts: list[tuple[str, str]] = []
    if api == "anthropic" and body.get("system"):
        texts.append(("system", _content_text(body["system"])))
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError("every message must be an object with a 'role'")
        texts.append((message["role"], _content_text(message.get("content"))))
    system = "\n".join(text for role, text in texts if role in ("system", "developer"))
    user = "\n".join(text for role, text in texts if role == "user")
    prompt_tokens = sum(estimate_tokens(text) + 4 for _, text in texts)
    return Completion(api, model, system, user, prompt_tokens, max_tokens)


def _content_text(content: object) -> str:
    # Content is a string or a list of blocks; only text blocks carry prompt text.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


class _State:
    """Config, RNG and stats shared by all handler threads; every access holds the lock."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.lock = threading.Lock()
        self.config = config
        self.rng = random.Random(config.seed)
        self.stopping = threading.Event()
        self.stats: dict[str, Counter[str]] = {}
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.stats = {k: Counter() for k in ("by_model", "by_status", "by_stage", "tokens")}
            self.by_model_status: dict[str, Counter[str]] = {}

    def update(self, patch: dict[str, Any]) -> SimulatorConfig:
        with self.lock:
            self.config = self.config.updated(patch)
            if "seed" in patch:
                self.rng.seed(self.config.seed)
            return self.config

    def draw(self, model: str) -> tuple[str | None, float, SimulatorConfig]:
        """Return (failure kind or None, latency jitter, config) for one request."""
        with self.lock:
            config, rng = self.config, self.rng
            failure = None
            # A failing model answers fast (429/500/503) so fallback tests stay quick; the
            # global error rate may also time out.
            if rng.random() < config.failure_probability(model):
                failure = rng.choice(("rate_limit", "server_error", "unavailable"))
            elif rng.random() < config.error_rate:
                failure = rng.choice(tuple(_FAILURES))
            return failure, rng.uniform(0.8, 1.2), config

    def record(self, model: str | None, status: int, stage: str | None, usage: int = 0) -> None:
        with self.lock:
            self.stats["by_status"][str(status)] += 1
            self.stats["tokens"]["total"] += usage
            if model is not None:
                self.stats["by_model"][model] += 1
                self.by_model_status.setdefault(model, Counter())[str(status)] += 1
            if stage is not None:
                self.stats["by_stage"][stage] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": sum(self.stats["by_status"].values()),
                "by_model": dict(self.stats["by_model"]),
                "by_status": dict(self.stats["by_status"]),
                "by_stage": dict(self.stats["by_stage"]),
                "by_model_status": {m: dict(c) for m, c in self.by_model_status.items()},
                "total_tokens": self.stats["tokens"]["total"],
            }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (e.g. after its own timeout) is routine, not a stack trace.
        logger.debug("%s: connection error from %s", LABEL, client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = "leadpipe-simulator/1"
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are closed after a minute

    @property
    def state(self) -> _State:
        return cast(_HTTPServer, self.server).state

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr access log; requests are logged at DEBUG instead."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/":
            self._send(200, BANNER.encode(), "text/plain; charset=utf-8")
        elif path == "/health":
            self._json(200, {"status": "ok", "simulator": True})
        elif path in ("/v1/models", "/models"):
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": FINGERPRINT} for m in MODELS
            ]
            self._json(200, {"object": "list", "data": data})
        elif path == "/_sim/config":
            self._json(200, self.state.config.to_dict())
        elif path == "/_sim/stats":
            self._json(200, self.state.snapshot())
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        api = {"/v1/chat/completions": "openai", "/chat/completions": "openai",
               "/v1/messages": "anthropic", "/messages": "anthropic"}.get(path)  # fmt: skip
        raw = self._read_body()
        if raw is None:
            return
        if api is not None:
            self._complete(api, raw)
        elif path == "/_sim/config":
            self._configure(raw)
        elif path == "/_sim/reset":
            self.state.reset()
            self._json(200, {"status": "reset"})
        else:
            self._not_found(path)

    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self.close_connection = True
            self._json(413, _openai_error("request body too large", "invalid_request_error"))
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _configure(self, raw: bytes) -> None:
        try:
            patch = json.loads(raw)
            if not isinstance(patch, dict):
                raise ValueError("config must be a JSON object")
            config = self.state.update(patch)
        except ValueError as exc:  # JSONDecodeError is a ValueError too
            self._json(400, _openai_error(str(exc), "invalid_request_error"))
            return
        logger.info("%s config updated: %s", LABEL, config.to_dict())
        self._json(200, config.to_dict())

    def _complete(self, api: str, raw: bytes) -> None:
        started = time.monotonic()
        try:
            request = parse_completion(api, json.loads(raw))
        except ValueError as exc:
            message = (
                f"malformed JSON body: {exc}" if not isinstance(exc, RequestError) else str(exc)
            )
            self.state.record(None, 400, None)
            self._json(400, _error_body(api, "invalid_request_error", message))
            return
        failure, jitter, config = self.state.draw(request.model)
        stage = detect_stage(request.system)
        if failure is not None:
            self._fail(request, failure, config, stage)
            return
        text = generate(stage, request.model, request.system, request.user)
        truncated = request.max_tokens is not None and estimate_tokens(text) > request.max_tokens
        if truncated and request.max_tokens is not None:
            text = text[: request.max_tokens * 4]
        completion_tokens = estimate_tokens(text)
        self.state.stopping.wait(config.latency_s(completion_tokens, jitter))
        body = _answer(request, text, completion_tokens, truncated)
        self.state.record(request.model, 200, stage, request.prompt_tokens + completion_tokens)
        self._json(200, body, {"X-Leadpipe-Sim-Stage": stage or "none"})
        logger.debug(
            "%s %s model=%s stage=%s status=200 prompt_tokens=%d completion_tokens=%d "
            "truncated=%s latency_ms=%d", LABEL, api, request.model, stage, request.prompt_tokens,
            completion_tokens, truncated, (time.monotonic() - started) * 1000,
        )  # fmt: skip

    def _fail(
        self, request: Completion, kind: str, config: SimulatorConfig, stage: str | None
    ) -> None:
        status, openai_type, anthropic_type = _FAILURES[kind]
        if kind == "timeout":
            # Hold the connection so a client with a shorter timeout sees a read timeout.
            self.state.stopping.wait(config.timeout_s)
        headers = {}
        if status == 429 and config.retry_after_s is not None:
            headers["Retry-After"] = str(config.retry_after_s)
        message = f"simulated {kind.replace('_', ' ')} for model {request.model} ({LABEL})"
        error_type = anthropic_type if request.api == "anthropic" else openai_type
        self.state.record(request.model, status, stage)
        logger.debug(
            "%s %s model=%s injected=%s status=%d", LABEL, request.api, request.model, kind, status
        )
        self._json(status, _error_body(request.api, error_type, message), headers)

    def _not_found(self, path: str) -> None:
        self._json(404, _openai_error(f"unknown path {path!r} ({LABEL})", "not_found_error"))

    def _json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(
        self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Leadpipe-Simulator", "1")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout fired first); nothing is left to answer.
            self.close_connection = True


def _openai_error(message: str, error_type: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type}}


def _error_body(api: str, error_type: str, message: str) -> dict[str, Any]:
    if api == "anthropic":
        # Anthropic's shape; its "error" object also satisfies OpenAI-style readers.
        return {"type": "error", "error": {"type": error_type, "message": message}}
    return _openai_error(message, error_type)


def _answer(
    request: Completion, text: str, completion_tokens: int, truncated: bool
) -> dict[str, Any]:
    if request.api == "anthropic":
        return {
            "id": f"msg_sim_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if truncated else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": request.prompt_tokens, "output_tokens": completion_tokens},
        }
    return {
        "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "length" if truncated else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": request.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": request.prompt_tokens + completion_tokens,
        },
    }


class SimulatorServer:
    """The simulator as an object: bind on construction, serve in a thread or in the foreground.

    Example:
        with SimulatorServer(config=SimulatorConfig(latency_scale=0)) as sim:
            client = OpenAICompatible(base_url=sim.url, ...)
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None
    ) -> None:
        self._state = _State(config or SimulatorConfig())
        self._httpd = _HTTPServer((host, port), self._state)
        self._thread: threading.Thread | None = None
        self._serving: threading.Thread | None = None  # the thread inside serve_forever
        self._closed = False

    @property
    def url(self) -> str:
        """Base URL for OpenAI-style clients, e.g. ``http://127.0.0.1:PORT/v1``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def config(self) -> SimulatorConfig:
        """The live config."""
        return self._state.config

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Update the live config in-process (same rules as ``POST /_sim/config``).

        Raises:
            ValueError: an unknown field or an invalid value.
        """
        return self._state.update(changes)

    def stats(self) -> dict[str, Any]:
        """Request counts per model, status and stage (same as ``GET /_sim/stats``)."""
        return self._state.snapshot()

    def start(self) -> None:
        """Serve in a daemon thread and return at once."""
        if self._thread is not None or self._closed:
            return
        self._announce()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="leadpipe-simulator", daemon=True,
        )  # fmt: skip
        self._serving = self._thread
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` or Ctrl-C (used by the CLI)."""
        self._announce()
        self._serving = threading.current_thread()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._serving = None
            self.stop()

    def stop(self) -> None:
        """Stop serving, wake handlers sleeping on latency or timeouts, close the socket.

        Safe to call twice, before :meth:`start`, or from a signal handler that interrupts
        :meth:`serve_forever`.
        """
        self._state.stopping.set()
        if self._serving is threading.current_thread():
            # shutdown() waits for the serve loop, which is this very thread: ask from another
            # thread and let serve_forever's finally block finish the stop.
            threading.Thread(target=self._httpd.shutdown, daemon=True).start()
            return
        if self._serving is not None:
            self._httpd.shutdown()
            self._serving = None
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self._closed:
            self._closed = True
            self._httpd.server_close()
            logger.info("%s stopped", LABEL)

    def _announce(self) -> None:
        logger.info(
            "%s listening on %s: offline, no real model is called",
            LABEL,
            self.url.removesuffix("/v1"),
        )

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

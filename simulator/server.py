"""The leadpipe provider SIMULATOR: an offline HTTP server that imitates real model APIs.

It speaks the OpenAI Chat Completions API (``POST /v1/chat/completions``) and the Anthropic
Messages API (``POST /v1/messages``), with or without the ``/v1`` prefix, answers any model name,
and returns the stage outputs of :mod:`simulator.responses` with realistic token counts,
latency and injected failures. Every answer carries ``X-Leadpipe-Simulator: 1``.

Control endpoints (tests, demos): ``GET|POST /_sim/config``, ``GET /_sim/stats``,
``GET /_sim/rate``, ``POST /_sim/reset``; plus ``GET /v1/models``, ``GET /health`` and a
plain-text banner at ``/``.
``/_sim/stats`` counts every answer by model, status, stage and weak-model fault, so a fault
test can compare what the provider answered with the rows of leadpipe's ledger.

Rate limits (``rate_limits``: model -> requests per ``rate_window_s`` sliding window, like a
strict provider) answer one request too many with 429 and ``Retry-After``. ``/_sim/rate``
counts, per model, the requests received and answered 200 per calendar minute, and the most
seen in any sliding window, so a test can check a client-side limiter from the provider's side.

Weak-model mode (``quality="weak"`` or ``fault_rates``, see :mod:`simulator.faults`) makes
answers go wrong in the ways small models do, deterministically per request.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import random
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from simulator import faults
from simulator.batches import BatchStore
from simulator.config import BANNER, FINGERPRINT, LABEL, MODELS, SimulatorConfig
from simulator.responses import detect_stage, generate

logger = logging.getLogger("leadpipe.simulator")

_ROUTES = {
    "/v1/chat/completions": "openai",
    "/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/messages": "anthropic",
}
# Injected failure kind -> (HTTP status, OpenAI error type, Anthropic error type).
_FAILURES = {
    "rate_limit": (429, "rate_limit_error", "rate_limit_error"),
    "server_error": (500, "server_error", "api_error"),
    "unavailable": (503, "server_error", "overloaded_error"),
    "timeout": (504, "server_error", "api_error"),
    "unauthorized": (401, "invalid_request_error", "authentication_error"),
}
# What ``error_rate`` draws from; a 401 comes only from the weak-model faults.
_ERROR_RATE_KINDS = ("rate_limit", "server_error", "unavailable", "timeout")
_MAX_BODY = 16 * 1024 * 1024


class RequestError(ValueError):
    """A request the simulator refuses with HTTP 400."""


@dataclass(frozen=True, slots=True)
class Completion:
    """One parsed completion request, whichever API (``openai``/``anthropic``) it came through."""

    api: str
    model: str
    system: str
    user: str
    prompt_tokens: int
    max_tokens: int | None


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of ``text`` as ``ceil(len(text) / 4)`` (no tokenizer offline)."""
    return math.ceil(len(text) / 4)


def parse_completion(api: str, body: object) -> Completion:
    """Validate a decoded request body and extract what the generator needs.

    Prompt tokens: ``ceil(chars / 4)`` of each message's text plus 4 per message (the Anthropic
    ``system`` field counts as one message).

    Raises:
        RequestError: not an object; ``model``, ``messages`` or ``max_tokens`` missing or invalid.
    """
    if not isinstance(body, dict):
        raise RequestError("request body must be a JSON object")
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not model.strip():
        raise RequestError("'model' is required and must be a non-empty string")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' is required and must be a non-empty list")
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise RequestError("'max_tokens' must be a positive integer")
    texts = [("system", _text(body["system"]))] if api == "anthropic" and body.get("system") else []
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError("every message must be an object with a 'role'")
        texts.append((message["role"], _text(message.get("content"))))
    system = "\n".join(text for role, text in texts if role in ("system", "developer"))
    user = "\n".join(text for role, text in texts if role == "user")
    prompt_tokens = sum(estimate_tokens(text) + 4 for _, text in texts)
    return Completion(api, model, system, user, prompt_tokens, limit)


def _text(content: object) -> str:
    # Content is a string or a list of blocks; only text blocks carry prompt text.
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


class _State:
    """Config, RNG and stats shared by the handler threads; every access holds the lock."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.lock, self.config = threading.Lock(), config
        self.rng = random.Random()
        self.stopping = threading.Event()  # set on stop: wakes handlers sleeping on latency
        self.counts: dict[str, Counter[str]] = {}
        self.window: dict[str, deque[float]] = {}  # model -> accepted times in the window
        self.seen: dict[str, dict[str, list[float]]] = {}  # received/answered -> model -> times
        self.slots = _Slots()
        self.reset()
        self.batches = BatchStore(lambda api, body: _batch_answer(self, api, body), self.current)

    def current(self) -> SimulatorConfig:
        with self.lock:
            return self.config

    def reset(self) -> None:
        """Zero the stats and restart the RNG from the configured seed (repeatable runs)."""
        with self.lock:
            self.counts = {
                "by_model": Counter(),
                "by_status": Counter(),
                "by_stage": Counter(),
                "by_fault": Counter(),
            }
            self.window, self.seen = {}, {"received": {}, "answered": {}}
            self.rng.seed(self.config.seed)
        self.slots.reset()

    def update(self, patch: dict[str, Any]) -> SimulatorConfig:
        with self.lock:
            self.config = self.config.updated(patch)
            if "seed" in patch:
                self.rng.seed(self.config.seed)
            return self.config

    def draw(self, model: str) -> tuple[str | None, float, SimulatorConfig]:
        """Return (failure kind or None, latency jitter, config) for one request."""
        with self.lock:
            config, rng, failure = self.config, self.rng, None
            # A failing model answers at once (429/500/503) so fallback tests stay quick; only
            # the global error rate also produces timeouts.
            if rng.random() < config.failure_probability(model):
                failure = rng.choice(("server_error", "unavailable"))
            elif rng.random() < config.error_rate:
                failure = rng.choice(_ERROR_RATE_KINDS)
            return failure, rng.uniform(0.8, 1.2), config

    def admit(self, model: str) -> int | None:
        """Count one request against the model's rate limit: None, or seconds to Retry-After."""
        with self.lock:
            now = time.time()
            self.seen["received"].setdefault(model, []).append(now)
            limit = self.config.rate_limits.get(model)
            if limit is None:
                return None
            times = self.window.setdefault(model, deque())
            span = self.config.rate_window_s
            while times and times[0] <= now - span:
                times.popleft()
            if len(times) >= limit:
                return max(1, math.ceil(times[0] + span - now))
            times.append(now)
            return None

    def rate_report(self) -> dict[str, Any]:
        """Per model: requests received and answered per minute, and the most in any window."""
        with self.lock:
            span = self.config.rate_window_s
            out: dict[str, Any] = {"window_s": span, "limits": dict(self.config.rate_limits)}
            for kind, by_model in self.seen.items():
                out[kind] = {
                    model: {
                        "per_minute": dict(Counter(str(int(t // 60) * 60) for t in times)),
                        "max_in_window": _max_in_window(times, span),
                        "total": len(times),
                    }
                    for model, times in by_model.items()
                }
            return out

    def record(
        self, model: str | None, status: int, stage: str | None, fault: str | None = None
    ) -> None:
        with self.lock:
            if status == 200 and model is not None:
                self.seen["answered"].setdefault(model, []).append(time.time())
            model = model or "(invalid request)"
            self.counts["by_status"][str(status)] += 1
            self.counts["by_model"][model] += 1
            self.counts.setdefault(f"model:{model}", Counter())[str(status)] += 1
            self.counts["by_stage"][stage or "none"] += 1
            if fault is not None:
                self.counts["by_fault"][fault] += 1
                self.counts.setdefault(f"fault:{model}", Counter())[fault] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            keys = ("by_model", "by_status", "by_stage", "by_fault")
            return {
                "requests": sum(self.counts["by_status"].values()),
                **{key: dict(self.counts[key]) for key in keys},
                "by_model_status": self._prefixed("model:"),
                "by_model_fault": self._prefixed("fault:"),
                **self.slots.snapshot(self.config.slots),
            }

    def _prefixed(self, prefix: str) -> dict[str, dict[str, int]]:
        n = len(prefix)
        return {k[n:]: dict(v) for k, v in self.counts.items() if k.startswith(prefix)}


class _Slots:
    """Self-hosted mode: at most ``slots`` requests decode at once; the rest queue for a slot.

    Counts the seconds at least one slot was busy (what a GPU rented by the second bills) and
    the most requests ever in flight at once.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0
        self._busy_since = 0.0
        self.busy_s = 0.0
        self.peak = 0

    def reset(self) -> None:
        with self._cond:
            self.busy_s, self.peak = 0.0, self._in_flight

    def acquire(self, limit: int, stopping: threading.Event) -> None:
        with self._cond:
            while limit and self._in_flight >= limit and not stopping.is_set():
                self._cond.wait(0.05)
            if self._in_flight == 0:
                self._busy_since = time.monotonic()
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)

    def release(self) -> None:
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self.busy_s += time.monotonic() - self._busy_since
            self._cond.notify()

    def snapshot(self, limit: int) -> dict[str, Any]:
        with self._cond:
            busy = self.busy_s
            if self._in_flight:
                busy += time.monotonic() - self._busy_since
            return {"slots": limit, "busy_s": round(busy, 6), "peak_in_flight": self.peak}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the default backlog of 5 resets connections from busy workers

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002
        # A client that hung up (e.g. after its own timeout) is routine, not a stack trace.
        logger.debug("%s: connection error from %s", LABEL, client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server_version = "leadpipe-simulator/1"
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections are dropped after a minute
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms ACK wait

    @property
    def state(self) -> _State:
        return cast(_HTTPServer, self.server).state

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr access log; requests are logged at DEBUG instead."""

    def do_GET(self) -> None:
        path = _route(self.path)
        if path == "/":
            self._send(200, BANNER)
        elif path == "/health":
            self._send(200, {"status": "ok", "simulator": True})
        elif path in ("/v1/models", "/models"):
            data = [{"id": m, "object": "model", "owned_by": FINGERPRINT} for m in MODELS]
            self._send(200, {"object": "list", "data": data})
        elif path == "/_sim/config":
            self._send(200, self.state.config.to_dict())
        elif path == "/_sim/stats":
            self._send(200, {**self.state.snapshot(), "batches": self.state.batches.stats()})
        elif path == "/_sim/rate":
            self._send(200, self.state.rate_report())
        elif (routed := self.state.batches.route("GET", path, "", b"")) is not None:
            self._send(*routed)
        else:
            self._send(404, _error("openai", "not_found_error", f"unknown path {path!r}"))

    def do_POST(self) -> None:
        path = _route(self.path)
        declared = self.headers.get("Content-Length", "0").strip()
        length = int(declared) if declared.isdigit() else 0
        if length > _MAX_BODY:
            self.close_connection = True
            self._send(413, _error("openai", "invalid_request_error", "request body too large"))
            return
        raw = self.rfile.read(length) if length > 0 else b""
        if path in _ROUTES:
            self._complete(_ROUTES[path], raw)
        elif path == "/_sim/config":
            self._configure(raw)
        elif path == "/_sim/reset":
            self.state.reset()
            self.state.batches.reset()
            self._send(200, {"status": "reset"})
        elif (
            routed := self.state.batches.route(
                "POST", path, self.headers.get("Content-Type", ""), raw
            )
        ) is not None:
            self._send(*routed)
        else:
            self._send(404, _error("openai", "not_found_error", f"unknown path {path!r}"))

    def _configure(self, raw: bytes) -> None:
        try:
            patch = json.loads(raw)
            if not isinstance(patch, dict):
                raise ValueError("config must be a JSON object")
            config = self.state.update(patch)
        except ValueError as exc:  # JSONDecodeError is a ValueError too
            self._send(400, _error("openai", "invalid_request_error", str(exc)))
            return
        logger.info("%s config updated: %s", LABEL, config.to_dict())
        self._send(200, config.to_dict())

    def _complete(self, api: str, raw: bytes) -> None:
        started = time.monotonic()
        try:
            request = parse_completion(api, json.loads(raw))
        except ValueError as exc:  # RequestError or JSONDecodeError
            text = str(exc) if isinstance(exc, RequestError) else f"malformed JSON body: {exc}"
            self.state.record(None, 400, None)
            logger.debug("%s %s status=400 %s", LABEL, api, text)
            self._send(400, _error(api, "invalid_request_error", text))
            return
        stage = detect_stage(request.system)
        wait = self.state.admit(request.model)
        if wait is not None:
            self._fail(request, "rate_limit", self.state.config, stage, retry_after=wait)
            return
        failure, jitter, config = self.state.draw(request.model)
        if failure is not None:
            self._fail(request, failure, config, stage)
            return
        draw = faults.request_draw(config.seed, request.model, request.system, request.user)
        fault = config.fault_for(request.model, draw)
        if fault == "unauthorized":
            self._fail(request, fault, config, stage)
            return
        text, tokens, truncated, fault = _generate(request, stage, fault)
        delay = config.latency_s(tokens, jitter) + (config.slow_tail_s if fault == "slow" else 0)
        self.state.slots.acquire(config.slots, self.state.stopping)
        try:
            self.state.stopping.wait(delay)
        finally:
            self.state.slots.release()
        self.state.record(request.model, 200, stage, fault)
        self._send(200, _answer(request, text, tokens, truncated))
        logger.debug(
            "%s %s model=%s stage=%s status=200 prompt_tokens=%d completion_tokens=%d "
            "truncated=%s fault=%s latency_ms=%d",
            LABEL,
            api,
            request.model,
            stage,
            request.prompt_tokens,
            tokens,
            truncated,
            fault,
            (time.monotonic() - started) * 1000,
        )

    def _fail(
        self,
        request: Completion,
        kind: str,
        config: SimulatorConfig,
        stage: str | None,
        retry_after: int | None = None,
    ) -> None:
        status, openai_type, anthropic_type = _FAILURES[kind]
        if kind == "timeout":
            # Hold the connection so a client with a shorter timeout sees a read timeout.
            self.state.stopping.wait(config.timeout_s)
        retry_after = retry_after if retry_after is not None else config.retry_after_s
        retry = status == 429 and retry_after is not None
        headers = {"Retry-After": str(retry_after)} if retry else {}
        error_type = anthropic_type if request.api == "anthropic" else openai_type
        message = f"simulated {kind.replace('_', ' ')} for model {request.model} ({LABEL})"
        if kind == "unauthorized":
            message = f"invalid API key for model {request.model} (simulated by the {LABEL})"
        self.state.record(request.model, status, stage, kind if kind == "unauthorized" else None)
        self._send(status, _error(request.api, error_type, message), headers)
        logger.debug(
            "%s %s model=%s injected=%s status=%d", LABEL, request.api, request.model, kind, status
        )

    def _send(
        self, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        text = body if isinstance(body, str) else json.dumps(body)
        kind = "text/plain; charset=utf-8" if isinstance(body, str) else "application/json"
        payload = text.encode()
        try:
            self.send_response(status)
            base = {"Content-Type": kind, "Content-Length": str(len(payload))}
            for name, value in {**base, "X-Leadpipe-Simulator": "1", **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up first; nobody is left to answer


def _max_in_window(times: list[float], span: float) -> int:
    """The most of ``times`` (ascending) inside any half-open window ``[t, t + span)``."""
    return max((bisect.bisect_left(times, t + span) - i for i, t in enumerate(times)), default=0)


def _generate(
    request: Completion, stage: str | None, fault: str | None
) -> tuple[str, int, bool, str | None]:
    """The answer text, its billed tokens, whether it was cut, and the fault that applied."""
    text = generate(stage, request.model, request.system, request.user)
    billed: int | None = None
    if fault in faults.TEXT_FAULTS and stage is not None:
        faulty = faults.apply(fault, text, request.max_tokens)
        text, billed, truncated = faulty.text, faulty.completion_tokens, faulty.truncated
    else:
        fault = fault if fault == "slow" else None  # a text fault needs a stage's JSON
        limit = request.max_tokens
        truncated = limit is not None and estimate_tokens(text) > limit
        text = text[: limit * 4] if truncated and limit is not None else text
    return text, billed or estimate_tokens(text), truncated, fault


def _batch_answer(state: _State, api: str, body: object) -> tuple[int, dict[str, Any]]:
    """One request inside a provider batch: the synchronous answer without its latency.

    Weak-model faults apply as on the synchronous endpoints; the per-request failures of a
    batch are drawn by :mod:`simulator.batches` itself.
    """
    try:
        request = parse_completion(api, body)
    except RequestError as exc:
        state.record(None, 400, None)
        return 400, _error(api, "invalid_request_error", str(exc))
    config = state.current()
    stage = detect_stage(request.system)
    draw = faults.request_draw(config.seed, request.model, request.system, request.user)
    fault = config.fault_for(request.model, draw)
    if fault == "unauthorized":
        state.record(request.model, 401, stage, fault)
        message = f"invalid API key for model {request.model} (simulated by the {LABEL})"
        return 401, _error(api, "authentication_error", message)
    text, tokens, truncated, fault = _generate(request, stage, fault)
    state.record(request.model, 200, stage, fault)
    return 200, _answer(request, text, tokens, truncated)


def _route(raw: str) -> str:
    # Clients configured with a ".../v1" base URL may also reach the control endpoints under it.
    path = raw.split("?", 1)[0].rstrip("/") or "/"
    return path[3:] if path.startswith(("/v1/_sim/", "/v1/health")) else path


def _error(api: str, error_type: str, message: str) -> dict[str, Any]:
    if api == "anthropic":
        # Anthropic's shape; its inner "error" object also satisfies OpenAI-style readers.
        return {"type": "error", "error": {"type": error_type, "message": message}}
    return {"error": {"message": message, "type": error_type}}


def _answer(request: Completion, text: str, tokens: int, truncated: bool) -> dict[str, Any]:
    if request.api == "anthropic":
        return {
            "id": f"msg_sim_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "max_tokens" if truncated else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": request.prompt_tokens, "output_tokens": tokens},
            "leadpipe_simulator": True,
        }
    message = {"role": "assistant", "content": text}
    finish = "length" if truncated else "stop"
    return {
        "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": FINGERPRINT,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": request.prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": request.prompt_tokens + tokens,
        },
        "leadpipe_simulator": True,
    }


class SimulatorServer:
    """The simulator: binds when built (port 0: any free port); run start() or serve_forever()."""

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
        """Base URL for clients, ``http://HOST:PORT/v1`` (Anthropic clients drop the ``/v1``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def configure(self, **changes: Any) -> SimulatorConfig:
        """Update the live config in-process, as ``POST /_sim/config`` does.

        Raises:
            ValueError: an unknown field or an invalid value.
        """
        return self._state.update(changes)

    def start(self) -> None:
        """Serve in a daemon thread and return at once."""
        if self._thread is not None or self._closed:
            return
        self._announce()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="leadpipe-simulator",
            daemon=True,
        )
        self._serving = self._thread
        self._thread.start()

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` or Ctrl-C (``leadpipe simulator``)."""
        self._announce()
        self._serving = threading.current_thread()
        try:
            self._httpd.serve_forever(poll_interval=0.2)
        finally:
            self._serving = None
            self.stop()

    def stop(self) -> None:
        """Stop serving, wake handlers sleeping on latency or timeouts, close the socket.

        Safe to call twice, before :meth:`start`, or from a signal handler in serve_forever.
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
        base = self.url.removesuffix("/v1")
        logger.info("%s listening on %s: offline, no real model is called", LABEL, base)

    def __enter__(self) -> SimulatorServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

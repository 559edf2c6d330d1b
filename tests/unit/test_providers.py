import json
import socket
import threading
import time

import httpx
import pytest
from pydantic import SecretStr

from pipeline.errors import ProviderRejected, ProviderUnavailable
from pipeline.llm.providers import build_providers
from pipeline.llm.providers.anthropic import AnthropicMessages
from pipeline.llm.providers.openai_compat import OpenAICompatible
from pipeline.models import LLMRequest
from pipeline.settings import ProviderSettings

REQUEST = LLMRequest(model="m", system="sys", user="hello", max_tokens=50)


def _openai(handler: httpx.MockTransport) -> OpenAICompatible:
    return OpenAICompatible(
        name="openrouter",
        base_url="https://llm.test/v1/",
        api_key=SecretStr("sk-secret-key-123"),
        http=httpx.Client(transport=handler),
    )


def test_openai_success_reads_usage_and_sends_key() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["body"] = json.loads(request.content)
        seen["url"] = str(request.url)
        return httpx.Response(
            200,
            json={
                "id": "x",
                "model": "m",
                "choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 3},
            },
        )

    resp = _openai(httpx.MockTransport(handler)).complete(REQUEST)
    assert (resp.usage.input_tokens, resp.usage.output_tokens) == (12, 3)
    assert seen["auth"] == "Bearer sk-secret-key-123"
    assert seen["url"] == "https://llm.test/v1/chat/completions"
    body = seen["body"]
    assert isinstance(body, dict) and body["messages"][0] == {"role": "system", "content": "sys"}
    assert not resp.simulated


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503])
def test_retryable_codes_are_transient(code: int) -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(code, headers={"retry-after": "3"}, json={})
    )
    with pytest.raises(ProviderUnavailable) as info:
        _openai(transport).complete(REQUEST)
    assert info.value.retry_after_s == 3.0


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_client_errors_are_permanent(code: int) -> None:
    transport = httpx.MockTransport(
        lambda r: httpx.Response(code, json={"error": {"message": "bad model"}})
    )
    with pytest.raises(ProviderRejected, match="bad model") as info:
        _openai(transport).complete(REQUEST)
    assert info.value.status_code == code


def _read_request(conn: socket.socket) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if b"content-length" in line.lower()
    )
    while len(body) < length:
        body += conn.recv(65536)


def test_per_provider_timeout_is_sent_and_a_timeout_closes_the_connection() -> None:
    """The server sees the client go away (EOF) once the read timeout passes: it can stop."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: dict[str, object] = {}

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            _read_request(conn)  # and never answer it
            conn.settimeout(5)
            started = time.monotonic()
            seen["eof"] = conn.recv(1) == b""
            seen["after_s"] = time.monotonic() - started

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    provider = OpenAICompatible(
        name="vllm",
        base_url=f"http://127.0.0.1:{server.getsockname()[1]}/v1",
        api_key=None,
        http=httpx.Client(timeout=60),  # the per-provider 0.5 s wins over the client default
        settings=ProviderSettings(timeout_s=0.5),
    )
    with pytest.raises(ProviderUnavailable) as info:
        provider.complete(REQUEST)
    assert info.value.timeout
    thread.join(timeout=5)
    server.close()
    assert seen["eof"] is True and float(seen["after_s"]) < 2  # type: ignore[arg-type]


def test_timeout_and_malformed_body_are_transient() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ProviderUnavailable, match="timeout"):
        _openai(httpx.MockTransport(timeout)).complete(REQUEST)
    with pytest.raises(ProviderUnavailable, match="malformed"):
        _openai(httpx.MockTransport(lambda r: httpx.Response(200, json={"x": 1}))).complete(REQUEST)


def test_anthropic_messages_shape() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["x-api-key"] == "k"
        assert json.loads(request.content)["system"] == "sys"
        return httpx.Response(
            200,
            headers={"x-leadpipe-simulator": "1"},
            json={
                "id": "msg",
                "model": "claude",
                "content": [{"type": "text", "text": "hi"}],
                "stop_reason": "max_tokens",
                "usage": {"input_tokens": 7, "output_tokens": 2},
            },
        )

    provider = AnthropicMessages(
        name="anthropic",
        base_url="https://a.test/v1",
        api_key=SecretStr("k"),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    resp = provider.complete(REQUEST)
    assert (resp.text, resp.finish_reason, resp.simulated) == ("hi", "length", True)


def test_build_providers_uses_keys_then_simulator() -> None:
    http = httpx.Client()
    with_key = {"openai": ProviderSettings(api_key=SecretStr("k"))}
    built = build_providers(with_key, simulator_url=None, http=http)
    assert set(built) == {"openai"}
    everything = build_providers(with_key, simulator_url="http://127.0.0.1:1/v1", http=http)
    assert {"anthropic", "openrouter", "deepseek", "vllm"} <= set(everything)
    assert isinstance(everything["anthropic"], AnthropicMessages)
    http.close()

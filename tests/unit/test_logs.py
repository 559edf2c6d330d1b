"""JSON log lines carry lead, stage and task id; no provider key reaches a log or the ledger."""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
import structlog
from pydantic import SecretStr
from sqlalchemy import select

from db.enums import Stage
from db.models import LLMCall
from pipeline.deps import Deps
from pipeline.errors import AllRoutesFailed, NoValidAnswer
from pipeline.llm.gateway import CallContext, call_model
from pipeline.llm.providers.openai_compat import OpenAICompatible
from pipeline.logs import configure_logging, mask_secrets
from pipeline.models import Prompt, Route
from pipeline.settings import get_settings

KEY = "sk-test-SECRET-4f9a8b7c6d5e"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(json_lines=True, stream=buffer)
    yield buffer
    structlog.contextvars.clear_contextvars()
    configure_logging()


def parsed(buffer: io.StringIO) -> list[dict[str, object]]:
    lines = buffer.getvalue().splitlines()
    assert lines
    return [json.loads(line) for line in lines]  # every line is exactly one JSON object


def leaky_provider(status: int) -> OpenAICompatible:
    """A provider whose API echoes the key back in its error, as some do on 401."""

    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        assert auth == f"Bearer {KEY}"  # the key really is sent
        message = f"Incorrect API key provided: {KEY} (header {auth})"
        return httpx.Response(status, json={"error": {"message": message}})

    return OpenAICompatible(
        name="openrouter",
        base_url="https://llm.test/v1/",
        api_key=SecretStr(KEY),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
    )


def test_json_lines_carry_context_and_mask_keys(log_lines: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(task_id="task-1", lead_id=7, stage="classify")
    log = structlog.get_logger("test")
    log.info("provider_configured", api_key=KEY, headers={"Authorization": f"Bearer {KEY}"})
    try:
        raise RuntimeError(f"upstream said {KEY}")
    except RuntimeError:
        log.exception("stage_crashed", detail=[KEY, 3])
    events = parsed(log_lines)
    assert [e["event"] for e in events] == ["provider_configured", "stage_crashed"]
    for event in events:
        assert (event["task_id"], event["lead_id"], event["stage"]) == ("task-1", 7, "classify")
    assert "RuntimeError" in str(events[1]["exception"])
    assert KEY not in log_lines.getvalue() and "SECRET" not in log_lines.getvalue()


def test_mask_secrets_covers_provider_key_shapes() -> None:
    for key in (KEY, "sk-ant-api03-abcdefghijkl", "sk-or-v1-0123456789ab", "csk-abcdefgh1234"):
        assert mask_secrets(f"key={key};") == "key=[redacted];"
    assert mask_secrets("Bearer abc.def") == "[redacted]"
    assert mask_secrets("input_tokens=12 model=gpt-4o") == "input_tokens=12 model=gpt-4o"


@pytest.mark.integration
@pytest.mark.parametrize("status", [401, 503])
def test_failed_stage_call_leaks_no_key(deps: Deps, log_lines: io.StringIO, status: int) -> None:
    structlog.contextvars.bind_contextvars(task_id="task-9", stage="analyze")
    leaky = dataclasses.replace(deps, providers={"openrouter": leaky_provider(status)})
    ctx = CallContext(stage=Stage.ANALYZE, lead_id=None, run_id="run-1", campaign_id=None)
    prompt = Prompt(system="s", user="u", version="v1")
    expected = NoValidAnswer if status == 401 else AllRoutesFailed  # 401 is permanent
    with pytest.raises(expected) as info:
        call_model(leaky, ctx, prompt, [Route("openrouter", "some/model", 100, "test")])
    assert KEY not in str(info.value)
    events = parsed(log_lines)
    failed = [e for e in events if e["event"] == "llm_call_failed"]
    assert failed and all(e["task_id"] == "task-9" and e["stage"] == "analyze" for e in failed)
    assert KEY not in log_lines.getvalue()
    with deps.session_scope() as session:
        rows = session.scalars(select(LLMCall)).all()
        assert len(rows) == len(failed)
        for row in rows:
            values = {c.name: getattr(row, c.name) for c in LLMCall.__table__.columns}
            assert KEY not in json.dumps(values, default=str), values


SHAPELESS = "AIzaSyD-shapeless-key-0042"
HOOK = "https://hooks.chat.test/services/T0/B1/xoxHOOKtoken77"
FLOWER = "correct horse battery"


@pytest.fixture
def configured_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Settings from the environment with secrets of no known shape, as an operator sets them."""
    monkeypatch.setenv("LEADPIPE_PROVIDERS__OPENROUTER__API_KEY", SHAPELESS)
    monkeypatch.setenv("LEADPIPE_BUDGET__WEBHOOK_URL", HOOK)
    monkeypatch.setenv("LEADPIPE_FLOWER_PASSWORD", FLOWER)
    get_settings.cache_clear()
    get_settings()
    yield
    get_settings.cache_clear()


def test_every_configured_secret_is_masked_by_value(configured_secrets: None) -> None:
    text = f"key {SHAPELESS}, hook {HOOK} ({quote(HOOK, safe='')}), password={FLOWER}!"
    masked = mask_secrets(text)
    assert masked == "key [redacted], hook [redacted] ([redacted]), password=[redacted]!"
    assert mask_secrets("a correct answer") == "a correct answer"


@pytest.mark.integration
def test_a_shapeless_key_echoed_by_a_401_reaches_no_log_or_ledger(
    configured_secrets: None, deps: Deps, log_lines: io.StringIO
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        message = f"API key not valid: {SHAPELESS}; please pass a valid key"
        return httpx.Response(401, json={"error": {"message": message}})

    provider = OpenAICompatible(
        name="openrouter",
        base_url="https://llm.test/v1/",
        api_key=SecretStr(SHAPELESS),
        http=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    leaky = dataclasses.replace(deps, providers={"openrouter": provider})
    ctx = CallContext(stage=Stage.ANALYZE, lead_id=None, run_id="run-2", campaign_id=None)
    with pytest.raises(NoValidAnswer) as info:  # a 401 is permanent for the model (issue 11)
        call_model(leaky, ctx, Prompt(system="s", user="u", version="v1"), [_route()])
    assert SHAPELESS not in str(info.value) and SHAPELESS not in log_lines.getvalue()
    with deps.session_scope() as session:
        errors = [row.error or "" for row in session.scalars(select(LLMCall))]
    assert errors and all("[redacted]" in e and SHAPELESS not in e for e in errors)


def _route() -> Route:
    return Route("openrouter", "some/model", 100, "test")


def test_the_worker_loglevel_applies_to_leadpipe_lines_too() -> None:
    """``leadpipe worker --loglevel WARNING`` quiets the per-call info lines, not only Celery's."""
    from pipeline import logs

    buffer = io.StringIO()
    try:
        logs.set_process_level("warning")
        configure_logging(json_lines=True, stream=buffer)
        log = structlog.get_logger("test")
        log.info("llm_call_settled", lead_id=1)
        log.warning("budget_alert", level=70)
        assert [line["event"] for line in parsed(buffer)] == ["budget_alert"]
        with pytest.raises(ValueError, match="unknown log level"):
            logs.set_process_level("loud")
    finally:
        logs.set_process_level("INFO")
        configure_logging()
